"""The result tables of a run, as data: every `<exp>/*/decode_*/scores.json` rolled into the tables that
`local/show_results.py` writes as RESULTS.md and the report (stage 7) renders as Markdown, HTML and slides,
so every rendering of a number comes from one reading of the scores.

Six kinds of table:

- Experiments: one row per trained exp dir with a dev decode (`decode_dev_*_oracle`, written by stages 5
  and 6): targets, rank, trainable parameters per language (counted in the exported adapter files; for
  `--finetune full`, every weight of the model), training size, epochs, training time (ESPnet's per-epoch
  train + valid times, so a resumed run counts every epoch once) and dev WER / CER per language. This is
  the table the rank, targets and augmentation ablations are read from.
- Systems: one row per trained LoRA exp dir with a scored test decode under oracle routing: model, rank,
  trainable parameters per language, test WER / CER per language; the tasks of an experiment grid
  (models x languages x ranks, espnet_ext/grid.py) read as one table.
- Routing: per trained exp dir and test set, one row per routing decoded there (and the zero-shot base
  on the same set; on a code-switched set, whose oracle is its true segments, also each `segments_*`
  decode): WER / CER per language, the relative WER change against oracle routing with a
  bootstrap 95% confidence interval (utterances resampled, both systems paired), the share of
  utterances routed to their true language, decode milliseconds per utterance (the decode jobs'
  own time over their utterances, one thread each), and, where the set has a `hard` decode, WER on
  the utterances the LID head was unsure of (top posterior below 0.9 there), where routers differ, with
  each router's relative change against hard routing on them (paired bootstrap 95% CI).
- Domain shift: per trained system and test set of one source corpus (a mixed run's
  `test_<lang>_<corpus>`, tagged by `utt2src`), WER / CER and whether that corpus is in the system's
  training data (in-domain) or not (cross-domain).
- Robustness: per clean test set with degraded copies decoded (`<set>_<condition>`, written by
  local/make_degraded.py), one row per condition (clean first) and system: the zero-shot base and each
  trained exp under oracle routing. WER per language and overall with a bootstrap 95% confidence interval
  (utterances resampled), CER beside it; each trained exp's relative WER change against the reference exp
  (the untagged run, whose name every other exp's name starts with) with its paired bootstrap CI. Beside
  it, the accuracy of every LID head evaluated on those sets (`<exp>/lid*/<head>/eval.json`, written by
  `train_lid --eval_dir`), one row per head.
- Every decode: one row per model, decode dir and language (the overall row, "all", last), with WER and
  CER in percent and the counts behind them, so it can be checked against the decode dirs' result.txt.
"""
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_ext.data.degrade import condition_order, degraded_name, split_condition
from espnet_ext.data.kaldi import read_entries
from espnet_ext.errors import UserError
from espnet_ext.languages import LANGUAGES
from espnet_ext.routing.routers import DEFAULT_TAU as UNCERTAIN, ROUTINGS
from espnet_ext.scoring.compare import bootstrap_rate, paired_change
from espnet_ext.scoring.report import format_rate


class ResultsError(UserError, ValueError):
    """A results file that cannot be read into the tables."""


@dataclass
class Table:
    """A titled table of strings; `numeric` columns are right-aligned; `source` names the files it came from."""

    title: str
    columns: List[str]
    rows: List[List[str]]
    numeric: List[bool] = field(default_factory=list)
    source: str = ""

    def markdown(self) -> List[str]:
        align = "|" + "".join("---:|" if n else "---|" for n in (self.numeric or [False] * len(self.columns)))
        return [f"## {self.title}", "", "| " + " | ".join(self.columns) + " |", align,
                *("| " + " | ".join(row) + " |" for row in self.rows), ""]


TEXT_COLUMNS = ("model", "decode", "test set", "lang")
NUMBER_COLUMNS = ("utts", "words", "WER", "chars", "CER")  # right-aligned
SEGMENTS = "segments_"  # code-switched sets' per-segment decodes (lora_asr.sh --codeswitch), after the routings


