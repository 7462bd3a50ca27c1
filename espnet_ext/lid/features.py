"""Language-ID features: an encoder's hidden states, mean-pooled over each utterance's valid frames (the
layer scan), or frame by frame at the tap (the heads, cached as Kaldi matrices).

The states come from the model family's one masked forward (espnet_ext.models.family), the pass
decoding runs, so a head trained on them sees at decoding time exactly what it was trained on; the
padding of a batch never reaches the pool.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from espnet_ext.data.audio import SAMPLE_RATE, pad_batch, utterance_audio
from espnet_ext.data.kaldi import read_data_dir
from espnet_ext.errors import UserError
from espnet_ext.fileio import atomic_write_text
from espnet_ext.models.whisper_forward import Tap, frame_mask
from espnet_ext.parallel import forked_map


def mean_pool(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[batch, frames, width] -> [batch, width]: the mean over each row's first `lengths` frames."""
    mask = frame_mask(lengths.to(hidden.device), hidden.size(1)).to(hidden.dtype)[..., None]
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)


@dataclass
class PooledFeatures:
    """Pooled states of every encoder layer (0 = the input to block 1) for the utterances of a data dir."""

    utt_ids: List[str]
    langs: List[str]
    layers: Dict[int, np.ndarray]  # layer -> [utterances, width] float32


@torch.no_grad()
def pooled_layer_features(loaded, data_dir: Path, batch_size: int = 8, pad_to_30s: bool = False,
                          limit: Optional[int] = None) -> PooledFeatures:
    """Mean-pooled states after each encoder block of `loaded` (a registry model, in its current routing
    state) for `data_dir`; real length unless `pad_to_30s`. `limit`: the first utterances only."""
    utterances = sorted(read_data_dir(data_dir), key=lambda u: -u.duration)[:limit]
    device = next(loaded.asr_model.parameters()).device
    pooled: Dict[int, List[np.ndarray]] = {}
    for start in tqdm(range(0, len(utterances), batch_size), desc=f"LID features {Path(data_dir).name}", unit="batch"):
        batch = utterances[start : start + batch_size]
        speech, lengths = pad_batch([utterance_audio(u) for u in batch])
        out = loaded.family.encode(loaded.asr_model, speech.to(device), lengths.to(device), pad_to_30s, all_hidden=True)
        for layer, hidden in enumerate(out.hidden):
            pooled.setdefault(layer, []).append(mean_pool(hidden, out.lengths).float().cpu().numpy())
    return PooledFeatures([u.utt_id for u in utterances], [u.lang for u in utterances],
                          {layer: np.concatenate(parts) for layer, parts in pooled.items()})


class UnlabelledLanguage(UserError, ValueError):
    """Utterances in a language the LID classes lack (the classes are the training data's languages)."""


def label_indices(langs: Sequence[str], languages: Sequence[str], where: str = "the data") -> np.ndarray:
    """Class index of each utterance's language; an error naming `where` the utterances come from (the
    data dirs) and the languages the classes lack, which are the training data's: the fix is there."""
    unknown = sorted(set(langs) - set(languages))
    if unknown:
        raise UnlabelledLanguage(f"{where} holds utterances in {unknown}, which the LID classes {list(languages)} "
                                 f"lack (the classes are the training data's languages): train on data in them "
                                 f"too, or leave them out of {where}")
    return np.array([list(languages).index(lang) for lang in langs])


@dataclass
class FrameFeatures:
    """The tap's states, frame by frame, for the utterances of a data dir (what the heads train on)."""

    utt_ids: List[str]
    langs: List[str]
    durations: np.ndarray  # seconds of audio behind each utterance (crops are cut in seconds)
    frames: List[np.ndarray]  # per utterance [valid frames, width] float32

    def __add__(self, other: "FrameFeatures") -> "FrameFeatures":
        return FrameFeatures(self.utt_ids + other.utt_ids, self.langs + other.langs,
                             np.concatenate([self.durations, other.durations]), self.frames + other.frames)

    def subset(self, index: Sequence[int]) -> "FrameFeatures":
        index = list(index)
        return FrameFeatures([self.utt_ids[i] for i in index], [self.langs[i] for i in index],
                             self.durations[index], [self.frames[i] for i in index])


