"""Representation space (stage 7): how far each adapter moves the encoder's representations from the
base's, layer by layer, and how much language and language-family identity each layer holds, with and
without an adapter.

Every measure works on the mean-pooled states of every encoder layer (`pooled_layer_features`) of one
probe subset, read once per *state* of the model:

- `base`: the bank off (the base model as it ships);
- each adapter X: every utterance through X's adapter (the language banks one-hot on X, the shared
  adapter on where the layout has one), whatever language it is in.

The probes use these single-adapter states, never oracle routing: under oracle routing a Hindi
utterance would run through the hi adapter and a Telugu one through te's, so any difference between
the two adapters would separate the languages by itself, and a probe would read back the language the
routing was handed (utt2lang) rather than what the network hears. One function applied to every
utterance is also what CKA needs to compare two states on the same examples.
"""
import contextlib
import hashlib
import logging
import time
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from espnet_ext.analysis.plotting import language_color, pyplot, save_figure
from espnet_ext.data.kaldi import read_data_dir
from espnet_ext.errors import UserError
from espnet_ext.languages import LANGUAGES, get_language
from espnet_ext.lid.features import PooledFeatures, label_indices, pooled_layer_features
from espnet_ext.lid.probe import fit_probe, probe_accuracy
from espnet_ext.lora.inject import adapter_names, bank_info, set_active_adapter

log = logging.getLogger(__name__)

BASE = "base"  # the state with the bank off
FOLDS = 5  # cross-validation folds of the probes (fewer when a language has fewer utterances)
CONTROL_SEEDS = (0, 1, 2)  # the control task's label permutations, averaged: on a probe subset of 40 one
# permutation's held-out accuracy swings by +-0.13 (0.225-0.5 over five seeds on the default run's layer 0)


