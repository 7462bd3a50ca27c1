"""Cross-lingual transfer: how much one language's adapter helps another, read from scored decode dirs.

**Zero-shot matrix.** Adapter X decoding language Y with Y's own language token (`decode.py --routing
oracle --adapter X`, shared adapter on where the layout has one) into `<exp>/decode_test_<Y>_adapter_<X>`,
scored by espnet_ext.bin.score; a row for the bare base (the zero-shot decode, per-language scores); the
diagonal is the oracle system itself (adapter Y on Y gives exactly the oracle routing's transcripts, so
an oracle decode's per-language scores stand in for a missing `decode_test_<Y>_adapter_<Y>`).

**Few shot.** Y's adapter trained on N utterances of Y (`few_shot_subset`, N in 25/100/400, equal
steps), from scratch or starting from X's adapter (`train_lora --init_adapter_dir <exp>/adapters/<X>`),
each run an exp dir `<model>_<Y>_r<rank>_<few_shot_tag(N, init)>` with its dev decode
`decode_dev_<Y>_oracle`. The project plan's metrics: the transfer gain `WER_transfer - WER_scratch` per N
(negative: starting from X helps) and the smallest N at which scratch catches up (None if it never does);
and, so that pairs with different targets compare, the gain relative to scratch with its paired bootstrap
95% CI over the dev utterances.

Every cell names the scores.json it came from; a cell whose decode dir is missing is None and listed
under "missing", so a partly run study still reads (and the report says what is absent).
"""
import itertools
import json
import logging
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from espnet_ext.analysis.plotting import pyplot, save_figure
from espnet_ext.analysis.subsets import over_speakers, write_subset
from espnet_ext.data.kaldi import read_data_dir
from espnet_ext.errors import UserError
from espnet_ext.languages import LANGUAGES, get_language

log = logging.getLogger(__name__)

BASE = "base"  # the zero-shot matrix's row of the bare base model
SCRATCH = "scratch"  # a few-shot run from LoRA's own initialisation
METRICS = ("wer", "cer")
FOLDED = "cer_folded"  # the zero-shot matrix's CER with Brahmic scripts folded onto Devanagari (folded_cer)
FEW_SHOT_SIZES = (25, 100, 400)
PLAN_PAIRS = (("hi", "pa"), ("hi", "te"), ("it", "te"))  # (X, Y): X's adapter starts Y's; --transfer full: all 12
SCORES = "scores.json"
_FEW_SHOT_RUN = re.compile(r"_(?P<lang>[a-z]+)_r\d+_n(?P<n>\d+)_(?:scratch|from_(?P<init>[a-z]+))$")


class TransferInputError(UserError, ValueError):
    """A transfer study input that cannot be read as asked (a test set name, a subset size, two runs of a cell)."""


def zero_shot_decode_dir(exp_dir: Path, test_set: str, adapter: str) -> Path:
    """Where `decode.py --adapter <adapter>` decodes `test_set` (e.g. test_te) of the exp's bank."""
    return Path(exp_dir) / f"decode_{test_set}_adapter_{adapter}"


def few_shot_tag(n: int, init: Optional[str]) -> str:
    """The recipe's `--tag` of a few-shot run: `n25_scratch`, or `n25_from_hi` when started from hi's adapter."""
    return f"n{n}_{SCRATCH}" if init is None else f"n{n}_from_{init}"


def few_shot_subset(data_dir: Path, n: int, out_dir: Path) -> Path:
    """Write `out_dir`: `n` utterances of the one-language `data_dir`, taken round-robin over its speakers
    (espnet_ext.analysis.subsets.over_speakers), so a small subset hears many voices and each smaller subset
    lies inside every larger one; deterministic by id."""
    utterances = sorted(read_data_dir(data_dir), key=lambda u: u.utt_id)
    langs = sorted({u.lang for u in utterances})
    if len(langs) != 1:
        raise TransferInputError(f"{data_dir}/utt2lang holds {langs}; a few-shot subset is of one language's "
                                 "training set (data/train_<Y>)")
    if not 1 <= n <= len(utterances):
        raise TransferInputError(f"{data_dir} holds {len(utterances)} utterances; ask for 1 to {len(utterances)}, "
                                 f"not {n}")
    write_subset(out_dir, over_speakers(utterances, n))
    return Path(out_dir)