AudioTransform = Callable[[np.ndarray], np.ndarray]


def random_crops(seconds: Tuple[float, float], seed: int = 0) -> AudioTransform:
    """Cut each clip to a random `seconds[0]..seconds[1]` (uniform) stretch, seeded; shorter clips whole."""
    rng = np.random.default_rng(seed)

    def cut(audio: np.ndarray) -> np.ndarray:
        n = int(rng.uniform(*seconds) * SAMPLE_RATE)
        if n >= len(audio):
            return audio
        start = rng.integers(0, len(audio) - n + 1)
        return audio[start : start + n]

    return cut


def speed(factor: float) -> AudioTransform:
    """Speed perturbation (tempo and pitch: another voice, as far as LID cares), as in training."""
    from espnet_ext.train.augment import speed_perturb

    return lambda audio: speed_perturb(torch.from_numpy(audio), factor).numpy()


def channels(names: Sequence[str], seed: int = 0) -> AudioTransform:
    """Each clip through one of `names` (espnet_ext.data.degrade's conditions: telephone band, codecs,
    noise, a room, another voice), drawn uniformly with its parameters, seeded: LID training augmentation
    for the channels real users record on."""
    from espnet_ext.data.degrade import apply_condition, check_condition

    for name in names:
        check_condition(name)
    rng = np.random.default_rng(seed)
    return lambda audio: apply_condition(names[int(rng.integers(len(names)))], audio, rng)[0]


@torch.no_grad()
def tap_frames(loaded, data_dir: Path, layer: int, batch_size: int = 8, pad_to_30s: bool = False,
               transform: Optional[AudioTransform] = None, name: Optional[str] = None) -> FrameFeatures:
    """The states after encoder block `layer` of `loaded` (in its current routing state: a shared adapter
    below the tap counts when the caller has turned it on) for every utterance of `data_dir`, valid
    frames only; each pass stops at the tap. `transform` changes each clip first (`random_crops`: short
    clips encoded alone; `speed`: LID training augmentation). `name` (default: the dir's) labels the
    progress bar."""
    utterances = sorted(read_data_dir(data_dir), key=lambda u: -u.duration)
    audios = [utterance_audio(u) for u in utterances]
    if transform is not None:  # (in duration order: the transform's random draws do not depend on batching)
        audios = [transform(a) for a in audios]
        order = sorted(range(len(audios)), key=lambda i: -len(audios[i]))  # a batch pads to its own length
        utterances, audios = [utterances[i] for i in order], [audios[i] for i in order]
    device = next(loaded.asr_model.parameters()).device
    frames: List[np.ndarray] = []
    for start in tqdm(range(0, len(audios), batch_size), desc=f"LID frames {name or Path(data_dir).name}", unit="batch"):
        speech, lengths = pad_batch(audios[start : start + batch_size])
        out = loaded.family.encode(loaded.asr_model, speech.to(device), lengths.to(device), pad_to_30s,
                                   tap=Tap(layer, stop=True))
        frames += [out.tapped[i, :n].float().cpu().numpy() for i, n in enumerate(out.lengths.tolist())]
    return FrameFeatures([u.utt_id for u in utterances], [u.lang for u in utterances],
                         np.array([len(a) / SAMPLE_RATE for a in audios]), frames)


