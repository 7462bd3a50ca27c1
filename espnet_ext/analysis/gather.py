"""Every result of a run, gathered into the report's sections (stage 7): the result tables of stage 6, the
LID heads of stage 4, training curves from ESPnet's logs, the weight-space and representation analyses
and every study that has been run; each figure drawn here from the files it names, each sentence's
numbers read from them. A piece whose files are absent is left out and listed under "Not in this report".
"""
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from espnet_ext.analysis import weights as weight_space
from espnet_ext.analysis.plotting import language_color, pyplot, save_figure
from espnet_ext.analysis.report import Figure, Section
from espnet_ext.languages import LANGUAGES
from espnet_ext.routing.routers import ROUTINGS
from espnet_ext.scoring.compare import bootstrap_relative_change, format_change, paired_change, paired_errors
from espnet_ext.scoring.report import read_kaldi_map
from espnet_ext.scoring.results import (
    CLEAN, Table, condition_sort_key, decode_base_model, decode_ms_per_utt, decode_peak_memory_mb, experiments_table,
    peak_memory_mb, robustness_decodes, robustness_systems, robustness_table, routing_tables, wer_with_ci,
)

_TRAIN_LINE = re.compile(r"(\d+)epoch:train:(\d+)-(\d+)batch: .*?\bloss=([\d.]+)")


def _read_json(path: Path) -> Optional[Dict]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def markdown_tables(text: str, source: str, first_title: str = "table") -> List[Table]:
    """The pipe tables of a Markdown results file (heads.md), each titled by the text line above it
    (`first_title` for a table the file opens with)."""
    tables, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and set(lines[i + 1]) <= set("|-: "):
            title = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), first_title).strip(" :#")
            columns = [c.strip() for c in lines[i].strip("|").split("|")]
            numeric = [c.strip().endswith(":") for c in lines[i + 1].strip("|").split("|")]
            i += 2
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip("|").split("|")])
                i += 1
            tables.append(Table(title, columns, rows, numeric, source))
        else:
            i += 1
    return tables


def training_curves(exp_dir: Path, stem: Path) -> Optional[List[Path]]:
    """Training loss every logged interval (ESPnet's `log/train.log`) and dev loss per epoch (its reporter)."""
    log_file = exp_dir / "log" / "train.log"
    if not log_file.is_file():
        return None
    points = [(int(m[0]), int(m[2]), float(m[3])) for m in _TRAIN_LINE.findall(log_file.read_text(encoding="utf-8"))]
    if not points:
        return None
    per_epoch = max(end for _, end, _ in points)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot([(e - 1) * per_epoch + end for e, end, _ in points], [loss for _, _, loss in points], label="train (logged)")
    try:
        from espnet_ext.train.export import read_reporter

        reporter = read_reporter(exp_dir)
        epochs = sorted(e for e, stats in reporter.stats.items() if "loss" in stats.get("valid", {}))
        ax.plot([e * per_epoch for e in epochs], [reporter.stats[e]["valid"]["loss"] for e in epochs], "o-",
                label="dev (end of epoch)")
    except FileNotFoundError:
        pass
    ax.set_xlabel("training step (mini-batch)")
    ax.set_ylabel("loss (label-smoothed cross-entropy)")
    ax.set_title(f"Training curves of {exp_dir.name}", fontsize=10)
    ax.legend()
    return save_figure(fig, stem)


def _scores(decode_dir: Path) -> Optional[Dict]:
    return _read_json(decode_dir / "scores.json")


def change_with_ci(system: Optional[Dict], baseline: Optional[Dict], lang: Optional[str]) -> str:
    """"-76% [-80, -72]": the relative WER change of `system` against `baseline` (two scores.json) on the
    utterances both scored (of `lang`, or all), with its paired bootstrap 95% CI; "" where either lacks
    per-utterance errors."""
    if not system or not baseline or "utterances" not in system or "utterances" not in baseline:
        return ""
    return paired_change(system["utterances"], baseline["utterances"], lang)


def _systems_on(exp_root: Path, test_set: str) -> Dict[str, Path]:
    """name -> decode dir of every scored system on `test_set`: the zero-shot base and each routing of each
    trained exp ("<exp> <routing>" when there are several exps)."""
    found = {}
    for zeroshot in sorted(exp_root.glob(f"*_zeroshot/decode_{test_set}_none")):
        found["zero-shot base"] = zeroshot
    trained = sorted(d for d in exp_root.glob(f"*/decode_{test_set}_oracle") if (d / "scores.json").is_file())
    for oracle in trained:
        prefix = "" if len(trained) == 1 else oracle.parent.name + " "
        for routing in (name for name in ROUTINGS if name != "none"):
            d = oracle.parent / f"decode_{test_set}_{routing}"
            if (d / "scores.json").is_file():
                found[prefix + routing] = d
    return found


