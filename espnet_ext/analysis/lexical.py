"""Lexical probe (a stage-7 study): does an encoder layer, bare or with its language's adapter, know which
of the language's most frequent training words an utterance holds?

For each adapter language: its TOP_WORDS most frequent training words (after the scoring normaliser); on
that language's probe utterances, one multi-label linear probe per encoder layer (a sigmoid output per
word, trained jointly on the mean-pooled states, `FOLDS`-fold cross-validated) predicts which of the words
occur. Probing within one language keeps language identity out: across languages, frequent words would be
told apart by their language alone. A word is probed where at least MIN_EACH utterances hold it and
MIN_EACH do not.

The score is the mean over words of the held-out balanced accuracy ((hit rate + correct-rejection rate) / 2,
0.5 = chance whatever the word's frequency). Its control is the same probe on the label rows shuffled across
utterances (each word keeps its frequency and its co-occurrences, but no longer follows from the audio),
averaged over CONTROL_SEEDS; the selectivity (score minus control) is what the layer holds (Hewitt and
Liang, EMNLP 2019). States: the bare base, and the language's own adapter (as the representation
analysis' single-adapter states).
"""
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from espnet_ext.data.kaldi import read_data_dir
from espnet_ext.scoring.report import read_kaldi_map
from espnet_ext.scoring.normalize import normalize_text

TOP_WORDS = 50
MIN_EACH = 3
FOLDS = 3
CONTROL_SEEDS = (0, 1, 2)


def top_words(train_dir: Path, k: int = TOP_WORDS) -> Dict[str, List[str]]:
    """Per language of `train_dir`'s utt2lang, its `k` most frequent (normalised) words in `train_dir`/text."""
    langs = read_kaldi_map(Path(train_dir) / "utt2lang")
    counts: Dict[str, Counter] = {}
    for utt, text in read_kaldi_map(Path(train_dir) / "text", allow_empty_value=True).items():
        if utt in langs:
            counts.setdefault(langs[utt], Counter()).update(normalize_text(text).split())
    return {lang: [w for w, _ in c.most_common(k)] for lang, c in counts.items()}


def word_labels(texts: Sequence[str], words: Sequence[str]) -> Tuple[List[str], np.ndarray]:
    """The probed words (held by at least MIN_EACH of `texts` and missing from MIN_EACH) and the
    [utterances, words] 0/1 matrix of which text holds which."""
    held = np.array([[w in set(normalize_text(t).split()) for w in words] for t in texts], dtype=np.float32)
    keep = [j for j in range(len(words)) if MIN_EACH <= held[:, j].sum() <= len(texts) - MIN_EACH]
    return [words[j] for j in keep], held[:, keep]


def _fit(x: np.ndarray, y: np.ndarray, steps: int = 300, lr: float = 1e-2, weight_decay: float = 1e-4):
    """A standardised linear layer with one sigmoid output per word, fitted full-batch (fit_probe's settings)."""
    torch.manual_seed(0)
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    mean, std = xt.mean(0), xt.std(0).clamp_min(1e-5)
    linear = nn.Linear(x.shape[1], y.shape[1])
    optimizer = torch.optim.Adam(linear.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(linear((xt - mean) / std), yt).backward()
        optimizer.step()
    return lambda z: (linear((torch.from_numpy(z).float() - mean) / std) > 0).numpy()


def balanced_accuracy(x: np.ndarray, y: np.ndarray, folds: int = FOLDS) -> float:
    """Mean over words of the held-out balanced accuracy; every utterance predicted once, by the probe
    fitted on the other folds (utterance i in fold i mod `folds`)."""
    fold_of = np.arange(len(x)) % folds
    predicted = np.zeros_like(y, dtype=bool)
    for fold in range(folds):
        held = fold_of == fold
        with torch.enable_grad():
            predict = _fit(x[~held], y[~held])
        with torch.no_grad():
            predicted[held] = predict(x[held])
    truth = y.astype(bool)
    hit = (predicted & truth).sum(0) / truth.sum(0)
    rejection = (~predicted & ~truth).sum(0) / (~truth).sum(0)
    return float(np.mean((hit + rejection) / 2))


def probe_layers(states: Dict[str, Any], y: np.ndarray) -> Dict[str, Dict[str, List[float]]]:
    """Per state (PooledFeatures of one language's utterances): score, control and selectivity per layer."""
    out = {}
    for name, feats in states.items():
        layers = sorted(feats.layers)
        score = [balanced_accuracy(feats.layers[k], y) for k in layers]
        control = [float(np.mean([balanced_accuracy(feats.layers[k], np.random.default_rng(s).permutation(y))
                                  for s in CONTROL_SEEDS])) for k in layers]
        out[name] = {"accuracy": score, "control": control, "selectivity": [a - c for a, c in zip(score, control)]}
    return out


def lexical_probes(loaded, probe_dir: Path, train_dir: Path, out_dir: Path, batch_size: int = 8) -> Dict[str, Any]:
    """The study on `probe_dir` (a Kaldi dir of several languages; each language's utterances are written to
    `out_dir`/<lang> and encoded bare and through that language's adapter); a JSON-ready dict."""
    from espnet_ext.analysis.representations import BASE, state_features
    from espnet_ext.analysis.subsets import write_subset
    from espnet_ext.lora.inject import adapter_names, bank_info

    vocabulary = top_words(train_dir)
    utterances = read_data_dir(probe_dir)
    bank = adapter_names(loaded.asr_model)
    result: Dict[str, Any] = {"probe_dir": str(probe_dir), "train_dir": str(train_dir), "top_words": TOP_WORDS,
                              "folds": FOLDS, "languages": {}}
    for lang in dict.fromkeys(u.lang for u in utterances):
        if lang not in bank or lang not in vocabulary:
            continue
        chosen = [u for u in utterances if u.lang == lang]
        lang_dir = write_subset(Path(out_dir) / lang, chosen)
        states = state_features(loaded, lang_dir, batch_size, names=(BASE, lang))
        text = {u.utt_id: u.text for u in chosen}
        words, y = word_labels([text[u] for u in states[BASE].utt_ids], vocabulary[lang])
        if not words:
            continue
        result["layers"] = sorted(states[BASE].layers)
        result["languages"][lang] = {"utterances": len(chosen), "words": words,
                                     "word_share": [float(s) for s in y.mean(0)], "probes": probe_layers(states, y)}
    layout = bank_info(loaded.asr_model).layout
    result["tap_layer"] = None if layout.kind == "per_language" else layout.tap_layer
    return result


def plot_lexical(result: Dict[str, Any], stem: Path) -> List[Path]:
    """Selectivity per layer: the bare base dashed, the language's own adapter solid, one colour a language."""
    from espnet_ext.analysis.plotting import language_color, pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 3.8))
    for lang, r in result["languages"].items():
        for state, style in (("base", "--"), (lang, "-")):
            ax.plot(result["layers"], [100 * v for v in r["probes"][state]["selectivity"]], style, marker="o",
                    markersize=3, color=language_color(lang),
                    label=f"{lang} {'bare base' if state == 'base' else 'own adapter'} ({len(r['words'])} words)")
    if result.get("tap_layer") is not None:
        ax.axvline(result["tap_layer"], color="grey", linestyle=":", label=f"LID tap (layer {result['tap_layer']})")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xticks(result["layers"])
    ax.set_xlabel("encoder layer (0 = front-end output)")
    ax.set_ylabel("balanced accuracy over control (points)")
    ax.set_title("Which frequent words an utterance holds: lexical probe selectivity", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return save_figure(fig, stem)