def table_rows(scores_path: Path) -> List[List[str]]:
    """The rows of one decode dir's scores.json (written by espnet_ext.bin.score)."""
    try:
        scores = json.loads(scores_path.read_text(encoding="utf-8"))
        per_lang = scores["scores"]
        return [
            [scores_path.parent.parent.name, scores_path.parent.name, scores["test_set"], lang,
             str(s["utterances"]), str(s["wer"]["ref_tokens"]), format_rate(s["wer"]),
             str(s["cer"]["ref_tokens"]), format_rate(s["cer"])]
            for lang, s in per_lang.items()
            if lang != "all" or len(per_lang) != 2  # a one-language set's "all" row repeats its language row
        ]
    except (ValueError, KeyError, TypeError) as e:
        raise ResultsError(f"{scores_path}: not a scores.json of espnet_ext.bin.score ({e!r}); "
                         "re-run the scoring stage for that decode dir") from None


def adapter_parameters(adapter_dir: Path) -> int:
    """Trainable parameters of one language's adapter, counted in its files."""
    from espnet_ext.lora.adapter_files import read_adapter_weights

    return read_adapter_weights(adapter_dir).parameter_count()


def _training_minutes(exp: Path) -> float:
    from espnet_ext.train.export import read_reporter

    reporter = read_reporter(exp)
    seconds = sum(stats[phase]["time"].total_seconds() for stats in reporter.stats.values()
                  for phase in ("train", "valid") if "time" in stats.get(phase, {}))
    return seconds / 60


def _system(exp: Path) -> Tuple[Dict, str, str, int]:
    """(provenance config, targets, rank, trainable parameters per language) of a trained exp dir."""
    configs = sorted(exp.glob("adapters/*/adapter_config.json"))
    if configs:
        config = json.loads(configs[0].read_text(encoding="utf-8"))
        return config, ", ".join(config["targets"]), str(config["rank"]), adapter_parameters(configs[0].parent)
    full = exp / "full_model" / "model_config.json"
    if full.is_file():
        config = json.loads(full.read_text(encoding="utf-8"))
        return config, "full fine-tuning (every weight)", "-", config["parameters"]
    raise ResultsError(f"{exp} has a dev decode but neither adapters/*/adapter_config.json nor "
                     "full_model/model_config.json")


def experiment_row(scores_path: Path, langs: List[str]) -> List[str]:
    """One trained exp dir: its provenance and its dev scores for `langs` (blank where not decoded)."""
    exp = scores_path.parent.parent
    config, targets, rank, parameters = _system(exp)
    scores = json.loads(scores_path.read_text(encoding="utf-8"))["scores"]
    utts = config["train_data"]["utterances"]
    cells = [exp.name, targets, rank, f"{parameters / 1e6:.2f}M",
             "/".join(sorted({str(n) for n in utts.values()})),
             f"{config['checkpoint']['epoch']}/{config['checkpoint']['epochs_trained']}",
             f"{_training_minutes(exp):.0f}"]
    for lang in langs + ["all"]:
        cells.append(f"{format_rate(scores[lang]['wer'])} / {format_rate(scores[lang]['cer'])}"
                     if lang in scores else "")
    return cells


def experiments_table(exp_dir: Path) -> Optional[Table]:
    paths = sorted(exp_dir.glob("*/decode_dev_*_oracle/scores.json"))
    if not paths:
        return None
    langs = sorted({lang for p in paths for lang in json.loads(p.read_text(encoding="utf-8"))["scores"]}
                   - {"all"}, key=list(LANGUAGES).index)
    columns = ["experiment", "targets", "rank", "params/lang", "train utts/lang", "epoch used/trained",
               "train min"] + [f"dev {lang} WER / CER" for lang in langs + ["all"]]
    return Table("Experiments (dev sets: unseen voices and sentences; oracle routing)", columns,
                 [experiment_row(path, langs) for path in paths], [False, False] + [True] * (len(columns) - 2),
                 f"{exp_dir}/*/decode_dev_*_oracle/scores.json, adapters/*/adapter_config.json")


def _decode_logs(decode_dir: Path) -> str:
    return "".join(f.read_text(encoding="utf-8") for f in sorted(decode_dir.glob("log/decode.*.log")))


def decode_ms_per_utt(decode_dir: Path) -> Optional[float]:
    """Sum over the decode jobs' logs of "decoded N utterances in S s": 1000 S / N."""
    utts = seconds = 0.0
    for match in re.finditer(r"decoded (\d+) utterances in ([\d.]+) s", _decode_logs(decode_dir)):
        utts, seconds = utts + int(match.group(1)), seconds + float(match.group(2))
    return 1000 * seconds / utts if utts else None