def wer_figure(exp_root: Path, test_set: str, stem: Path) -> Optional[List[Path]]:
    """WER per language for every system decoded on `test_set`, grouped bars."""
    systems = _systems_on(exp_root, test_set)
    if not systems:
        return None
    scores = {name: _scores(d)["scores"] for name, d in systems.items()}
    langs = [lang for lang in LANGUAGES if any(lang in s for s in scores.values())] + ["all"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(scores)
    for i, (name, s) in enumerate(scores.items()):
        values = [s[lang]["wer"]["rate"] if lang in s else np.nan for lang in langs]
        bars = ax.bar(np.arange(len(langs)) + i * width, values, width, label=name)
        ax.bar_label(bars, fmt="%.0f", fontsize=6)
    ax.set_xticks(np.arange(len(langs)) + width * (len(scores) - 1) / 2, langs)
    ax.set_ylabel("WER (%)")
    ax.set_title(f"Word error rate on {test_set} per language and system", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, stem)


def routing_figure(exp_dir: Path, test_set: str, stem: Path) -> Optional[List[Path]]:
    """Each LID routing's relative WER change against oracle routing per language, with its paired bootstrap
    95% confidence interval (espnet_ext.scoring.compare)."""
    oracle = _scores(exp_dir / f"decode_{test_set}_oracle")
    routed = {r: _scores(exp_dir / f"decode_{test_set}_{r}") for r, kind in ROUTINGS.items()
              if kind.source in ("lid_head", "language_token")}
    routed = {r: s for r, s in routed.items() if s and "utterances" in s}
    if not oracle or "utterances" not in oracle or not routed:
        return None
    langs = [lang for lang in LANGUAGES if lang in oracle["scores"]] + [None]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(routed)
    for i, (name, scores) in enumerate(routed.items()):
        cells = [bootstrap_relative_change(*paired_errors(scores["utterances"], oracle["utterances"], lang))
                 for lang in langs]
        change = np.array([100 * c[0] for c in cells])
        low, high = change - [100 * c[1] for c in cells], [100 * c[2] for c in cells] - change
        ax.errorbar(np.arange(len(langs)) + i * width, change, yerr=[low, high], fmt="o", capsize=3, label=name)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(np.arange(len(langs)) + width * (len(routed) - 1) / 2, [lang or "all" for lang in langs])
    ax.set_ylabel("WER change vs oracle routing (%)")
    ax.set_title(f"Routed by the LID head vs oracle on {test_set} (paired bootstrap 95% CI)", fontsize=10)
    ax.legend(fontsize=8)
    return save_figure(fig, stem)


def _number(value: Optional[float], fmt: str) -> str:
    return "" if value is None else fmt.format(value)


def _disk_mb(paths: Sequence[Path]) -> float:
    return sum(p.stat().st_size for p in paths) / 1e6


@dataclass
class SystemCost:
    """One system of the efficiency table: its exp, what it trains ("lora", "full" or "base" for the zero-shot
    base), its cost, and the scores.json of its oracle decode (the bare base's own decode)."""

    exp: Path
    kind: str
    label: str
    rank: Optional[int]
    per_language: int
    trainable: int
    on_disk_mb: float
    train_mb: Optional[float]
    decode_mb: Optional[float]
    ms: Optional[float]
    scores: Dict
    model: Optional[str]  # the base model and its size, as the decode logs name them (None in older logs)
    base_parameters: Optional[int]

    @property
    def wer(self) -> float:
        return self.scores["scores"]["all"]["wer"]["rate"]

    @property
    def series(self) -> str:
        """What it is apart from the base model: "zero-shot", "LoRA r16", "full fine-tuning"."""
        return {"base": "zero-shot", "full": "full fine-tuning"}.get(self.kind, f"LoRA r{self.rank}")

    def is_default_of_its_model(self) -> bool:
        """Trained (or decoded) by the recipe's defaults on its model: no tag, no seed, every language."""
        suffix = {"base": "zeroshot", "full": "all_full"}.get(self.kind, f"all_r{self.rank}")
        return self.model is not None and self.exp.name == f"{self.model}_{suffix}"


def _system_cost(decode_dir: Path) -> SystemCost:
    exp = decode_dir.parent
    adapters = sorted(exp.glob("adapters/*/adapter_model.safetensors"))
    full = exp / "full_model" / "model_config.json"
    if adapters:
        from espnet_ext.lora.adapter_files import read_adapter_weights

        bank = {p.parent.name: read_adapter_weights(p.parent) for p in adapters}
        counts = {name: adapter.parameter_count() for name, adapter in bank.items()}
        per_lang = next(v for k, v in counts.items() if k != "shared")
        rank = next(iter(bank.values())).config["rank"]
        kind, label, trainable, on_disk = "lora", f"{exp.name} (LoRA r{rank})", sum(counts.values()), _disk_mb(adapters)
    elif full.is_file():
        kind, label, rank = "full", f"{exp.name} (full fine-tuning)", None
        per_lang = trainable = json.loads(full.read_text(encoding="utf-8"))["parameters"]
        on_disk = _disk_mb(sorted((exp / "full_model").glob("*.safetensors")))
    else:
        kind, label, rank, per_lang, trainable, on_disk = "base", "zero-shot base", None, 0, 0, 0.0
    train_log = exp / "log" / "train.log"
    model, base_parameters = decode_base_model(decode_dir) or (None, None)
    return SystemCost(exp, kind, label, rank, per_lang, trainable, on_disk,
                      peak_memory_mb(train_log.read_text(encoding="utf-8")) if train_log.is_file() else None,
                      decode_peak_memory_mb(decode_dir), decode_ms_per_utt(decode_dir), _scores(decode_dir),
                      model, base_parameters)


def system_costs(exp_root: Path, test_set: str = "test_all") -> List[SystemCost]:
    """The zero-shot base of every model and every exp decoded with oracle routing on `test_set`, with their
    costs."""
    zeroshot = sorted(exp_root.glob(f"*_zeroshot/decode_{test_set}_none"))
    trained = sorted(exp_root.glob(f"*/decode_{test_set}_oracle"))
    systems = [_system_cost(d) for d in zeroshot + trained if (d / "scores.json").is_file()]
    if sum(s.kind == "base" for s in systems) > 1:  # one bare base per model: name each
        systems = [replace(s, label=s.exp.name) if s.kind == "base" else s for s in systems]
    return systems


def changes_against(systems: Sequence[SystemCost], reference: Path, test_set: str = "test_all") -> Dict[Path, str]:
    """Per system other than `reference` (an exp dir), its WER change against the reference's oracle decode of
    `test_set` with the paired bootstrap 95% CI."""
    reference_scores = _scores(reference / f"decode_{test_set}_oracle")
    return {s.exp: change_with_ci(s.scores, reference_scores, None) for s in systems
            if s.exp.resolve() != reference.resolve()}


def efficiency_table(systems: Sequence[SystemCost], base_parameters: Optional[int], reference: Path,
                     versus: Mapping[Path, str], exp_root: Path, test_set: str = "test_all") -> Optional[Table]:
    """Per system: trainable parameters (per language and in all, % of its base: as its decode logged the base's
    size, else `base_parameters`), size on disk, peak memory, decode ms per utterance, WER / CER, and `versus`
    (`changes_against` the `reference` exp, the default training)."""
    if not systems:
        return None
    rows = []
    for system in systems:
        base = system.base_parameters or base_parameters
        share = f"{100 * system.trainable / base:.1f}" if base else ""
        s = system.scores["scores"]["all"]
        rows.append([system.label, f"{system.per_language / 1e6:.2f}", f"{system.trainable / 1e6:.2f}", share,
                     f"{system.on_disk_mb:.1f}", _number(system.train_mb, "{:.0f}"), _number(system.decode_mb, "{:.0f}"),
                     _number(system.ms, "{:.0f}"), f"{system.wer:.2f}", f"{s['cer']['rate']:.2f}",
                     versus.get(system.exp, "")])
    return Table(f"Efficiency on {test_set}", ["system", "trainable M per language", "trainable M in all",
                                               "% of base", "on disk MB", "training peak MB", "decode peak MB",
                                               "decode ms/utt", "WER", "CER", f"WER vs {reference.name}"],
                 rows, [False] + [True] * 10,
                 f"{exp_root}/*/adapters/*/adapter_model.safetensors, full_model/, decode_{test_set}_*/scores.json and "
                 "log/decode.*.log (one thread per job)")


def weight_section(result: Mapping, figures_dir: Path, source: str) -> Section:
    """What the weight-space figures show, in sentences whose numbers come from `result` (weights.json)."""
    langs = result["languages"]
    x, y, best = weight_space.most_similar_pair(result)
    matrix = np.asarray(result["similarity"]["subspace"]["all"])
    pairs = sorted(((matrix[i, j], langs[i], langs[j]) for i in range(len(langs)) for j in range(i + 1, len(langs))),
                   reverse=True)
    paragraphs = [
        f"Subspace overlap of the top {result['top_k']} output directions, mean over all modules: the most similar "
        f"adapters are {x} and {y} ({best:.3f}; chance for random subspaces {result['subspace_chance']['all']:.3f}); "
        "pairs in order: " + ", ".join(f"{a}-{b} {v:.3f}" for v, a, b in pairs) + ".",
    ]
    if "hi" in langs and "pa" in langs:
        place = [(a, b) for _, a, b in pairs].index(("hi", "pa")) + 1
        verdict = "supports" if place == 1 else "does not support"
        paragraphs.append(
            f"The plan's hypothesis that the close languages hi and pa have the most similar adapters: hi-pa ranks "
            f"{place} of {len(pairs)} pairs, which {verdict} it on this corpus. The synthetic corpus may not answer it "
            "either way: espeak-ng's letter-to-sound rules for hi and pa, and its voices, are the synthesiser's, so "
            "similarity here can be the synthesiser's as much as the languages'.")
    cos = np.asarray(result["similarity"]["cosine"]["all"])
    off = cos[~np.eye(len(langs), dtype=bool)]
    paragraphs.append(
        f"Raw cosine between languages' updates stays between {off.min():.3f} and {off.max():.3f}: near zero by "
        "construction (each adapter's A starts from its own random draw); the same-language baseline of the seeds "
        "study calibrates it.")
    ranks = {lang: weight_space.mean_rank(result, "effective_rank", lang) for lang in langs}
    energy = {lang: weight_space.mean_rank(result, "energy_rank", lang) for lang in langs}
    paragraphs.append(
        f"Effective rank (entropy) of the rank-{result['rank']} updates, mean over modules: "
        + ", ".join(f"{lang} {ranks[lang]:.1f}" for lang in langs) + "; directions holding 90% of the energy: "
        + ", ".join(f"{lang} {energy[lang]:.1f}" for lang in langs) + ". Every language has the same 400 training "
        "utterances in the default run, so the low-resource hypothesis needs the data-size study.")
    loner = min(langs, key=lambda lang: np.mean([matrix[langs.index(lang), j] for j in range(len(langs))
                                                   if langs[j] != lang]))
    above = "every pair overlaps more than chance" if min(v for v, _, _ in pairs) > result["subspace_chance"]["all"] \
        else "not every pair overlaps more than chance"
    return Section(
        "What the adapters share (weight space)",
        f"{x} and {y} share the most update directions, {loner} the fewest with the others; {above}",
        paragraphs, [],
        [Figure(figures_dir / "weight_similarity.png", "Cosine and subspace similarity of the language adapters' "
                "updates, per group of modules.", source),
         Figure(figures_dir / "weight_dendrogram.png", "Average-linkage clustering on 1 - subspace similarity.", source),
         Figure(figures_dir / "weight_spectra.png", "Singular-value spectra and effective rank per block.", source)],
    )


def results_sections(exp_root: Path, exp_dir: Path, figures_dir: Path) -> List[Section]:
    """Baseline and adapters, routing: stage 6's tables and the figures drawn from the same scores."""
    sections = []
    experiments = experiments_table(exp_root)
    systems = _systems_on(exp_root, "test_all")
    figures = []
    if wer_figure(exp_root, "test_all", figures_dir / "wer_test_all"):
        figures.append(Figure(figures_dir / "wer_test_all.png", "WER per language on test_all, every system.",
                              f"{exp_root}/*/decode_test_all_*/scores.json (stage 6)"))
    if training_curves(exp_dir, figures_dir / "training_curves"):
        figures.append(Figure(figures_dir / "training_curves.png", "Training and dev loss.",
                              f"{exp_dir}/log/train.log and checkpoint.pth (ESPnet's trainer, stage 3)"))
    if systems:
        base, oracle = systems.get("zero-shot base"), systems.get("oracle")
        lines = []
        if base and oracle:
            b, o = _scores(base)["scores"]["all"]["wer"]["rate"], _scores(oracle)["scores"]["all"]["wer"]["rate"]
            ci = change_with_ci(_scores(oracle), _scores(base), None)
            lines.append(f"Over all test_all utterances the zero-shot base has {b:.2f}% WER and the adapters (oracle "
                         f"routing) {o:.2f}%: {ci} relative (paired bootstrap 95% CI over utterances).")
        message = "Word error rates of every decoded system"
        if base and oracle:
            bs, os_ = _scores(base)["scores"], _scores(oracle)["scores"]
            better = [lang for lang in os_ if lang != "all" and lang in bs and os_[lang]["wer"]["rate"] < bs[lang]["wer"]["rate"]]
            message = (f"The adapters lower the zero-shot base's WER on {len(better)} of {len(os_) - 1} languages "
                       f"({b:.1f}% -> {o:.1f}% over all)")
        sections.append(Section("Baseline and adapters", message, lines, [experiments] if experiments else [], figures))
    routing = [t for t in routing_tables(exp_root) if t.title.endswith(" on test_all")]
    routing_png = routing_figure(exp_dir, "test_all", figures_dir / "routing_vs_oracle")
    if routing:
        oracle_scores, hard = _scores(exp_dir / "decode_test_all_oracle"), _scores(exp_dir / "decode_test_all_hard")
        message = "Each routing against oracle routing on test_all"
        if oracle_scores and hard:
            message = (f"Hard routing by the LID head: {hard['scores']['all']['wer']['rate']:.2f}% WER against oracle "
                       f"routing's {oracle_scores['scores']['all']['wer']['rate']:.2f}%, "
                       f"{change_with_ci(hard, oracle_scores, None)} relative")
        sections.append(Section("Routing by the LID head", message, [], routing,
                                [Figure(figures_dir / "routing_vs_oracle.png", "Relative WER change of each routing "
                                        "against oracle routing, paired bootstrap 95% CI.",
                                        f"{exp_dir}/decode_test_all_*/scores.json (stage 6)")] if routing_png else []))
    switched = [t for t in routing_tables(exp_root) if "_cs_" in t.title]
    if switched:
        sections.append(Section("Code-switched speech", "Predicted language segments against oracle segments", [],
                                switched, []))
    return sections


def robustness_figure(clean: str, by_condition: Mapping, stem: Path) -> Optional[List[Path]]:
    """WER over all languages per condition (clean first), one series per system, bootstrap 95% CIs."""
    conditions = sorted(by_condition, key=condition_sort_key)
    systems = robustness_systems(by_condition)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(systems)
    for i, name in enumerate(systems):
        cells = [wer_with_ci(by_condition[c][name]["utterances"], None)
                 if name in by_condition[c] and "utterances" in by_condition[c][name] else (np.nan,) * 3
                 for c in conditions]
        rate = np.array([cell[0] for cell in cells])
        errors = [rate - [cell[1] for cell in cells], [cell[2] for cell in cells] - rate]
        ax.errorbar(np.arange(len(conditions)) + i * width, rate, yerr=errors, fmt="o", capsize=3, label=name)
    ax.set_xticks(np.arange(len(conditions)) + width * (len(systems) - 1) / 2, conditions)
    ax.set_ylabel("WER, all languages (%)")
    ax.set_title(f"{clean} and its degraded copies: WER with bootstrap 95% CI", fontsize=10)
    ax.legend(fontsize=7)
    return save_figure(fig, stem)


def robustness_section(exp_root: Path, figures_dir: Path) -> Optional[Section]:
    """Each clean test set against its degraded copies (local/make_degraded.py): table and figure."""
    found = robustness_decodes(exp_root)
    if not found:
        return None
    figures, lines, tables = [], [], []
    for clean, by_condition in sorted(found.items()):
        tables += robustness_table(exp_root, clean, by_condition)
        if robustness_figure(clean, by_condition, figures_dir / f"robustness_{clean}"):
            figures.append(Figure(figures_dir / f"robustness_{clean}.png", f"WER on {clean} per condition and system.",
                                  f"{exp_root}/*/decode_{clean}*/scores.json (stage 6)"))
        for name in robustness_systems(by_condition):
            worst = max((c for c in by_condition if c != CLEAN and name in by_condition[c]),
                        key=lambda c: by_condition[c][name]["scores"]["all"]["wer"]["rate"] or 0, default=None)
            if worst is not None and name in by_condition.get(CLEAN, {}):
                rate = by_condition[worst][name]["scores"]["all"]["wer"]["rate"]
                lines.append(f"{name} on {clean}: {by_condition[CLEAN][name]['scores']['all']['wer']['rate']:.1f}% "
                             f"WER clean, worst {worst} ({rate:.1f}%).")
    return Section("Robustness to channels and voices", "Clean test sets against their degraded copies", lines,
                   tables, figures)


def lid_section(exp_dir: Path) -> Optional[Section]:
    lid = exp_dir / "lid"
    heads = lid / "heads.md"
    if not heads.is_file():
        return None
    figures = [Figure(png, f"LID head {png.parent.name}: {png.stem.replace('_', ' ')}.",
                      f"{png.parent}/eval.json (stage 4, espnet_ext.bin.train_lid)")
               for png in sorted(lid.glob("*/confusion_test.png")) + sorted(lid.glob("*/reliability_test.png"))]
    message = "The LID heads on the tap's frames"
    summary = _read_json(lid / "heads.json")
    if summary:
        name, head = max(summary.items(), key=lambda item: item[1]["eval"]["test"]["accuracy"])
        test = head["eval"]["test"]
        worst = min(test["per_language"], key=lambda lang: test["per_language"][lang]["accuracy"])
        members = head.get("members", 1)
        shown = name if members == 1 else f"{name} x{members}"
        message = (f"Best head {shown}: {100 * test['accuracy']:.1f}% of test utterances right; its weakest language "
                   f"{worst} ({100 * test['per_language'][worst]['accuracy']:.0f}%), clips under 2 s "
                   f"{100 * test['under_2s']['accuracy']:.0f}% (n={test['under_2s']['n']})")
    return Section("Language ID on the tap", message, [],
                   markdown_tables(heads.read_text(encoding="utf-8"), f"{heads} (stage 4)", "LID heads"), figures)


def efficiency_figure(systems: Sequence[SystemCost], stem: Path) -> Optional[List[Path]]:
    """Test WER against trainable parameters (log scale), one point per trained system, the bare base a line."""
    trained = [s for s in systems if s.trainable > 0]
    if not trained:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for system in trained:
        ax.scatter(system.trainable, system.wer)
        ax.annotate(system.label, (system.trainable, system.wer), fontsize=7, xytext=(4, 4), textcoords="offset points")
    bases = [s for s in systems if s.kind == "base"]
    for base in bases:
        ax.axhline(base.wer, color="black", ls="--", lw=0.8, label=base.label)
    if bases:
        ax.legend(fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (all languages together)")
    ax.set_ylabel("test WER (%)")
    ax.set_title("WER against trainable parameters", fontsize=10)
    return save_figure(fig, stem)


def by_model_size(systems: Sequence[SystemCost]) -> Dict[str, List[Tuple[int, str, float]]]:
    """Per series (zero-shot, each LoRA rank, full fine-tuning), (base parameters, model, test WER) of each
    model's default system, smallest model first; {} unless more than one model size was decoded."""
    chosen = [s for s in systems if s.base_parameters and s.is_default_of_its_model()]
    if len({s.base_parameters for s in chosen}) < 2:
        return {}
    series: Dict[str, List[Tuple[int, str, float]]] = {}
    for s in sorted(chosen, key=lambda s: (s.base_parameters, s.model)):
        series.setdefault(s.series, []).append((s.base_parameters, s.model, s.wer))
    return series


def model_size_figure(series: Mapping[str, Sequence[Tuple[int, str, float]]], stem: Path) -> Optional[List[Path]]:
    """Test WER against the base model's size (log scale), one line per series, each point a model."""
    if not series:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, points in series.items():
        ax.plot([p[0] for p in points], [p[2] for p in points], "o-", label=name)
    sizes = sorted({(p[0], p[1]) for points in series.values() for p in points})
    ax.set_xscale("log")
    ax.set_xticks([size for size, _ in sizes], [f"{model}\n{size / 1e6:.0f}M" for size, model in sizes], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("base model (parameters)")
    ax.set_ylabel("test WER (%)")
    ax.set_title("WER against model size", fontsize=10)
    ax.legend(fontsize=8)
    return save_figure(fig, stem)


def efficiency_section(exp_root: Path, base_parameters: Optional[int], figures_dir: Path,
                       exp_dir: Path) -> Optional[Section]:
    """Cost and WER of every system on test_all, each against the default training `exp_dir` (the ranks
    study's other ranks among them), with the default's reruns under other seeds as the yardstick."""
    systems = system_costs(exp_root)
    versus = changes_against(systems, exp_dir)
    table = efficiency_table(systems, base_parameters, exp_dir, versus, exp_root)
    if table is None:
        return None
    lora = [s for s in systems if s.kind == "lora"]
    message = "Trainable parameters, size on disk and decode time of each system"
    base = lora[0].base_parameters or base_parameters if lora else None
    if base:
        message = (f"{lora[0].label} trains {100 * lora[0].trainable / base:.1f}% of the base's weights "
                   f"for all its languages together ({lora[0].on_disk_mb:.1f} MB on disk)")
    compared = [s for s in lora if versus.get(s.exp)]
    paragraphs = ["Peak memory is the process's peak resident memory as train_lora and each decode job log it (blank "
                  "for logs written before they did); decode time is the jobs' own time over their utterances, one "
                  "thread per job."]
    if compared:
        seeds = {r.resolve() for r in seed_runs(exp_root, exp_dir)} - {exp_dir.resolve()}
        paragraphs.append(f"Test WER against the default training {exp_dir.name} (paired bootstrap 95% CI over "
                          "utterances): " + "; ".join(f"{s.label} {versus[s.exp]}" for s in compared) + "."
                          + (" Its reruns under other seeds (_seed<N>) show how far a training moves by chance "
                             "alone." if any(s.exp.resolve() in seeds for s in compared) else ""))
    figures = []
    if efficiency_figure(systems, figures_dir / "wer_vs_parameters"):
        figures.append(Figure(figures_dir / "wer_vs_parameters.png", "Test WER against trainable parameters.",
                              table.source))
    sizes = by_model_size(systems)
    if model_size_figure(sizes, figures_dir / "wer_vs_model_size"):
        paragraphs.append("Test WER against model size, each model's default systems (<model>_zeroshot, "
                          "<model>_all_r<rank>, <model>_all_full): " + "; ".join(
                              f"{name}: " + ", ".join(f"{model} {wer:.2f}" for _, model, wer in points)
                              for name, points in sizes.items()) + ".")
        figures.append(Figure(figures_dir / "wer_vs_model_size.png", "Test WER against the base model's size.",
                              f"{table.source}; the base's size from each decode's log"))
    return Section("Efficiency", message, paragraphs, [table], figures)


def seed_runs(exp_root: Path, exp_dir: Path) -> List[Path]:
    """The default training and its reruns under other seeds (`<exp>_seed<N>`, the seeds study), each with a
    scored oracle decode of test_all."""
    runs = [exp_dir] + sorted(exp_root.glob(f"{exp_dir.name}_seed*"))
    return [r for r in runs if (r / "decode_test_all_oracle" / "scores.json").is_file()]


def seeds_section(exp_root: Path, exp_dir: Path, weight_result: Optional[Mapping]) -> Optional[Section]:
    """Run-to-run spread: test WER per language over the seeds (mean and range), and the same-language
    similarity of two seeds' adapters, the ceiling the cross-language similarities are read against."""
    runs = seed_runs(exp_root, exp_dir)
    if len(runs) < 2:
        return None
    scores = [_scores(r / "decode_test_all_oracle")["scores"] for r in runs]
    langs = [lang for lang in LANGUAGES if lang in scores[0]] + ["all"]
    rows = []
    for lang in langs:
        wer = [s[lang]["wer"]["rate"] for s in scores if lang in s]
        rows.append([lang] + [f"{w:.2f}" for w in wer] + [f"{np.mean(wer):.2f}", f"{min(wer):.2f} - {max(wer):.2f}"])
    table = Table(f"Test WER over {len(runs)} trainings (seeds)", ["lang"] + [r.name for r in runs] + ["mean", "range"],
                  rows, [False] + [True] * (len(runs) + 2),
                  f"{exp_root}/{exp_dir.name}[_seed*]/decode_test_all_oracle/scores.json (./run.sh --stage 7 --studies seeds)")
    paragraphs = []
    same = weight_space.same_language_similarity(runs[0] / "adapters", runs[1] / "adapters")
    if same and weight_result:
        matrix = np.asarray(weight_result["similarity"]["subspace"]["all"])
        cross = matrix[~np.eye(len(matrix), dtype=bool)].mean()
        paragraphs.append(
            f"The same language trained twice ({runs[0].name} vs {runs[1].name}) overlaps by "
            + ", ".join(f"{lang} {v['subspace']:.3f}" for lang, v in same.items())
            + f" (subspace, all modules; cosine " + ", ".join(f"{lang} {v['cosine']:.3f}" for lang, v in same.items())
            + f"), against {cross:.3f} on average between different languages of one training.")
    all_row = rows[-1]
    return Section("Run-to-run spread", f"Over {len(runs)} seeds the overall test WER ranges {all_row[-1]} "
                   f"(mean {all_row[-2]})", paragraphs, [table], [])


def not_in_report(missing: Sequence[str]) -> Optional[Section]:
    if not missing:
        return None
    return Section("Not in this report", "What has not been run yet, and the command that runs it", list(missing), [], [],
                   on_slides=False)


def adapter_ranks(exp_root: Path) -> List[Dict]:
    """Per trained LoRA exp under `exp_root` and language adapter: its rank, training utterances, mean effective
    rank and mean 90%-energy rank over its modules (read from the adapter files)."""
    rows = []
    for adapters in sorted(exp_root.glob("*/adapters")):
        result = weight_space.weight_analysis(adapters)
        for lang in result["languages"]:
            config = json.loads((adapters / lang / "adapter_config.json").read_text(encoding="utf-8"))
            rows.append({"exp": adapters.parent.name, "lang": lang, "rank": result["rank"],
                         "train_utterances": config.get("train_data", {}).get("utterances", {}).get(lang),
                         "init_from": config.get("init_from", {}).get("language"),
                         "steps": config.get("checkpoint", {}).get("optimizer_steps"),
                         "effective_rank": weight_space.mean_rank(result, "effective_rank", lang),
                         "energy_rank": weight_space.mean_rank(result, "energy_rank", lang)})
    return rows


def ranks_section(exp_root: Path, figures_dir: Path) -> Optional[Section]:
    """How many directions the adapters use, over every trained rank and training size."""
    rows = adapter_ranks(exp_root)
    if not rows:
        return None
    table = Table("Effective rank of every trained adapter", ["exp", "lang", "LoRA rank", "train utts",
                                                              "effective rank", "90%-energy rank"],
                  [[r["exp"], r["lang"], str(r["rank"]), str(r["train_utterances"] or ""), f"{r['effective_rank']:.1f}",
                    f"{r['energy_rank']:.1f}"] for r in rows], [False, False, True, True, True, True],
                  f"{exp_root}/*/adapters/*/adapter_model.safetensors")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for lang in dict.fromkeys(r["lang"] for r in rows):
        mine = sorted((r for r in rows if r["lang"] == lang), key=lambda r: r["rank"])
        ax.plot([r["rank"] for r in mine], [r["effective_rank"] for r in mine], "o", color=language_color(lang), label=lang)
    ranks = sorted({r["rank"] for r in rows})
    ax.plot(ranks, ranks, "k--", lw=0.8, label="effective rank = rank")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ranks, [str(r) for r in ranks])
    ax.set_xlabel("LoRA rank r")
    ax.set_ylabel("effective rank (mean over modules)")
    ax.set_title("Directions the adapters use, per trained rank", fontsize=10)
    ax.legend(fontsize=8)
    save_figure(fig, figures_dir / "effective_rank")
    usage = {r["rank"]: [] for r in rows}
    for r in rows:
        usage[r["rank"]].append(r["effective_rank"] / r["rank"])
    message = "; ".join(f"rank {k}: {100 * np.mean(v):.0f}% of it in use" for k, v in sorted(usage.items()))
    sizes = data_size_sentence(rows)
    return Section("How much rank the adapters use", f"Effective rank over LoRA rank, mean over adapters: {message}",
                   [sizes] if sizes else [], [table], [Figure(figures_dir / "effective_rank.png", "Effective rank against LoRA rank.",
                                        table.source)])


def importance_section(result: Mapping, figures_dir: Path, source: str) -> Section:
    """Where in the network the adapters matter (the layers study), in sentences read from `result`."""
    from espnet_ext.analysis import importance

    importance.plot_importance(result, figures_dir / "layer_importance")
    importance.plot_proxy(result, figures_dir / "layer_importance_proxy")
    blocks = [u for u in result["units"] if result["unit_kind"][u] != "group"]
    change = result["loss_change"]
    top = {lang: max(blocks, key=lambda u: change[lang][u]) for lang in result["languages"]}
    groups = [g for g in ("encoder", "decoder") if g in result["units"]]

    def sides(values: Mapping, fmt: str) -> str:  # each whole side's change per language
        return "; ".join(f"{g}: " + ", ".join(f"{lang} {values[lang][g]:{fmt}}" for lang in result["languages"])
                         for g in groups)

    def rhos(by_lang: Mapping) -> str:
        return ", ".join(f"{lang} {rho:+.2f}" if rho is not None else f"{lang} n/a" for lang, rho in by_lang.items())

    paragraphs = [
        "Teacher-forced dev loss (nats per token) with one block's language adapters switched off, the rest "
        f"routed as in oracle decoding, on {sum(result['utterances'].values())} probe utterances "
        f"({', '.join(f'{k} {v}' for k, v in result['utterances'].items())}). The block that matters most: "
        + ", ".join(f"{lang} {top[lang]} (+{change[lang][top[lang]]:.2f})" for lang in result["languages"]) + ".",
        f"Switching off a whole side: {sides(change, '+.2f')}.",
        "Rank correlation (Spearman, over blocks) of the adapters' update norm with the measured loss change: "
        + rhos(result["spearman"]) + "; the weight norm is a weak proxy where it is far from +1.",
    ]
    figures = [Figure(figures_dir / "layer_importance.png", "Loss change per block and language.", source),
               Figure(figures_dir / "layer_importance_proxy.png", "Update norm against measured loss change.", source)]
    if "cer_change" in result:  # the decoded side (studies run before it was measured lack it)
        importance.plot_importance(result, figures_dir / "layer_importance_cer", "cer_change")
        cer = result["cer_change"]
        top_cer = {lang: max(blocks, key=lambda u: cer[lang][u]) for lang in result["languages"]}
        paragraphs.append(
            f"Decoded (beam {result['search']['beam_size']}, each language forced), CER with every adapter on: "
            + ", ".join(f"{lang} {v:.1f}%" for lang, v in result["cer_baseline"].items())
            + f". With a whole side switched off: {sides(cer, '+.1f')} points. The block that costs the most CER "
            "when switched off: "
            + ", ".join(f"{lang} {top_cer[lang]} ({cer[lang][top_cer[lang]]:+.1f})" for lang in result["languages"])
            + ". Rank correlation (Spearman, over blocks) of the teacher-forced loss change with the decoded CER "
            f"change: {rhos(result['spearman_loss_cer'])}; near +1, the one forward per unit ranks the blocks as the "
            "searches do.")
        hidden = [(lang, u) for u in result["units"] for lang in result["languages"]
                  if change[lang][u] <= 0 and cer[lang][u] >= 5]
        if hidden:
            paragraphs.append(
                "Adapters the teacher-forced loss calls useless that decoding needs (loss change <= 0, CER change >= 5 "
                "points): " + ", ".join(f"{lang} {u} (loss {change[lang][u]:+.2f}, CER {cer[lang][u]:+.1f})"
                                       for lang, u in hidden)
                + ". Teacher forcing feeds the reference at every step; the free search has to stop by itself, and a "
                "CER above 100% means hypotheses longer than their references.")
        figures.append(Figure(figures_dir / "layer_importance_cer.png", "Decoded CER change per block and language.",
                              source))
    side = max(groups, key=lambda g: np.mean([change[lang][g] for lang in result["languages"]])) if groups else None
    return Section("Where the adapters matter (layer importance)",
                   f"Switching off the {side} adapters costs the most loss" if side else "Loss change per block",
                   paragraphs, [], figures)


def transfer_section(result: Mapping, figures_dir: Path) -> Optional[Section]:
    """The zero-shot transfer matrix (the transfer study), with the plan's pairs in sentences."""
    from espnet_ext.analysis import transfer

    off_diagonal = [(a, y) for a in result["adapters"] for y in result["languages"]
                    if a not in (y, transfer.BASE) and result["wer"][a][y] is not None]
    if not off_diagonal:
        return None
    transfer.plot_zero_shot(result, figures_dir / "transfer_zero_shot")
    wer = result["wer"]
    def cell(adapter: str, lang: str) -> Optional[Dict]:
        path = result["sources"].get(adapter, {}).get(lang)
        return json.loads(Path(path).read_text(encoding="utf-8")) if path else None

    folded = result.get(transfer.FOLDED, {})
    plan = [(x, y) for x, y in transfer.PLAN_PAIRS if wer.get(x, {}).get(y) is not None and wer.get(y, {}).get(y) is not None]
    pairs = [f"adapter {x} on {y}: WER {wer[x][y]:.1f}, {change_with_ci(cell(x, y), cell(y, y), y)} against {y}'s own "
             f"adapter ({wer[y][y]:.1f})" for x, y in plan]
    by_sound = [f"{x} on {y} {folded[x][y]:.1f} (own adapter {folded[y][y]:.1f})" for x, y in plan
                if folded.get(x, {}).get(y) is not None and folded.get(y, {}).get(y) is not None]
    paragraphs = ["The project plan's pairs, each adapter decoding another language with that language's token: "
                  + "; ".join(pairs) + "." if pairs else "",
                  "An adapter writes its own script, so across scripts WER and CER score the script as much as the "
                  "words. CER with the Brahmic scripts folded onto Devanagari (the third panel: Unicode's parallel "
                  "Indic blocks, so the sound is compared, not the script): " + "; ".join(by_sound) + "." if by_sound else "",
                  "No cell is strictly zero-shot: the default bank's shared adapter below the tap was trained on "
                  "every language. Latin and Indic scripts cannot be folded onto each other, so it -> te stays "
                  "a comparison of scripts."]
    sources = sorted({p for row in result["sources"].values() for p in row.values() if p})
    best = min(((x, y) for x in result["adapters"] for y in result["languages"] if x not in (y, transfer.BASE)
                and folded.get(x, {}).get(y) is not None), key=lambda xy: folded[xy[0]][xy[1]], default=None)
    message = (f"By sound, {best[0]}'s adapter transfers best: to {best[1]} at {folded[best[0]][best[1]]:.1f}% CER "
               "with the scripts folded" if best else "How well each language's adapter decodes the others")
    return Section("Cross-lingual transfer (zero-shot)", message,
                   [p for p in paragraphs if p], [],
                   [Figure(figures_dir / "transfer_zero_shot.png", "Zero-shot transfer matrix, WER and CER.",
                           f"{len(sources)} decode dirs' scores.json (./run.sh --stage 7 --studies transfer)")])


def representation_section(result: Mapping, figures_dir: Path, source: str) -> Section:
    """CKA and probes (module espnet_ext.analysis.representations) in sentences read from `result`."""
    from espnet_ext.analysis import representations

    representations.plot_cka(result, figures_dir / "cka")
    representations.plot_probes(result, figures_dir / "probes")
    layers, cka = result["layers"], result["cka"]
    top = layers[-1]
    base_pairs = {k: v for k, v in cka.items() if k.startswith("base~")}
    adapter_pairs = {k: v for k, v in cka.items() if not k.startswith("base~")}
    lowest = min(layers, key=lambda i: np.mean([v[i] for v in base_pairs.values()]))
    paragraphs = [
        f"Linear CKA on {result['utterances']} probe utterances ({result['probe_dir']}): base against each adapter "
        f"is lowest at layer {lowest} (mean {np.mean([v[lowest] for v in base_pairs.values()]):.2f}) and "
        f"{np.mean([v[top] for v in base_pairs.values()]):.2f} at the top layer {top}; adapters against each other "
        f"stay at {min(v[top] for v in adapter_pairs.values()):.2f}-{max(v[top] for v in adapter_pairs.values()):.2f} "
        "at the top layer" + (f" (most alike {max(adapter_pairs, key=lambda k: adapter_pairs[k][top]).replace('~', '-')}, "
                              f"least {min(adapter_pairs, key=lambda k: adapter_pairs[k][top]).replace('~', '-')})"
                              if adapter_pairs else "") + ": what the adapters change is mostly common to all of them.",
    ]
    for task, by_state in result["probes"].items():
        base = by_state["base"]
        best = max(range(len(layers)), key=lambda i: base["selectivity"][i])
        paragraphs.append(
            f"Linear {task} probe ({result['folds']}-fold, shuffled-label control): the bare base reaches "
            f"{100 * base['accuracy'][best]:.0f}% at layer {layers[best]} (control {100 * base['control'][best]:.0f}%); "
            "the adapted states: " + ", ".join(f"{state} {100 * max(v['accuracy']):.0f}%" for state, v in by_state.items()
                                               if state != "base") + " at their best layer.")
    paragraphs.append("The probe subset holds a few synthetic voices per language, so a probe may read the voice as "
                      "much as the language.")
    return Section("What the adapters change inside the encoder", f"Adapted encoders part from the base above the "
                   f"tap and stay close to each other (CKA at layer {top}: base vs adapters "
                   f"{np.mean([v[top] for v in base_pairs.values()]):.2f}, adapters among themselves "
                   f"{np.mean([v[top] for v in adapter_pairs.values()]) if adapter_pairs else float('nan'):.2f})",
                   paragraphs, [],
                   [Figure(figures_dir / "cka.png", "Linear CKA per encoder layer.", source),
                    Figure(figures_dir / "probes.png", "Language and family probes per encoder layer.", source)])


def fewshot_section(result: Mapping, figures_dir: Path, source: str) -> Optional[Section]:
    """Few-shot transfer (the fewshot study): dev CER against training size, from scratch and from another
    language's adapter, with the plan's gain and catch-up point per pair."""
    from espnet_ext.analysis import transfer

    measured = {name: pair for name, pair in result["pairs"].items() if any(v is not None for v in pair["cer"]["transfer"])}
    if not measured:
        return None
    untrained = [name for name in result["pairs"] if name not in measured]
    transfer.plot_few_shot(result, figures_dir / "transfer_few_shot")
    paragraphs = []
    for name, pair in measured.items():
        gains = ", ".join(f"N={n}: {g:+.1f}" + (f" ({format_change(r)})" if r else "")
                          for n, g, r in zip(result["sizes"], pair["gain"]["wer"], pair["relative"]["wer"]) if g is not None)
        catch = pair["catch_up"]["wer"]
        paragraphs.append(f"{name}: transfer gain WER_transfer - WER_scratch (dev, points; in brackets relative to "
                          f"scratch, 95% CI) {gains or 'not measured'}; "
                          + (f"from scratch catches up at N={catch}." if catch else "from scratch does not catch up "
                             "within the sizes trained."))
    for i, n in enumerate(result["sizes"]):  # which pair transfers most, where two or more were measured at N
        ranked = sorted(((pair["relative"]["wer"][i], name) for name, pair in measured.items()
                         if pair["relative"]["wer"][i]), key=lambda item: item[0][0])
        if len(ranked) >= 2:
            (most, best), (least, worst) = ranked[0], ranked[-1]
            verdict = ("intervals disjoint" if most[2] < least[1] else "intervals overlap: the difference is not shown")
            paragraphs.append(f"At N={n}, relative dev WER change from transfer: "
                              + ", ".join(f"{name} {format_change(r)}" for r, name in ranked)
                              + f". {best} transfers most and {worst} least (95% {verdict}).")
    paragraphs.append("Each source adapter was trained on its own language alone, so no target data reaches the "
                      "transfer runs through a shared adapter.")
    if untrained:
        pairs = " ".join(name.replace("->", ":") for name in untrained)
        paragraphs.append(f"Not trained yet: {', '.join(untrained)} (`./run.sh --stage 7 --studies fewshot "
                          f"--fewshot_pairs \"{pairs}\"`).")
    return Section("Cross-lingual transfer (few-shot)", "Starting a language's adapter from another language's, "
                   "against starting from scratch, at equal steps", paragraphs, [],
                   [Figure(figures_dir / "transfer_few_shot.png", "Dev CER against training utterances.", source)])


def errors_section(exp_dir: Path, figures_dir: Path, test_set: str = "test_all") -> Optional[Section]:
    """The adapters' errors on `test_set` (oracle routing) sorted by kind: unseen vs seen words, word
    boundaries, the characters most confused (espnet_ext.analysis.error_breakdown)."""
    from espnet_ext.analysis import error_breakdown as eb

    decode = exp_dir / f"decode_{test_set}_oracle"
    scores, configs = _scores(decode), sorted(exp_dir.glob("adapters/*/adapter_config.json"))
    if not scores or not configs:
        return None
    ref_text = Path(scores["ref_text"])
    train_dir = Path(json.loads(configs[0].read_text(encoding="utf-8")).get("train_data", {}).get("dir", ""))
    if not ref_text.is_file() or not (train_dir / "text").is_file():
        return None
    langs = {u: v["lang"] for u, v in scores.get("utterances", {}).items()}
    train_langs = read_kaldi_map(train_dir / "utt2lang")
    train = read_kaldi_map(train_dir / "text", allow_empty_value=True)
    seen = {lang: eb.vocabulary(t for u, t in train.items() if train_langs.get(u) == lang) for lang in set(train_langs.values())}
    result = eb.breakdown(read_kaldi_map(ref_text, allow_empty_value=True),
                          read_kaldi_map(decode / "text", allow_empty_value=True), langs, seen)
    rows = [[lang, str(s["ref_words"]), f"{100 * s['unseen_words'] / max(1, s['ref_words']):.0f}",
             f"{eb.rate(s['seen_errors'], s['seen_words']):.1f}", f"{eb.rate(s['unseen_errors'], s['unseen_words']):.1f}",
             f"{s['boundary_regions']} / {s['error_regions']}",
             f"{eb.rate(s['close_substitutions'], s['char_substitutions']):.0f}% of {s['char_substitutions']} "
             f"(chance {s['close_by_chance']:.0f}%)",
             ", ".join(f"{c} ({n})" for c, n in s["top_confusions"][:3])]
            for lang, s in result.items()]
    source = f"{decode}/text, {ref_text}, {train_dir}/text (stage 7)"
    table = Table(f"Errors of {exp_dir.name} on {test_set} by kind (oracle routing)",
                  ["lang", "ref words", "unseen in training %", "error % on seen words", "error % on unseen words",
                   "boundary / all error regions", "phonetically close character substitutions",
                   "most confused characters (ref->hyp)"],
                  rows, [False, True, True, True, True, True, True, False], source)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(result))
    for offset, kind in ((-0.2, "seen"), (0.2, "unseen")):
        ax.bar(x + offset, [eb.rate(s[f"{kind}_errors"], s[f"{kind}_words"]) for s in result.values()], 0.4,
               label=f"words {kind} in training")
    ax.set_xticks(x, list(result))
    ax.set_ylabel("reference words substituted or deleted (%)")
    ax.set_title(f"Errors on words seen and unseen in training ({test_set})", fontsize=10)
    ax.legend(fontsize=8)
    save_figure(fig, figures_dir / "errors_seen_unseen")
    ratios = {lang: eb.rate(s["unseen_errors"], s["unseen_words"]) / eb.rate(s["seen_errors"], s["seen_words"])
              for lang, s in result.items() if s["seen_errors"] and s["unseen_words"]}
    message = ("Words never seen in training are missed " + ", ".join(f"{lang} {r:.1f}x" for lang, r in ratios.items())
               + " as often as seen ones") if ratios else "Error rates on words seen and unseen in training"
    close = ", ".join(f"{lang} {eb.rate(s['close_substitutions'], s['char_substitutions']):.0f}% "
                      f"(chance {s['close_by_chance']:.0f}%)" for lang, s in result.items() if s["char_substitutions"])
    return Section("What the adapters get wrong", message,
                   [f"Character substitutions between phonetically close characters: {close}." if close else
                    "No character substitutions.",
                    "Error regions are runs of substitutions, deletions and insertions in the word alignment; a "
                    "boundary region holds the same letters as the reference with the spaces moved. A character "
                    "substitution is phonetically close when both are stops of one place of articulation (one "
                    "varga of the Brahmic scripts: they differ in voicing, aspiration or nasality), a retroflex "
                    "and its dental, two sibilants, vowels that differ in length, or, in Italian, a voicing pair or a vowel and its accented form "
                    "(espnet_ext.analysis.error_breakdown.close_kind); chance: each reference character replaced by "
                    "a character drawn as often as the system writes it."], [table],
                   [Figure(figures_dir / "errors_seen_unseen.png", "Error rate on seen and unseen words.", source)])


def data_size_sentence(rows: Sequence[Mapping]) -> Optional[str]:
    """The plan's low-resource hypothesis, where one language was trained at several sizes with one rank, one
    start (scratch or another language's adapter) and equal optimizer steps (the fewshot study's runs): the
    effective rank at each size (adapter_ranks rows), and whether the smallest size's is the lower, read at
    the precision printed (a difference the sentence cannot show is called level)."""
    groups: Dict = {}
    for r in rows:
        if r["train_utterances"]:
            key = (r["lang"], r["rank"], r.get("init_from") or "", r.get("steps") or 0)
            groups.setdefault(key, {})[r["train_utterances"]] = r["effective_rank"]
    sizes = {key: by_size for key, by_size in groups.items() if len(by_size) > 1}
    if not sizes:
        return None

    def said(key, by_size) -> str:
        lang, rank, start, steps = key
        low, high = (round(by_size[n], 1) for n in (min(by_size), max(by_size)))
        verdict = ("lower at the smallest size, as the hypothesis says" if low < high else
                   "level" if low == high else "higher at the smallest size")
        origin = f"{start}'s adapter" if start else "scratch"
        counted = f", {steps} steps" if steps else ""
        sizes_said = ", ".join(f"{n} utts {v:.1f}" for n, v in sorted(by_size.items()))
        return f"{lang} r{rank} from {origin}{counted}: {sizes_said} ({verdict})"

    return ("Effective rank by training size at equal steps (the low-resource hypothesis: fewer utterances, lower "
            "rank): " + "; ".join(said(key, by_size) for key, by_size in sorted(sizes.items())) + ".")


def lexical_section(result: Mapping, figures_dir: Path, source: str) -> Section:
    """The lexical probe (the lexical study) in sentences read from `result`."""
    from espnet_ext.analysis import lexical

    title = "Which words the encoder hears (lexical probe)"
    if not result["languages"]:
        return Section(title, f"No language's probe set had a frequent training word held by {lexical.MIN_EACH} "
                       f"utterances and missed by {lexical.MIN_EACH}: probe more utterances "
                       "(./run.sh --lexical_per_language N)", [f"Source: {source}."], [], [])
    lexical.plot_lexical(result, figures_dir / "lexical_probe")
    top = len(result["layers"]) - 1
    lines, gains = [], {}
    for lang, r in result["languages"].items():
        base, own = r["probes"]["base"]["selectivity"], r["probes"][lang]["selectivity"]
        gains[lang] = own[top] - base[top]
        lines.append(f"{lang} ({len(r['words'])} words, {r['utterances']} utterances): bare base best "
                     f"{100 * max(base):+.1f} at layer {result['layers'][int(np.argmax(base))]}, top layer "
                     f"{100 * base[top]:+.1f}; own adapter top layer {100 * own[top]:+.1f}")
    raised = [lang for lang, g in gains.items() if g > 0.05]  # more than the probe's noise of a few points
    message = (f"The adapters raise what the top encoder layer knows of the frequent words in {', '.join(raised)}"
               if raised else "The adapters do not raise what the top encoder layer knows of the frequent words")
    return Section(
        title, message,
        [f"Multi-label linear probes on each language's dev utterances: which of its {result['top_words']} most "
         "frequent training words (those held by at least 3 utterances and missing from 3) each utterance holds, "
         f"{result['folds']}-fold; the score is the mean balanced accuracy over words, shown as points over its "
         "control (the label rows shuffled across utterances): " + "; ".join(lines) + ".",
         "Probing within a language keeps language identity out of the score; the encoder has no word "
         "boundaries, so what it holds is the sound of the frequent words. With a few dozen utterances per "
         "language and 3 folds, differences of a few points between curves are within the probe's noise; "
         "below the LID tap, an adapter state differs from the bare base only where the layout has a shared "
         "adapter there."],
        [], [Figure(figures_dir / "lexical_probe.png", "Lexical probe selectivity per encoder layer.", source)])


def phonetic_section(result: Mapping, figures_dir: Path, source: str) -> Section:
    """The phonetic probes (the phonetic study) in sentences read from `result`."""
    from espnet_ext.analysis import phonetic, representations

    representations.plot_probes(result, figures_dir / "phonetic_probes")
    top = len(result["layers"]) - 1
    adapters = [s for s in result["states"] if s != "base"]
    lines = []
    for task, by_state in result["probes"].items():
        base = by_state["base"]
        adapted = [by_state[s]["accuracy"][top] for s in adapters]
        lines.append(f"{task}: bare base {100 * max(base['accuracy']):.0f}% at best, {100 * base['accuracy'][top]:.0f}% "
                     f"at the top layer (control {100 * base['control'][top]:.0f}%); with an adapter "
                     f"{100 * min(adapted):.0f}-{100 * max(adapted):.0f}% at the top layer" if adapted else
                     f"{task}: bare base {100 * max(base['accuracy']):.0f}% at best")
    drop = {task: by_state["base"]["accuracy"][top] - max(by_state["base"]["accuracy"])
            for task, by_state in result["probes"].items()}
    lost = min(drop, key=drop.get)
    return Section(
        "What the encoder hears (phonetic probes)",
        f"Consonant {lost} fades most toward the bare base's top layer ({100 * drop[lost]:+.0f} points from its best)"
        if drop[lost] < -0.02 else "Every layer, bare or adapted, tells the synthetic consonants apart",
        [f"Linear probes on {result['utterances']} synthesised syllables ({', '.join(phonetic.CONSONANTS)} before "
         f"{', '.join(phonetic.VOWELS)}, and the vowels alone) in each adapter language's dev voices, "
         f"{result['folds']}-fold, controls of shuffled labels: " + "; ".join(lines) + ".",
         "Syllables spoken from phoneme input are clean and easy: most probes saturate, so the figure separates "
         "layers only where a feature fades. The onset task is 24 vowels against 336 syllables, so its control "
         "sits near the majority share."],
        [], [Figure(figures_dir / "phonetic_probes.png", "Phonetic probes per encoder layer and model state.",
                    source)])