class TooFewProbeUtterances(UserError, ValueError):
    """A probe subset with a language too rare to cross-validate a probe on."""


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear centred kernel alignment between two representations of the same n examples ([n, d1],
    [n, d2]): ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on column-centred X, Y (Kornblith, Norouzi, Lee
    and Hinton, "Similarity of Neural Network Representations Revisited", ICML 2019). 1 for the same
    representation; invariant to orthogonal transforms and isotropic scaling of either side (a rotated
    or rescaled layer holds the same information), but not to other invertible linear maps (unlike CCA,
    it does not count a direction of tiny variance as much as the main ones).

    Computed in float64, in the feature-space form, or in the equivalent example-space form
    <XX^T, YY^T> / (||XX^T|| ||YY^T||) where that is cheaper (n below the widths: a few probe
    utterances of a wide encoder)."""
    if len(x) != len(y):
        raise ValueError(f"CKA compares representations of the same examples; got {len(x)} and {len(y)} rows")
    x = np.asarray(x, dtype=np.float64) - np.mean(x, axis=0, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64) - np.mean(y, axis=0, dtype=np.float64)
    n, d1, d2 = len(x), x.shape[1], y.shape[1]
    if n * (d1 + d2) < d1 * d1 + d1 * d2 + d2 * d2:
        k, l = x @ x.T, y @ y.T
        cross, norm_x, norm_y = np.sum(k * l), np.linalg.norm(k), np.linalg.norm(l)
    else:
        cross, norm_x, norm_y = np.linalg.norm(y.T @ x) ** 2, np.linalg.norm(x.T @ x), np.linalg.norm(y.T @ y)
    if norm_x == 0 or norm_y == 0:
        raise ValueError("CKA is undefined for a representation that is the same for every example")
    return float(cross / (norm_x * norm_y))


@contextlib.contextmanager
def evaluating(model) -> Iterator[None]:
    """Dropout off while an analysis reads the model (a registry model loads in training mode, and the
    adapters' dropout would make two reads differ); the caller's mode restored after."""
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


def state_features(loaded, probe_dir: Path, batch_size: int = 8,
                   names: Optional[Sequence[str]] = None) -> Dict[str, PooledFeatures]:
    """Pooled states of every encoder layer of `loaded` for `probe_dir`, per state (module docstring):
    `names`, by default `base` then each adapter in the bank's order. Read in eval mode (a registry model
    loads in train mode, and the adapters' dropout would make two reads of one state differ); leaves the
    model routed as the base, in the mode it had."""
    model = loaded.asr_model
    states = {}
    with evaluating(model):
        try:
            for state in names or (BASE, *adapter_names(model)):
                set_active_adapter(model, None if state == BASE else state)
                states[state] = pooled_layer_features(loaded, probe_dir, batch_size)
        finally:
            set_active_adapter(model, None)
    return states


def pair_key(a: str, b: str) -> str:
    return f"{a}~{b}"


def cka_by_layer(states: Dict[str, PooledFeatures]) -> Dict[str, List[float]]:
    """Linear CKA per encoder layer between the base and each adapter state, and between every two
    adapter states: `{"base~hi": [layer 0, 1, ...], ..., "hi~pa": [...]}`."""
    adapters = [s for s in states if s != BASE]
    pairs = [(BASE, a) for a in adapters] + list(combinations(adapters, 2))
    layers = sorted(states[BASE].layers)
    return {pair_key(a, b): [linear_cka(states[a].layers[k], states[b].layers[k]) for k in layers] for a, b in pairs}


def stratified_folds(labels: np.ndarray, folds: int) -> np.ndarray:
    """The fold of each example: each class dealt round-robin over the folds in the examples' order,
    starting where the previous class stopped, so every fold holds each class in proportion and the
    folds' sizes differ by at most one. Deterministic: a rerun probes the same splits."""
    fold_of = np.empty(len(labels), dtype=int)
    dealt = 0
    for label in np.unique(labels):
        index = np.flatnonzero(labels == label)
        fold_of[index] = (dealt + np.arange(len(index))) % folds
        dealt += len(index)
    return fold_of


def cross_validated_accuracy(x: np.ndarray, labels: np.ndarray, classes: Sequence[str], folds: int,
                             layer: int = 0) -> float:
    """Held-out accuracy of the linear probe (`fit_probe`) over stratified folds: every example is
    predicted once, by the probe trained on the other folds."""
    fold_of = stratified_folds(labels, folds)
    correct = 0.0
    for fold in range(folds):
        held = fold_of == fold
        probe = fit_probe(layer, classes, x[~held], labels[~held])
        correct += probe_accuracy(probe, x[held], labels[held]) * held.sum()
    return float(correct / len(labels))


def probe_with_control(x: np.ndarray, labels: np.ndarray, classes: Sequence[str], folds: int,
                       layer: int = 0) -> Tuple[float, float]:
    """(accuracy, control accuracy): the control task has the same labels permuted across examples
    (seeded), so its label distribution is the task's but no label follows from the input. A probe
    that scores well on it is memorising, and only accuracy above the control (the selectivity, after
    Hewitt and Liang, EMNLP 2019) is knowledge the layer holds. The control is the mean over
    CONTROL_SEEDS' permutations."""
    controls = [cross_validated_accuracy(x, np.random.default_rng(seed).permutation(labels), classes, folds, layer)
                for seed in CONTROL_SEEDS]
    return cross_validated_accuracy(x, labels, classes, folds, layer), float(np.mean(controls))


def table_order(langs: Sequence[str]) -> List[str]:
    """The distinct languages of `langs`, in the language table's order (the order of every figure)."""
    return [code for code in LANGUAGES if code in set(langs)]


Tasks = Dict[str, Tuple[List[str], np.ndarray]]  # task -> (classes, class index per utterance)


def probe_tasks(langs: Sequence[str]) -> Tasks:
    """The probes' tasks on utterances in `langs`: language and language family, each as (classes in
    the language table's order, class index per utterance); a task with a single class is left out
    (nothing to tell apart)."""
    languages = table_order(langs)
    families = list(dict.fromkeys(get_language(code).family for code in languages))
    tasks = {"language": (languages, list(langs)), "family": (families, [get_language(c).family for c in langs])}
    return {task: (classes, label_indices(names, classes)) for task, (classes, names) in tasks.items()
            if len(classes) > 1}


def probe_folds(probe_dir: Path, langs: Sequence[str]) -> int:
    """FOLDS, or the utterance count of the rarest language when that is smaller (every fold then holds
    each language); an error naming the dir when a language has a single utterance."""
    rarest, fewest = min(Counter(langs).items(), key=lambda item: item[1])
    if fewest < 2:
        raise TooFewProbeUtterances(f"{probe_dir} holds {fewest} utterance in {rarest!r}: the probes' cross-validation "
                                    "needs at least 2 per language; take a larger probe subset (probe_subset's "
                                    "per_language)")
    return min(FOLDS, fewest)


def probes_by_layer(states: Dict[str, PooledFeatures], folds: int,
                    tasks: Optional[Tasks] = None) -> Dict[str, Dict[str, Dict[str, List[float]]]]:
    """Per task (default: language and family, `probe_tasks`), per state: probe accuracy, control accuracy
    and selectivity on every encoder layer.

    A layer whose states are the same in several states (the front end's output always; below the
    tap, every adapter state of layout shared_below and every state of above_tap) is probed once: the probes are
    deterministic, and fitting them is most of the analysis' time."""
    tasks = tasks if tasks is not None else probe_tasks(states[BASE].langs)
    layers = sorted(states[BASE].layers)
    runs = [(task, state, layer) for task in tasks for state in states for layer in layers]
    scores, probed = {}, {}
    for task, state, layer in tqdm(runs, desc="representation probes", unit="probe"):
        x = states[state].layers[layer]
        key = (task, hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest())
        if key not in probed:
            classes, labels = tasks[task]
            probed[key] = probe_with_control(x, labels, classes, folds, layer)
        scores[task, state, layer] = probed[key]
    result: Dict[str, Dict[str, Dict[str, List[float]]]] = {}
    for task in tasks:
        for state in states:
            accuracy, control = zip(*(scores[task, state, layer] for layer in layers))
            result.setdefault(task, {})[state] = {"accuracy": list(accuracy), "control": list(control),
                                                  "selectivity": [a - c for a, c in zip(accuracy, control)]}
    return result


def representation_analysis(loaded, probe_dir: Path, batch_size: int = 8) -> Dict[str, Any]:
    """CKA and probes of every state of `loaded` (a registry model holding its adapter bank, as
    `load_adapters` loads it) on the probe subset `probe_dir`; a JSON-serialisable dict."""
    langs = [u.lang for u in read_data_dir(probe_dir)]
    folds = probe_folds(probe_dir, langs)
    layout = bank_info(loaded.asr_model).layout
    start = time.perf_counter()
    states = state_features(loaded, probe_dir, batch_size)
    features_s = time.perf_counter() - start
    cka = cka_by_layer(states)
    probes = probes_by_layer(states, folds)
    log.info("representation analysis of %d utterances: states %.1f s, CKA and probes %.1f s", len(langs),
             features_s, time.perf_counter() - start - features_s)
    base = states[BASE]
    return {
        "probe_dir": str(probe_dir),
        "utterances": len(base.utt_ids),
        "languages": table_order(base.langs),
        "layers": sorted(base.layers),
        "states": list(states),
        "tap_layer": None if layout.kind == "per_language" else layout.tap_layer,
        "folds": folds,
        "cka": cka,
        "probes": probes,
    }


def _mark_tap(ax, result: Dict[str, Any]) -> None:
    if result["tap_layer"] is not None:
        ax.axvline(result["tap_layer"], color="grey", linestyle=":", label=f"LID tap (layer {result['tap_layer']})")


def _layer_axis(ax, result: Dict[str, Any]) -> None:
    ax.set_xticks(result["layers"])
    ax.set_xlabel("encoder layer (0 = front-end output)")
    ax.grid(alpha=0.3)


def plot_cka(result: Dict[str, Any], stem: Path) -> List[Path]:
    """CKA vs encoder layer, one line per pair of states: base vs adapter (solid) and adapter vs adapter
    (dashed) on two panels with a shared axis. Lines over depth show where the states part, which is the
    question; a heatmap per layer would need one panel per layer to show the same thing, and ten lines
    on one panel tangle."""
    plt = pyplot()
    groups = [(f"{BASE} vs adapter", "-", [k for k in result["cka"] if k.startswith(BASE + "~")]),
              ("adapter vs adapter", "--", [k for k in result["cka"] if not k.startswith(BASE + "~")])]
    groups = [g for g in groups if g[2]]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), sharey=True, squeeze=False)
    for ax, (title, style, keys) in zip(axes[0], groups):
        for key in keys:
            pair = key.split("~")
            colour = language_color(pair[1]) if pair[0] == BASE else None  # adapter pairs: the default cycle
            ax.plot(result["layers"], result["cka"][key], style, marker="o", color=colour, label=key.replace("~", " vs "))
        _mark_tap(ax, result)
        _layer_axis(ax, result)
        ax.set_title(title)
        ax.legend(fontsize="small")
    axes[0][0].set_ylabel("linear CKA (0 to 1, unitless)")
    fig.suptitle(f"Representation similarity per encoder layer ({result['utterances']} probe utterances)")
    return save_figure(fig, stem)