def decode_base_model(decode_dir: Path) -> Optional[Tuple[str, int]]:
    """(model name, base parameters) as the decode jobs log them ("loaded M (N base parameters)"); None for
    logs written before they did."""
    found = re.search(r"loaded (\S+) \((\d+) base parameters\)", _decode_logs(decode_dir))
    return (found.group(1), int(found.group(2))) if found else None


def peak_memory_mb(log_text: str) -> Optional[float]:
    """The largest "peak memory X MB" a log reports (decode jobs, train_lora); None for logs from before it."""
    found = [float(m) for m in re.findall(r"peak memory ([\d.]+) MB", log_text)]
    return max(found) if found else None


def decode_peak_memory_mb(decode_dir: Path) -> Optional[float]:
    return peak_memory_mb(_decode_logs(decode_dir))


def _routing_accuracy(decode_dir: Path, scores: Dict) -> Optional[float]:
    """Share of utterances whose routed language (lid.json) is their true one (utt2lang)."""
    lid_file = decode_dir / "lid.json"
    if not lid_file.is_file() or "utterances" not in scores:
        return None
    lid = json.loads(lid_file.read_text(encoding="utf-8"))
    truth = {u: v["lang"] for u, v in scores["utterances"].items()}
    return sum(lid[u]["lang"] == lang for u, lang in truth.items() if u in lid) / max(1, len(truth))


def _uncertain_utterances(exp: Path, test_set: str) -> Optional[List[str]]:
    """Utterances whose LID head was unsure: top posterior below UNCERTAIN in the set's `hard` decode."""
    lid_file = exp / f"decode_{test_set}_hard" / "lid.json"
    if not lid_file.is_file():
        return None
    lid = json.loads(lid_file.read_text(encoding="utf-8"))
    return sorted(u for u, d in lid.items() if max(d["posteriors"].values()) < UNCERTAIN)


def _subset_wer(scores: Dict, utts: List[str]) -> str:
    """WER (%) over the utterances `utts`, from scores.json's per-utterance errors; "" where any is missing."""
    per_utt = scores.get("utterances", {})
    if not utts or not all(u in per_utt for u in utts):
        return ""
    errors, words = (sum(per_utt[u][key] for u in utts) for key in ("word_errors", "words"))
    return f"{100 * errors / max(1, words):.2f}"


def _subset_change(scores: Dict, hard: Optional[Dict], utts: List[str]) -> str:
    """The relative WER change against hard routing over the utterances `utts`, with its paired bootstrap
    95% interval (the plan's "soft beats hard on uncertain cases" read off with its noise); "" without them."""
    per_utt, base = scores.get("utterances", {}), (hard or {}).get("utterances", {})
    if not utts or not all(u in per_utt and u in base for u in utts):
        return ""
    return paired_change(per_utt, base, among=set(utts), digits=1)


def _routing_rows(oracle: Dict, systems: List[Tuple[str, Path]], langs: List[str],
                  uncertain: Optional[List[str]]) -> List[List[str]]:
    rows = []
    loaded = {name: json.loads((decode_dir / "scores.json").read_text(encoding="utf-8")) for name, decode_dir in systems}
    for name, decode_dir in systems:
        scores = loaded[name]
        cells = [name]
        for lang in langs + ["all"]:
            s = scores["scores"].get(lang)
            if s is None:
                cells += ["", ""]
                continue
            cells.append(f"{format_rate(s['wer'])} / {format_rate(s['cer'])}")
            if name == "oracle" or "utterances" not in scores or "utterances" not in oracle:
                cells.append("")
                continue
            cells.append(paired_change(scores["utterances"], oracle["utterances"], None if lang == "all" else lang,
                                       digits=1))
        accuracy, ms = _routing_accuracy(decode_dir, scores), decode_ms_per_utt(decode_dir)
        cells += ["" if accuracy is None else f"{100 * accuracy:.1f}", "" if ms is None else f"{ms:.0f}"]
        if uncertain is not None:
            cells += [_subset_wer(scores, uncertain), "" if name == "hard" else _subset_change(scores, loaded.get("hard"), uncertain)]
        rows.append(cells)
    return rows


