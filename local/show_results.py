#!/usr/bin/env python3
"""Roll every `<exp>/*/decode_*/scores.json` into one Markdown table (RESULTS.md).

    local/show_results.py exp                # writes exp/RESULTS.md and prints it
    local/show_results.py exp --output RESULTS.md

One row per model, decode dir and language (the overall row, "all", last), with WER and CER in percent
and the counts behind them, so a table can be checked against the decode dirs' result.txt.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from espnet_ext.fileio import atomic_write_text
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
