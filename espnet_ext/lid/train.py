"""Training and evaluating a LID head on cached tap frames.

Unseen voices are the hard part of LID here (a linear probe is perfect on the training voices and
86-90% on the dev voices), so training works against memorising the voice: languages are drawn
equally often (balanced sampling, whatever the corpus's shares), each utterance is seen as a random
1-5 s crop of its frames (a new one every epoch; short test utterances look like crops), dropout sits
in every head but the linear one, and the epoch kept is the one with the best dev accuracy (other
voices than training's), never a test number. The learning rate falls from `lr` to 0 along a cosine
over the training's steps: at a constant rate, one of the default ensemble's three seeds was best on
dev at epoch 6 and 95.6% right on test (Punjabi 85%); with the cosine, the same three seeds are 98.6-99.6%
right on test (README, "Language ID and routing").

An epoch's crops are batched by length (sorted, cut into batches, the batches shuffled): with mixed
lengths, 55% of the frames a batch computed on were padding, and the three seeds of the default head
took more than stage 4's 5-minute budget (README, "Language ID and routing").

Crops are cut from the frames of the whole utterance's pass, not re-encoded: self-attention below the
tap has seen the whole utterance, so a crop is easier than the same seconds encoded alone. Short
utterances and the 1 s windows of the language-over-time track (espnet_ext.lid.segments) are encoded
alone, so the training set also holds stretches of the training audio encoded alone
(`train_lid --alone_crops`): measured, they lift dev accuracy (96.6 -> 98.2%), 1-2 s test crops
(91.0 -> 94.0%) and switch detection (README, "Language ID and routing"). The "under 2 s" rows of the
evaluation are real short utterances, encoded alone.
"""
import logging
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from tqdm import tqdm

from espnet_ext.lid.features import FrameFeatures, label_indices
from espnet_ext.lid.heads import LIDHead, SeedEnsemble, TaggerHead
from espnet_ext.parallel import forked_map

log = logging.getLogger(__name__)
SHORT_SECONDS = 2.0  # the evaluation's "short utterance" bound (the project plan's hard case)


@dataclass
class HeadTraining:
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    crop: Optional[Tuple[float, float]] = (1.0, 5.0)  # seconds of a random crop; None: whole utterances
    balanced: bool = True
    seed: int = 0