def routing_tables(exp_dir: Path) -> List[Table]:
    """The Routing tables (module docstring), one per trained exp dir and test set with an oracle decode."""
    tables = []
    order = {name: i for i, name in enumerate(ROUTINGS)}
    for oracle_dir in sorted(exp_dir.glob("*/decode_test_*_oracle")):
        if not (oracle_dir / "scores.json").is_file():
            continue
        test_set = oracle_dir.name[len("decode_"):-len("_oracle")]
        oracle = json.loads((oracle_dir / "scores.json").read_text(encoding="utf-8"))
        systems = [(d.name[len(f"decode_{test_set}_"):], d) for d in oracle_dir.parent.glob(f"decode_{test_set}_*")
                   if (d / "scores.json").is_file()]
        systems = [(name, d) for name, d in systems if name in ROUTINGS or name.startswith(SEGMENTS)]
        systems.sort(key=lambda system: (order.get(system[0], len(order)), system[0]))
        if split_condition(test_set)[1] is not None and len(systems) == 1:
            continue  # a degraded copy decoded under oracle routing only: its row is in the Robustness table
        zeroshot = sorted(exp_dir.glob(f"*_zeroshot/decode_{test_set}_none"))
        systems = [("none (zero-shot)", d) for d in zeroshot if (d / "scores.json").is_file()] + systems
        langs = [lang for lang in oracle["scores"] if lang != "all"]
        columns = ["routing"] + [c for lang in langs + ["all"] for c in (f"{lang} WER / CER", f"{lang} WER vs oracle")]
        columns += ["routed to true lang %", "ms/utt"]
        uncertain = _uncertain_utterances(oracle_dir.parent, test_set)
        if uncertain is not None:
            columns += [f"WER where LID top posterior < {UNCERTAIN} (n={len(uncertain)})", "there, WER vs hard"]
        tables.append(Table(f"Routing: {oracle_dir.parent.name} on {test_set}", columns,
                            _routing_rows(oracle, systems, langs, uncertain), [False] + [True] * (len(columns) - 1),
                            f"{oracle_dir.parent}/decode_{test_set}_*/{{scores.json,lid.json,log/decode.*.log}}"))
    return tables


def systems_table(exp_dir: Path) -> Optional[Table]:
    """Test WER / CER of every trained LoRA system (oracle routing on test_<lang> or test_all): model,
    rank and trainable parameters per language beside them, one row per exp dir, so the tasks of a models x
    languages x ranks grid (espnet_ext/grid.py) read as one table."""
    paths = sorted(p for p in exp_dir.glob("*/decode_test_*_oracle/scores.json")
                   if re.fullmatch(r"decode_test_(all|[a-z]{2})_oracle", p.parent.name)
                   and (p.parent.parent / "adapters").is_dir())
    if not paths:
        return None
    scores = {p: json.loads(p.read_text(encoding="utf-8"))["scores"] for p in paths}
    langs = sorted({lang for s in scores.values() for lang in s} - {"all"}, key=list(LANGUAGES).index)
    rows = []
    for path in paths:
        exp = path.parent.parent
        config, _, rank, parameters = _system(exp)
        rows.append([exp.name, config["base_model"], rank, f"{parameters / 1e6:.3f}M"]
                    + [f"{format_rate(scores[path][lang]['wer'])} / {format_rate(scores[path][lang]['cer'])}"
                       if lang in scores[path] else "" for lang in langs])
    return Table("Systems by model, language and rank (test sets, oracle routing; WER / CER)",
                 ["experiment", "model", "rank", "params/lang"] + [f"test {lang}" for lang in langs], rows,
                 [False, False, True] + [True] * (1 + len(langs)),
                 f"{exp_dir}/*/decode_test_<lang>_oracle/scores.json, adapters/*/adapter_config.json")


def _sources(data_dir: Path) -> Dict[str, int]:
    """Utterances per source corpus of a mixed data dir (its utt2src, written by local/mix_corpora.py)."""
    path = data_dir / "utt2src"
    counts: Dict[str, int] = {}
    if path.is_file():
        for entry in read_entries(path):
            counts[entry.value] = counts.get(entry.value, 0) + 1
    return counts