def plot_probes(result: Dict[str, Any], stem: Path) -> List[Path]:
    """Probe accuracy vs encoder layer per state (solid) with its shuffled-label control (dashed, same
    colour), one panel per task (language, family); the tap layer marked."""
    from matplotlib.lines import Line2D

    plt = pyplot()
    tasks = list(result["probes"])
    columns = min(2, len(tasks))  # two panels a row: four tasks (the phonetic probes) stay readable on a slide
    rows = -(-len(tasks) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns + 2, 4.2 * rows), sharey=True, squeeze=False)
    for ax in axes.flat[len(tasks):]:
        ax.axis("off")
    for ax, task in zip(axes.flat, tasks):
        for state in result["states"]:
            scores, colour = result["probes"][task][state], language_color(state)
            ax.plot(result["layers"], scores["accuracy"], "-", marker="o", color=colour, label=state)
            ax.plot(result["layers"], scores["control"], "--", color=colour)
        _mark_tap(ax, result)
        _layer_axis(ax, result)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{task} probe ({result['folds']}-fold cross-validation)")
    handles, _ = axes[0][0].get_legend_handles_labels()
    handles += [Line2D([], [], color="black", linestyle="-", label="accuracy"),
                Line2D([], [], color="black", linestyle="--", label="shuffled-label control")]
    axes[0][-1].legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))
    for row in axes:
        row[0].set_ylabel("held-out accuracy (fraction of utterances)")
    fig.suptitle(f"Linear probes per encoder layer and model state ({result['utterances']} probe utterances)")
    return save_figure(fig, stem)