def _rates(scores_json: Path, lang: str) -> Optional[Dict[str, Optional[float]]]:
    """{wer, cer} of `lang` in a scored decode dir's scores.json; None when the file is missing."""
    if not scores_json.is_file():
        return None
    scores = json.loads(scores_json.read_text(encoding="utf-8"))["scores"]
    if lang not in scores:
        raise TransferInputError(f"{scores_json} scores no {lang} utterances (it scores {sorted(scores)}); is it the "
                                 f"decode dir of a {lang} set?")
    return {metric: scores[lang][metric]["rate"] for metric in METRICS}


def folded_cer(scores_json: Path, lang: str) -> Optional[float]:
    """CER (%) over `lang`'s utterances of the scored decode dir of `scores_json`, both texts normalised as
    scoring does, Brahmic scripts folded onto Devanagari (espnet_ext.scoring.normalize.fold_brahmic) and spaces
    removed: how far an adapter's output is from the reference in sound, whatever script it writes. None
    where the decode's texts are not on disk."""
    from espnet_ext.scoring.normalize import fold_brahmic, normalize_text

    scores = json.loads(scores_json.read_text(encoding="utf-8"))
    ref_file, hyp_file = Path(scores.get("ref_text", "")), scores_json.parent / "text"
    if not ref_file.is_file() or not hyp_file.is_file():
        return None
    from espnet_ext.scoring.report import read_kaldi_map

    refs, hyps = read_kaldi_map(ref_file, allow_empty_value=True), read_kaldi_map(hyp_file, allow_empty_value=True)
    ids = [u for u, v in sorted(scores.get("utterances", {}).items()) if v["lang"] == lang and u in refs]

    def folded(text: str) -> str:
        return fold_brahmic(normalize_text(text)).replace(" ", "")

    pairs = [(folded(refs[u]), folded(hyps.get(u, ""))) for u in ids]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return None
    return 100 * sum(_char_errors(r, h) for r, h in pairs) / sum(len(r) for r, _ in pairs)


def _char_errors(ref: str, hyp: str) -> int:
    """Character edits from `ref` to `hyp` (an empty hypothesis deletes every character)."""
    import jiwer

    if not hyp:
        return len(ref)
    out = jiwer.process_characters(ref, hyp)
    return out.substitutions + out.deletions + out.insertions


def _test_language(test_set: str) -> str:
    """The language of test set `test_<Y>` (the part after the first underscore)."""
    lang = test_set.partition("_")[2]
    try:
        get_language(lang)
    except ValueError:
        raise TransferInputError(f"test set {test_set!r}: name the per-language test sets test_<language>, "
                                 f"<language> one of {', '.join(LANGUAGES)}") from None
    return lang


def _empty(rows: Sequence[str], columns: Sequence[str]) -> Dict[str, Dict[str, None]]:
    return {row: {col: None for col in columns} for row in rows}


def zero_shot_matrix(exp_dir: Path, test_sets: Sequence[str], base_dir: Optional[Path] = None,
                     oracle_dir: Optional[Path] = None) -> dict:
    """WER and CER of every adapter of `<exp_dir>/adapters` (rows) on every test set `test_<Y>` (columns),
    plus the bare base's row from `base_dir` (e.g. exp/whisper_base_zeroshot/decode_test_all_none) and, for
    a diagonal cell with no `decode_test_<Y>_adapter_<Y>`, the oracle decode `oracle_dir` (e.g.
    <exp>/decode_test_all_oracle). Returns {"adapters": [..., "base"], "languages", "test_sets" (language ->
    set), "wer"/"cer": {adapter: {lang: rate or None}}, "sources": {adapter: {lang: scores.json or None}},
    "missing": [[adapter, lang], ...]}."""
    from espnet_ext.lora.adapter_files import bank_languages

    exp_dir = Path(exp_dir)
    sets = {_test_language(test_set): test_set for test_set in test_sets}
    languages = list(sets)
    adapters = sorted(bank_languages(exp_dir / "adapters"), key=list(LANGUAGES).index) + [BASE]
    result = {"adapters": adapters, "languages": languages, "test_sets": sets,
              **{key: _empty(adapters, languages) for key in (*METRICS, FOLDED, "sources")}, "missing": []}
    for adapter, lang in itertools.product(adapters, languages):
        if adapter == BASE:
            dirs = [base_dir]
        else:
            dirs = [zero_shot_decode_dir(exp_dir, sets[lang], adapter), oracle_dir if adapter == lang else None]
        found = [(d / SCORES, _rates(d / SCORES, lang)) for d in dirs if d is not None]
        path, rates = next(((path, rates) for path, rates in found if rates is not None), (None, None))
        if rates is None:
            result["missing"].append([adapter, lang])
            continue
        result["sources"][adapter][lang] = str(path)
        for metric in METRICS:
            result[metric][adapter][lang] = rates[metric]
        result[FOLDED][adapter][lang] = folded_cer(path, lang)
    if result["missing"]:
        log.warning("zero-shot matrix of %s: %d cells not decoded yet (None): %s", exp_dir, len(result["missing"]),
                    ", ".join(f"{a} on {y}" for a, y in result["missing"]))
    return result