def domain_table(exp_dir: Path) -> Optional[Table]:
    """In-domain and cross-domain WER (the project plan's domain shift): each trained system on each
    source's own test set (oracle routing), marked in-domain where that source is in its training data."""
    rows = []
    for path in sorted(exp_dir.glob("*/decode_*_oracle/scores.json")):
        configs = sorted(path.parent.parent.glob("adapters/*/adapter_config.json"))
        scores = json.loads(path.read_text(encoding="utf-8"))
        test_sources = _sources(Path(scores.get("ref_text", "")).parent)
        if not configs or len(test_sources) != 1:
            continue
        train = _sources(Path(json.loads(configs[0].read_text(encoding="utf-8"))["train_data"]["dir"]))
        source = next(iter(test_sources))
        share = ", ".join(f"{name} {100 * n / sum(train.values()):.0f}%" for name, n in sorted(train.items()))
        overall = scores["scores"]["all"]
        rows.append([path.parent.parent.name, share or "-", scores["test_set"], source,
                     "in-domain" if source in train else "cross-domain",
                     f"{format_rate(overall['wer'])} / {format_rate(overall['cer'])}"])
    if not rows:
        return None
    return Table("Domain shift (test sets per source corpus, oracle routing; WER / CER)",
                 ["experiment", "training utterances by source", "test set", "source", "domain", "WER / CER"],
                 rows, [False] * 5 + [True], f"{exp_dir}/*/decode_*_oracle/scores.json, utt2src of the data dirs")


CLEAN = "clean"
ZERO_SHOT = "zero-shot base"


def robustness_decodes(exp_dir: Path) -> Dict[str, Dict[str, Dict[str, Dict]]]:
    """clean set -> condition ("clean" for the set itself) -> system -> scores.json of every oracle decode of
    a trained exp and every zero-shot decode, on sets with at least one degraded copy."""
    found: Dict[str, Dict[str, Dict[str, Dict]]] = {}
    for path in sorted(exp_dir.glob("*/decode_*/scores.json")):
        exp, scores = path.parent.parent, json.loads(path.read_text(encoding="utf-8"))
        test_set = scores.get("test_set", "")
        routing = path.parent.name[len(f"decode_{test_set}_"):]
        zeroshot = routing == "none" and exp.name.endswith("_zeroshot")
        if routing != "oracle" and not zeroshot:
            continue
        clean, condition = split_condition(test_set)
        system = ZERO_SHOT if zeroshot else exp.name
        found.setdefault(clean, {}).setdefault(condition or CLEAN, {})[system] = scores
    return {clean: by_condition for clean, by_condition in found.items() if set(by_condition) - {CLEAN}}


def robustness_systems(by_condition: Dict[str, Dict[str, Dict]]) -> List[str]:
    """The systems decoded on any condition of a clean set: the zero-shot base first, then the exps by name."""
    return sorted({name for decodes in by_condition.values() for name in decodes}, key=lambda n: (n != ZERO_SHOT, n))


def _reference(systems: List[str]) -> Optional[str]:
    """The untagged trained exp: the one whose name every other trained exp's name starts with."""
    trained = sorted(name for name in systems if name != ZERO_SHOT)
    return trained[0] if len(trained) > 1 and all(name.startswith(trained[0]) for name in trained) else None


def wer_with_ci(utterances: Dict, lang: Optional[str]) -> Tuple[float, float, float]:
    """WER of `lang`'s utterances (all for None) of a scores.json "utterances" map, with its bootstrap 95%
    interval, in percent."""
    ids = [u for u, v in utterances.items() if lang is None or v["lang"] == lang]
    rate, low, high = bootstrap_rate([utterances[u]["word_errors"] for u in ids], [utterances[u]["words"] for u in ids])
    return 100 * rate, 100 * low, 100 * high


def condition_sort_key(condition: str) -> Tuple[int, str]:
    """Clean first, then the conditions in espnet_ext.data.degrade's order."""
    return (-1, "") if condition == CLEAN else condition_order(condition)


def lid_robustness_table(exp_dir: Path, clean: str, conditions: List[str]) -> Optional[Table]:
    """Accuracy (%) of every LID head under `exp_dir` (`<exp>/lid*/<head>/eval.json`, stage 4 or the robustness
    study) evaluated on `clean` or a copy, one row per head, one column per condition."""
    rows = []
    for eval_file in sorted(exp_dir.glob("*/lid*/*/eval.json")):
        evaluated = json.loads(eval_file.read_text(encoding="utf-8")).get("eval", {})
        cells = [evaluated.get(clean if c == CLEAN else degraded_name(clean, c)) for c in conditions]
        if any(cells):
            head = eval_file.parent
            rows.append([head.parent.parent.name, f"{head.parent.name}/{head.name}"]
                        + ["" if cell is None else f"{100 * cell['accuracy']:.1f}" for cell in cells])
    if not rows:
        return None
    return Table(f"LID accuracy on {clean} and its degraded copies (%)", ["experiment", "head"] + conditions, rows,
                 [False, False] + [True] * len(conditions), f"{exp_dir}/*/lid*/*/eval.json (espnet_ext.bin.train_lid "
                 "--eval_dir)")