def pad_frames(frames: Sequence[np.ndarray]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Utterances' [frames, width] matrices -> zero-padded [batch, max frames, width] and lengths."""
    padded = nn.utils.rnn.pad_sequence([torch.from_numpy(f) for f in frames], batch_first=True)
    return padded, torch.tensor([len(f) for f in frames])


def set_statistics(head: LIDHead, train: FrameFeatures) -> None:
    """The head's standardisation: mean and deviation of every training frame, per dimension (a
    `SeedEnsemble`'s members share it). Running float64 sums, not one matrix of every frame (1.1 GB
    for the default run's training set)."""
    total, squares, count = 0.0, 0.0, 0
    for frames in train.frames:
        frames = frames.astype(np.float64)
        total, squares, count = total + frames.sum(0), squares + (frames * frames).sum(0), count + len(frames)
    mean = total / count
    deviation = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    mean, std = torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(deviation.astype(np.float32)).clamp_min(1e-5)
    for module in getattr(head, "members", [head]):  # (an ensemble standardises in its members)
        module.mean.copy_(mean)
        module.std.copy_(std)


def epoch_order(langs: Sequence[str], balanced: bool, rng: np.random.Generator) -> np.ndarray:
    """One epoch's utterance indices: with `balanced`, as many draws as utterances, each picking a
    language uniformly and then one of its utterances; else a permutation."""
    if not balanced:
        return rng.permutation(len(langs))
    by_lang: Dict[str, List[int]] = {}
    for i, lang in enumerate(langs):
        by_lang.setdefault(lang, []).append(i)
    groups = list(by_lang.values())
    picks = rng.integers(0, len(groups), len(langs))
    return np.array([groups[g][rng.integers(0, len(groups[g]))] for g in picks])


def length_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator) -> List[np.ndarray]:
    """Positions 0..len(lengths)-1 in batches of similar length (sorted by length, ties in random order,
    cut into `batch_size` runs), the batches in random order: each batch pads to little more than its
    own length."""
    order = np.lexsort((rng.permutation(len(lengths)), np.asarray(lengths)))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def crop(frames: np.ndarray, duration: float, seconds: Tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """A random crop of `seconds[0]..seconds[1]` (uniform) of an utterance's frames; shorter ones whole."""
    per_second = len(frames) / max(duration, 1e-6)
    n = max(1, int(round(rng.uniform(*seconds) * per_second)))
    if n >= len(frames):
        return frames
    start = rng.integers(0, len(frames) - n + 1)
    return frames[start : start + n]


@torch.no_grad()
def predict(head: LIDHead, features: FrameFeatures, batch_size: int = 64) -> np.ndarray:
    """Posteriors `[utterances, languages]` of whole utterances, in `features` order."""
    order = np.argsort([len(f) for f in features.frames], kind="stable")  # similar lengths share a batch
    posteriors = np.zeros((len(order), len(head.languages)), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        hidden, lengths = pad_frames([features.frames[i] for i in index])
        posteriors[index] = head(hidden, lengths).numpy()
    return posteriors


def train_batches(head: LIDHead, crops: Sequence[np.ndarray], labels: np.ndarray, batches: Sequence[np.ndarray],
                  optimizer: torch.optim.Optimizer, schedule: Optional[LRScheduler] = None) -> List[float]:
    """One optimizer step per batch (positions into `crops` and `labels`), and one `schedule` step after
    it; each batch's loss."""
    losses = []
    for batch in batches:
        hidden, lengths = pad_frames([crops[j] for j in batch])
        loss = nn.functional.cross_entropy(head.logits(hidden, lengths), torch.from_numpy(labels[batch]))
        losses.append(optimiser_step(loss, optimizer, schedule))
    return losses


def optimiser_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, schedule: Optional[LRScheduler]) -> float:
    """One step down `loss`'s gradient, then one `schedule` step (if any); the loss's value."""
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if schedule is not None:
        schedule.step()
    return loss.item()


def reinitialise(head: LIDHead, seed: int) -> None:
    """Fresh weights for every layer of `head` drawn from `seed` (its standardisation buffers kept)."""
    torch.manual_seed(seed)
    for module in head.modules():
        if module is not head and hasattr(module, "reset_parameters"):
            module.reset_parameters()


def fit_head(head: LIDHead, train: FrameFeatures, dev: FrameFeatures, config: HeadTraining) -> List[Dict[str, float]]:
    """Train `head` from a fresh initialisation drawn from `config.seed` (module docstring); it ends
    holding its best-dev-accuracy epoch. Per-epoch history. A `SeedEnsemble`'s member i is trained
    alone from seed + i (its history rows carry `member`), all members at once (`_fit_members`)."""
    set_statistics(head, train)
    if isinstance(head, SeedEnsemble):
        return _fit_members(head, train, dev, config)
    return _fit_one(head, train, dev, config)


def _fit_members(head: SeedEnsemble, train: FrameFeatures, dev: FrameFeatures,
                 config: HeadTraining) -> List[Dict[str, float]]:
    """Each member trained from seed + i in its own forked one-thread process, all at once
    (espnet_ext.parallel): a head's small matrices gain little from a second thread, so on 2 cores three
    one-thread members finish sooner than three two-thread ones in turn (stage 4's three members: 166 ->
    124 s; README, "Language ID and routing"). The frames reach the processes by fork, never pickled. A
    member's numbers depend on its seed alone, not on what runs beside it."""
    def member(i: int) -> Tuple[Dict[str, torch.Tensor], List[Dict[str, float]]]:
        history = _fit_one(head.members[i], train, dev, replace(config, seed=config.seed + i))
        return head.members[i].state_dict(), history

    trained = forked_map(member, len(head.members), processes=len(head.members))
    for module, (state, _) in zip(head.members, trained):
        module.load_state_dict(state)
    return [{**row, "member": i} for i, (_, history) in enumerate(trained) for row in history]


def _fit_one(head: LIDHead, train: FrameFeatures, dev: FrameFeatures, config: HeadTraining) -> List[Dict[str, float]]:
    """fit_head for one head whose standardisation is set."""
    reinitialise(head, config.seed)
    rng = np.random.default_rng(config.seed)
    labels = label_indices(train.langs, head.languages)
    dev_labels = label_indices(dev.langs, head.languages)
    optimizer = torch.optim.Adam([p for p in head.parameters() if p.requires_grad], lr=config.lr,
                                 weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train.frames) // config.batch_size)  # an epoch draws as many crops as utterances
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    history, best, best_state = [], -1.0, None
    for epoch in tqdm(range(1, config.epochs + 1), desc=f"LID head {head.kind}, seed {config.seed}", unit="epoch"):
        head.train()
        order = epoch_order(train.langs, config.balanced, rng)
        crops = [train.frames[i] if config.crop is None else
                 crop(train.frames[i], train.durations[i], config.crop, rng) for i in order]
        losses = train_batches(head, crops, labels[order], length_batches([len(c) for c in crops], config.batch_size,
                                                                          rng), optimizer, schedule)
        dev_accuracy = float((predict(head, dev).argmax(-1) == dev_labels).mean())
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "dev_accuracy": dev_accuracy})
        if dev_accuracy > best:
            best, best_state = dev_accuracy, {k: v.clone() for k, v in head.state_dict().items()}
    head.load_state_dict(best_state)
    log.info("LID head %s, seed %d: best dev accuracy %.1f%% (epoch %d)", head.kind, config.seed, 100 * best,
             max(history, key=lambda h: (h["dev_accuracy"], -h["epoch"]))["epoch"])
    return history


