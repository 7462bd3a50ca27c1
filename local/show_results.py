#!/usr/bin/env python3
"""Roll every `<exp>/*/decode_*/scores.json` into Markdown tables (RESULTS.md): experiments (dev WER/CER
per trained system), routing (each routing against oracle with bootstrap confidence intervals) and every
decode; what each column means is in espnet_ext/scoring/results.py.

    local/show_results.py exp                # writes exp/RESULTS.md and prints it
    local/show_results.py exp --output RESULTS.md
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

from espnet_ext.bin.cli import exits_on_user_error
from espnet_ext.fileio import atomic_write_text
from espnet_ext.scoring.results import markdown


@exits_on_user_error
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
