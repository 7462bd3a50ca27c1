#!/usr/bin/env python3
"""Each task of an experiment grid: done, trained, training/decoding pending or running (Slurm's
queue), failed, or not run, with the log to read (espnet_ext/grid.py: how states are decided).

    local/grid_status.py exp/grid/plan80
    local/grid_status.py exp/grid/plan80 --state failed      # only the failed tasks
"""
import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import List, Optional

from espnet_ext.bin.cli import exits_on_user_error
from espnet_ext.grid import status


@exits_on_user_error
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid_dir", type=Path, help="exp/grid/<name>, written when the grid was submitted")
    parser.add_argument("--state", help="show only tasks whose state contains this word (e.g. failed)")
    args = parser.parse_args(argv)
    rows = status(args.grid_dir)
    shown = [r for r in rows if not args.state or args.state in r["state"]]
    columns = ("task", "model", "lang", "rank", "state", "log")
    widths = [max(len(c), *(len(r[c]) for r in shown)) if shown else len(c) for c in columns]
    for row in [dict(zip(columns, columns))] + shown:
        print("  ".join(row[c].ljust(w) for c, w in zip(columns, widths)).rstrip())
    print(", ".join(f"{n} {state}" for state, n in sorted(Counter(r["state"] for r in rows).items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