def robustness_table(exp_dir: Path, clean: str, by_condition: Dict[str, Dict[str, Dict]]) -> List[Table]:
    """The Robustness table of one clean set (module docstring), from its decodes as robustness_decodes
    gives them, and the LID table of the heads evaluated on it, where there are any."""
    systems = robustness_systems(by_condition)
    reference = _reference(systems)
    langs = sorted({lang for decodes in by_condition.values() for scores in decodes.values()
                    for lang in scores["scores"]} - {"all"}, key=list(LANGUAGES).index)
    rows = []
    for condition in sorted(by_condition, key=condition_sort_key):
        decodes = by_condition[condition]
        for name in (n for n in systems if n in decodes):
            scores = decodes[name]
            utterances = scores.get("utterances", {})
            cells = [condition, name]
            for lang in langs + [None]:
                summary = scores["scores"].get(lang or "all")
                cells.append("" if summary is None or not utterances else
                             "{:.1f} [{:.1f}, {:.1f}]".format(*wer_with_ci(utterances, lang))
                             + f" / {format_rate(summary['cer'])}")
            base = decodes.get(reference)
            if reference is None or name in (reference, ZERO_SHOT) or base is None or not utterances:
                cells.append("")
            else:
                cells.append(paired_change(utterances, base["utterances"], digits=1))
            rows.append(cells)
    columns = (["condition", "system"] + [f"{lang} WER [95% CI] / CER" for lang in langs + ["all"]]
               + [f"all WER vs {reference or 'reference'}"])
    wer = Table(f"Robustness: {clean} and its degraded copies (oracle routing; zero-shot: the bare base)", columns,
                rows, [False, False] + [True] * (len(columns) - 2),
                f"{exp_dir}/*/decode_{clean}[_<condition>]_{{oracle,none}}/scores.json")
    lid = lid_robustness_table(exp_dir, clean, sorted(by_condition, key=condition_sort_key))
    return [wer] + ([lid] if lid else [])


def robustness_tables(exp_dir: Path) -> List[Table]:
    """The Robustness tables (module docstring), for each clean test set with degraded copies decoded."""
    return [table for clean, by_condition in sorted(robustness_decodes(exp_dir).items())
            for table in robustness_table(exp_dir, clean, by_condition)]


def decodes_table(exp_dir: Path) -> Table:
    """Every decode (module docstring); an error when nothing under `exp_dir` is scored yet."""
    paths = sorted(exp_dir.glob("*/decode_*/scores.json"))
    if not paths:
        raise ResultsError(f"no {exp_dir}/*/decode_*/scores.json; run the scoring stage first")
    return Table("Every decode", list(TEXT_COLUMNS + NUMBER_COLUMNS), [row for path in paths for row in table_rows(path)],
                 [False] * len(TEXT_COLUMNS) + [True] * len(NUMBER_COLUMNS), f"{exp_dir}/*/decode_*/scores.json")


def all_tables(exp_dir: Path) -> List[Table]:
    """Experiments, systems, domain shift, routing, robustness, every decode: the tables of RESULTS.md, in its
    order."""
    every = decodes_table(exp_dir)
    summaries = [table for table in (experiments_table(exp_dir), systems_table(exp_dir), domain_table(exp_dir))
                 if table]
    return summaries + routing_tables(exp_dir) + robustness_tables(exp_dir) + [every]


def markdown(exp_dir: Path) -> str:
    """RESULTS.md for every scored decode dir under `exp_dir`, sorted by model then decode dir."""
    tables = all_tables(exp_dir)
    lines = [
        "# Results",
        "",
        f"Scored decode dirs under `{exp_dir}` (WER/CER in %, sclite, text normalised by "
        "espnet_ext.scoring.normalize; details in each decode dir's result.txt).",
        "",
    ]
    for table in tables:
        lines += table.markdown()
    return "\n".join(lines[:-1]) + "\n"