@dataclass
class TaggerTraining:
    epochs: int = 15
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0


@torch.no_grad()
def frame_accuracy(head: TaggerHead, features: FrameFeatures, labels: Sequence[np.ndarray],
                   batch_size: int = 32) -> float:
    """The share of all frames whose top posterior is their label."""
    right = 0
    for start in range(0, len(features.frames), batch_size):
        hidden, lengths = pad_frames(features.frames[start : start + batch_size])
        top = head.frame_posteriors(hidden, lengths).argmax(-1)
        right += sum(int((top[i, :n].numpy() == labels[start + i]).sum()) for i, n in enumerate(lengths.tolist()))
    return right / sum(len(x) for x in labels)


def fit_tagger(head: TaggerHead, train: FrameFeatures, labels: Sequence[np.ndarray], dev: FrameFeatures,
               dev_labels: Sequence[np.ndarray], config: TaggerTraining) -> List[Dict[str, float]]:
    """Train the frame tagger on whole code-switched utterances, each frame's label its language index
    (`labels[i]` for `train.frames[i]`), from a fresh initialisation drawn from `config.seed`; batched by
    length, the learning rate along a cosine; it ends holding its best-dev-frame-accuracy epoch."""
    set_statistics(head, train)
    reinitialise(head, config.seed)
    rng = np.random.default_rng(config.seed)
    targets = [torch.from_numpy(np.asarray(y, dtype=np.int64)) for y in labels]
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train.frames) // config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    history, best, best_state = [], -1.0, None
    for epoch in tqdm(range(1, config.epochs + 1), desc="LID frame tagger", unit="epoch"):
        head.train()
        losses = []
        for batch in length_batches([len(f) for f in train.frames], config.batch_size, rng):
            hidden, lengths = pad_frames([train.frames[i] for i in batch])
            target = nn.utils.rnn.pad_sequence([targets[i] for i in batch], batch_first=True, padding_value=-100)
            loss = nn.functional.cross_entropy(head.frame_logits(hidden, lengths).transpose(1, 2), target,
                                               ignore_index=-100)
            losses.append(optimiser_step(loss, optimizer, schedule))
        dev_accuracy = frame_accuracy(head, dev, dev_labels)
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "dev_frame_accuracy": dev_accuracy})
        if dev_accuracy > best:
            best, best_state = dev_accuracy, {k: v.clone() for k, v in head.state_dict().items()}
    head.load_state_dict(best_state)
    log.info("LID frame tagger: best dev frame accuracy %.1f%% (epoch %d)", 100 * best,
             max(history, key=lambda h: (h["dev_frame_accuracy"], -h["epoch"]))["epoch"])
    return history