def _few_shot_runs(results_dir: Path) -> Dict[Tuple[str, int, str], Path]:
    """(target language, N, init: "scratch" or the source language) -> the run's exp dir, for every exp dir
    of `results_dir` named by few_shot_tag; two runs of one cell (two models or ranks) are refused."""
    runs: Dict[Tuple[str, int, str], Path] = {}
    for exp in sorted(p for p in Path(results_dir).iterdir() if p.is_dir()):
        match = _FEW_SHOT_RUN.search(exp.name)
        if match is None:
            continue
        key = (match["lang"], int(match["n"]), match["init"] or SCRATCH)
        if key in runs:
            raise TransferInputError(f"{runs[key]} and {exp} are both the few-shot run {key}; keep one model and "
                                     f"rank per results dir (move the other out of {results_dir})")
        runs[key] = exp
    return runs


def _relative_gain(scratch_json: Optional[str], transfer_json: Optional[str], lang: str,
                   metric: str) -> Optional[List[float]]:
    """[relative change of `lang`'s dev errors from scratch to transfer, 2.5th, 97.5th percentile] as fractions, by a
    paired bootstrap over the utterances both decodes scored; None where either run or its per-utterance
    errors is missing."""
    from espnet_ext.scoring.compare import bootstrap_relative_change, paired_errors

    if scratch_json is None or transfer_json is None:
        return None
    scratch, transfer = (json.loads(Path(path).read_text(encoding="utf-8")).get("utterances", {})
                         for path in (scratch_json, transfer_json))
    errors, baseline = paired_errors(transfer, scratch, lang, "word" if metric == "wer" else "char")
    if not len(errors):
        return None
    return list(bootstrap_relative_change(errors, baseline))


def _catch_up(sizes: Sequence[int], scratch: Sequence[Optional[float]],
              transfer: Sequence[Optional[float]]) -> Optional[int]:
    """The smallest N at which scratch is as good as transfer (both measured); None if it never is."""
    return next((n for n, s, t in zip(sizes, scratch, transfer) if s is not None and t is not None and s <= t), None)


def _curve(runs: Dict[Tuple[str, int, str], Path], target: str, init: str,
           sizes: Sequence[int]) -> Tuple[List[Optional[str]], Dict[str, List[Optional[float]]]]:
    """The dev scores.json and {wer, cer} of `target`'s runs started from `init`, one per N (None: missing)."""
    paths: List[Optional[str]] = []
    rates: Dict[str, List[Optional[float]]] = {metric: [] for metric in METRICS}
    for n in sizes:
        path = runs[target, n, init] / f"decode_dev_{target}_oracle" / SCORES if (target, n, init) in runs else None
        found = _rates(path, target) if path is not None else None
        paths.append(str(path) if found is not None else None)
        for metric in METRICS:
            rates[metric].append(found[metric] if found is not None else None)
    return paths, rates


def few_shot_curves(results_dir: Path, pairs: Optional[Sequence[Tuple[str, str]]] = None) -> dict:
    """Dev WER/CER per (pair X->Y, N, init in {scratch, X}) from the few-shot runs' scored dev decodes
    (`<run>/decode_dev_<Y>_oracle/scores.json`) in `results_dir`. `pairs`: (X, Y) to report; default the
    plan's pairs (PLAN_PAIRS) and every other pair with a transfer run. Returns {"sizes": [N, ...],
    "pairs": {"X->Y": {"source": X, "target": Y, "wer"/"cer": {"scratch": [per N], "transfer": [per N]},
    "gain": {"wer"/"cer": [transfer - scratch per N]}, "catch_up": {"wer"/"cer": N or None},
    "relative": {"wer"/"cer": [[change vs scratch, CI low, CI high] (fractions) per N]},
    "sources": {"scratch"/"transfer": [scores.json per N]}}}, "missing": [["X->Y", "scratch"|"transfer", N]]};
    None wherever a run or its decode is missing."""
    runs = _few_shot_runs(results_dir)
    if pairs is None:
        trained = {(init, lang) for lang, _, init in runs if init != SCRATCH}
        pairs = [*PLAN_PAIRS, *sorted(trained - set(PLAN_PAIRS))]
    sizes = sorted({n for _, n, _ in runs} | set(FEW_SHOT_SIZES))
    result = {"sizes": sizes, "pairs": {}, "missing": []}
    for source, target in pairs:
        name = f"{source}->{target}"
        curves = {"scratch": _curve(runs, target, SCRATCH, sizes), "transfer": _curve(runs, target, source, sizes)}
        result["missing"] += [[name, label, n] for label, (paths, _) in curves.items()
                              for n, path in zip(sizes, paths) if path is None]
        entry = {"source": source, "target": target, "gain": {}, "catch_up": {}, "relative": {},
                 "sources": {label: paths for label, (paths, _) in curves.items()}}
        for metric in METRICS:
            scratch, transfer = curves["scratch"][1][metric], curves["transfer"][1][metric]
            entry[metric] = {"scratch": scratch, "transfer": transfer}
            entry["gain"][metric] = [t - s if s is not None and t is not None else None
                                     for s, t in zip(scratch, transfer)]
            entry["catch_up"][metric] = _catch_up(sizes, scratch, transfer)
            entry["relative"][metric] = [_relative_gain(s, t, target, metric)
                                         for s, t in zip(entry["sources"]["scratch"], entry["sources"]["transfer"])]
        result["pairs"][name] = entry
    return result


