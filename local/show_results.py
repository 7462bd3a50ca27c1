#!/usr/bin/env python3
"""Roll every `<exp>/*/decode_*/scores.json` into Markdown tables (RESULTS.md).

    local/show_results.py exp                # writes exp/RESULTS.md and prints it
    local/show_results.py exp --output RESULTS.md

Two tables:

- Experiments: one row per trained exp dir with a dev decode (`decode_dev_*_oracle`, written by stages 5
  and 6): targets, rank, trainable parameters per language (counted in the exported
  adapter files; for `--finetune full`, every weight of the model), training size, epochs, training time (ESPnet's per-epoch train + valid times, so a
  resumed run counts every epoch once) and dev WER / CER per language. This is the table the rank,
  targets and augmentation ablations are read from.
- Every decode: one row per model, decode dir and language (the overall row, "all", last), with WER and
  CER in percent and the counts behind them, so it can be checked against the decode dirs' result.txt.
"""
import argparse
import json
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_ext.fileio import atomic_write_text
from espnet_ext.languages import LANGUAGES
from espnet_ext.scoring.report import format_rate

TEXT_COLUMNS = ("model", "decode", "test set", "lang")
NUMBER_COLUMNS = ("utts", "words", "WER", "chars", "CER")  # right-aligned


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
        raise SystemExit(f"show_results.py: {scores_path}: not a scores.json of espnet_ext.bin.score ({e!r}); "
                         "re-run the scoring stage for that decode dir") from None


def _adapter_parameters(adapter_dir: Path) -> int:
    """Trainable parameters of one language's adapter, counted in its safetensors file."""
    from safetensors import safe_open

    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as f:
        return sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())


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
        return config, ", ".join(config["targets"]), str(config["rank"]), _adapter_parameters(configs[0].parent)
    full = exp / "full_model" / "model_config.json"
    if full.is_file():
        config = json.loads(full.read_text(encoding="utf-8"))
        return config, "full fine-tuning (every weight)", "-", config["parameters"]
    raise SystemExit(f"show_results.py: {exp} has a dev decode but neither adapters/*/adapter_config.json nor "
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


def experiments_table(exp_dir: Path) -> List[str]:
    paths = sorted(exp_dir.glob("*/decode_dev_*_oracle/scores.json"))
    if not paths:
        return []
    langs = sorted({lang for p in paths for lang in json.loads(p.read_text(encoding="utf-8"))["scores"]}
                   - {"all"}, key=list(LANGUAGES).index)
    columns = ["experiment", "targets", "rank", "params/lang", "train utts/lang", "epoch used/trained",
               "train min"] + [f"dev {lang} WER / CER" for lang in langs + ["all"]]
    return [
        "## Experiments (dev sets: unseen voices and sentences; oracle routing)",
        "",
        "| " + " | ".join(columns) + " |",
        "|---|---|" + "---:|" * (len(columns) - 2),
        *("| " + " | ".join(experiment_row(path, langs)) + " |" for path in paths),
        "",
    ]


def markdown(exp_dir: Path) -> str:
    """RESULTS.md for every scored decode dir under `exp_dir`, sorted by model then decode dir."""
    paths = sorted(exp_dir.glob("*/decode_*/scores.json"))
    if not paths:
        raise SystemExit(f"show_results.py: no {exp_dir}/*/decode_*/scores.json; run the scoring stage first")
    lines = [
        "# Results",
        "",
        f"Scored decode dirs under `{exp_dir}` (WER/CER in %, sclite, text normalised by "
        "espnet_ext.scoring.normalize; details in each decode dir's result.txt).",
        "",
        *experiments_table(exp_dir),
        "## Every decode",
        "",
        "| " + " | ".join(TEXT_COLUMNS + NUMBER_COLUMNS) + " |",
        "|" + "---|" * len(TEXT_COLUMNS) + "---:|" * len(NUMBER_COLUMNS),
    ]
    lines += ["| " + " | ".join(row) + " |" for path in paths for row in table_rows(path)]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exp_dir", type=Path, help="experiment root holding <model>/decode_*/scores.json")
    parser.add_argument("--output", type=Path, help="where to write the table (default: <exp_dir>/RESULTS.md)")
    args = parser.parse_args(argv)
    text = markdown(args.exp_dir)
    atomic_write_text(args.output or args.exp_dir / "RESULTS.md", text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