def expected_calibration_error(posteriors: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by their size."""
    confidence, correct = posteriors.max(1), posteriors.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    return float(sum(abs(correct[which == b].mean() - confidence[which == b].mean()) * (which == b).mean()
                     for b in range(bins) if (which == b).any()))


def evaluate(posteriors: np.ndarray, features: FrameFeatures, languages: Sequence[str]) -> Dict[str, object]:
    """Accuracy overall, per language, under and over 2 s; ECE; the confusion matrix (rows = truth)."""
    labels = label_indices(features.langs, languages)
    correct = posteriors.argmax(1) == labels
    short = features.durations < SHORT_SECONDS

    def share(mask: np.ndarray) -> Dict[str, float]:
        return {"accuracy": float(correct[mask].mean()) if mask.any() else float("nan"), "n": int(mask.sum())}

    confusion = np.zeros((len(languages), len(languages)), dtype=int)
    np.add.at(confusion, (labels, posteriors.argmax(1)), 1)
    return {"accuracy": float(correct.mean()), "n": len(labels),
            "per_language": {lang: share(labels == i) for i, lang in enumerate(languages)},
            f"under_{SHORT_SECONDS:g}s": share(short), f"over_{SHORT_SECONDS:g}s": share(~short),
            "ece": expected_calibration_error(posteriors, labels), "confusion": confusion.tolist()}


def lid_only_thresholds(posteriors: np.ndarray, true_langs: Sequence[str], languages: Sequence[str],
                        lid_only: Sequence[str]) -> Dict[str, float]:
    """Per LID-only class, the lowest posterior one of its own (dev) utterances got, floored to 0.01:
    the least the class must reach to win a routing decision (espnet_ext.routing.routers)."""
    truth = np.asarray(true_langs)
    return {lang: float(np.floor(100 * posteriors[truth == lang, languages.index(lang)].min()) / 100)
            for lang in lid_only if lang in languages and (truth == lang).any()}


TAU_PRECISION = 0.995  # the threshold router routes hard where the head is at most 1 in 200 wrong on dev


def dev_tau(posteriors: np.ndarray, true_langs: Sequence[str], languages: Sequence[str],
            precision: float = TAU_PRECISION) -> float:
    """The threshold router's tau for this head, set on dev: the lowest top posterior (in steps of 0.01)
    at or above which the dev utterances are right at least `precision` of the time. Above it the head
    is trusted (hard routing); below it, it hedges between its top languages."""
    top = posteriors.max(1)
    right = posteriors.argmax(1) == label_indices(true_langs, languages)
    for step in range(100):
        sure = top >= step / 100
        if sure.any() and right[sure].mean() >= precision:
            return step / 100
    return 1.0


def evaluate_out_of_set(posteriors: np.ndarray, true_langs: Sequence[str], languages: Sequence[str],
                        adapters: Sequence[str], tau: float) -> Dict[str, Dict[str, object]]:
    """Per true language outside the LID's classes: how often its clips would be routed confidently
    (top posterior >= tau) to an in-set adapter (the harm: an Indic adapter forced onto Marathi), how
    often to a LID-only class (the base model), and the class each is taken for."""
    top, best = posteriors.max(1), posteriors.argmax(1)
    adapter = np.isin(np.asarray(languages)[best], list(adapters))
    report = {}
    for lang in dict.fromkeys(true_langs):
        rows = np.asarray(true_langs) == lang
        report[lang] = {
            "n": int(rows.sum()),
            "confident_adapter": float((adapter & (top >= tau))[rows].mean()),
            "to_lid_only": float((~adapter)[rows].mean()),
            "taken_for": {languages[i]: int(((best == i) & rows).sum()) for i in range(len(languages))},
        }
    return report