def _annotated_heatmap(ax, fig, values: np.ndarray, rows: Sequence[str], columns: Sequence[str], label: str) -> None:
    """`values` (NaN: not decoded) as colours, each cell printed; missing cells grey and marked n/a."""
    cmap = pyplot().get_cmap("viridis_r").with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto")
    fig.colorbar(image, ax=ax, label=label)
    finite = values[np.isfinite(values)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for (i, j), v in np.ndenumerate(values):
        text = "n/a" if not np.isfinite(v) else f"{v:.1f}"
        ax.text(j, i, text, ha="center", va="center", color="black" if not np.isfinite(v) or v < middle else "white")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), rows)


def plot_zero_shot(result: dict, stem: Path) -> List[Path]:
    """The zero-shot matrix as annotated heatmaps, WER and CER side by side (adapters x test languages);
    writes stem.png and stem.pdf."""
    plt = pyplot()
    rows, columns = result["adapters"], result["languages"]
    metrics = [m for m in (*METRICS, FOLDED) if m in result]
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.5 + 2.4 * len(metrics) + 0.8 * len(metrics) * len(columns),
                                                       1.5 + 0.6 * len(rows)))
    for ax, metric in zip(axes, metrics):
        values = np.array([[np.nan if result[metric][a][y] is None else result[metric][a][y] for y in columns]
                           for a in rows], dtype=float)
        name = "CER, scripts folded" if metric == FOLDED else metric.upper()
        _annotated_heatmap(ax, fig, values, rows, columns, f"{name} (%)")
        ax.set_title(f"{name} (%) of adapter X on language Y", fontsize=9)
        ax.set_xlabel("test language Y (decoded with its own language token)")
        ax.set_ylabel("adapter X (base: no adapter)")
    fig.suptitle("Zero-shot cross-lingual transfer (grey n/a: not decoded)")
    return save_figure(fig, stem)


def plot_few_shot(result: dict, stem: Path) -> List[Path]:
    """Dev CER against the number of training utterances of Y (log x), transfer from X vs from scratch,
    one panel per pair; writes stem.png and stem.pdf."""
    if not result["pairs"]:
        raise TransferInputError("no few-shot pair has a run to plot; train the few-shot runs first")
    plt = pyplot()
    sizes = result["sizes"]
    fig, axes = plt.subplots(1, len(result["pairs"]), figsize=(4.2 * len(result["pairs"]), 3.6), squeeze=False)
    for ax, (name, entry) in zip(axes[0], result["pairs"].items()):
        for label, style in (("transfer", "o-"), ("scratch", "s--")):
            cer = [np.nan if v is None else v for v in entry["cer"][label]]
            legend = f"from {entry['source']}'s adapter" if label == "transfer" else "from scratch"
            ax.plot(sizes, cer, style, label=legend)
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_xlim(sizes[0] / 1.5, sizes[-1] * 1.5)
        if all(v is None for label in ("transfer", "scratch") for v in entry["cer"][label]):
            ax.text(0.5, 0.5, "not run yet", transform=ax.transAxes, ha="center", va="center", color="grey")
            ax.set_yticks([])
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(f"{entry['source']} -> {entry['target']}")
        ax.set_xlabel(f"training utterances of {entry['target']} (log scale)")
        ax.set_ylabel("dev CER (%)")
        ax.legend()
    fig.suptitle("Few-shot transfer: an adapter started from another language's vs from scratch")
    return save_figure(fig, stem)