def save_frame_cache(features: FrameFeatures, cache_dir: Path) -> None:
    """`features` as `read_frame_cache` reads them (its docstring): float16 `feats.ark`, `utt2lang`,
    `utt2dur`, and `feats.scp` last."""
    import kaldiio

    cache_dir.mkdir(parents=True, exist_ok=True)
    halves = {utt: frames.astype(np.float16) for utt, frames in zip(features.utt_ids, features.frames)}
    kaldiio.save_ark(str(cache_dir / "feats.ark"), halves, scp=str(cache_dir / "feats.scp.tmp"), write_function="numpy")
    atomic_write_text(cache_dir / "utt2lang", "".join(f"{u} {x}\n" for u, x in zip(features.utt_ids, features.langs)))
    atomic_write_text(cache_dir / "utt2dur", "".join(f"{u} {d:.3f}\n" for u, d in zip(features.utt_ids, features.durations)))
    (cache_dir / "feats.scp.tmp").rename(cache_dir / "feats.scp")


@dataclass
class TapCache:
    """A data dir's tap frames cached in `cache_dir`, each clip first changed by the transform that
    `transform()` makes (a fresh one per cache, so a seeded transform draws the same stretches however
    many other caches are extracted, before, after or beside it)."""

    data_dir: Path
    cache_dir: Path
    transform: Optional[Callable[[], AudioTransform]] = None


def extract_tap_caches(loaded, layer: int, caches: Sequence[TapCache], batch_size: int = 8, processes: int = 1) -> None:
    """Extract the tap frames (`tap_frames`) of each cache not yet written (`read_frame_cache` reads them).
    On a CPU model, `processes` forked one-thread processes extract caches side by side, the data dirs
    with the most audio first (espnet_ext.parallel). The encoder's matrices are large enough that a
    second thread already does most of what a second process does: stage 4's eleven caches took 142 s
    one after another on 2 threads, 134 s side by side (README, "Language ID and routing")."""
    def seconds(cache: TapCache) -> float:
        return sum(u.duration for u in read_data_dir(cache.data_dir))

    todo = sorted((c for c in caches if not (c.cache_dir / "feats.scp").is_file()), key=seconds, reverse=True)

    def extract(i: int) -> None:
        cache = todo[i]
        transform = cache.transform() if cache.transform else None
        save_frame_cache(tap_frames(loaded, cache.data_dir, layer, batch_size, transform=transform,
                                    name=cache.cache_dir.name), cache.cache_dir)

    on_cpu = next(loaded.asr_model.parameters()).device.type == "cpu" if todo else True
    forked_map(extract, len(todo), processes if on_cpu else 1)


def read_frame_cache(cache_dir: Path) -> FrameFeatures:
    """The frames `extract_tap_caches` cached in `cache_dir/`: float16 matrices (kaldiio `feats.ark` of
    NumPy entries, `feats.scp`, written last, so a killed extraction is redone) + `utt2lang` +
    `utt2dur`; a rerun reads them (training sees what every rerun sees). float16 keeps each value to 1
    part in 2,000, twice the size of Kaldi's 8-bit compression but finer, and is written in a second
    where that compression took ~18 s of stage 4 (caches in it still read)."""
    import kaldiio

    table = {name: dict(line.split() for line in (cache_dir / name).read_text(encoding="utf-8").splitlines())
             for name in ("utt2lang", "utt2dur")}
    with kaldiio.ReadHelper(f"scp:{cache_dir / 'feats.scp'}") as reader:
        items = [(utt, np.asarray(matrix, dtype=np.float32)) for utt, matrix in reader]
    utts = [u for u, _ in items]
    return FrameFeatures(utts, [table["utt2lang"][u] for u in utts],
                         np.array([float(table["utt2dur"][u]) for u in utts]), [m for _, m in items])


def cached_tap_frames(loaded, data_dir: Path, layer: int, cache_dir: Path, batch_size: int = 8,
                      transform: Optional[AudioTransform] = None) -> FrameFeatures:
    """`tap_frames` of one data dir, extracted into `cache_dir/` unless there already, read from it."""
    extract_tap_caches(loaded, layer, [TapCache(data_dir, cache_dir, transform and (lambda: transform))], batch_size)
    return read_frame_cache(cache_dir)
