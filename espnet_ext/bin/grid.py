#!/usr/bin/env python3
"""An experiment grid (models x languages x ranks) through the recipe's job runner: espnet_ext/grid.py
says how it runs; conf/grid.yaml what it runs. Run from the recipe directory (egs2/multilingual_lora/asr1),
usually through run.sh:

    ./run.sh --grid conf/grid.yaml --cmd slurm.pl                # submit, return; python -m ... submit
    ./run.sh --grid conf/grid.yaml --cmd slurm.pl --dry_run true # print the task table and sbatch scripts
    local/grid_status.py exp/grid/<name>                         # each task's state and log
    python -m espnet_ext.bin.grid task --grid_dir exp/grid/<name> --phase train --task 3   # inside a job
    python -m espnet_ext.bin.grid results --grid_dir exp/grid/<name>   # exp/grid/<name>/RESULTS.md
"""
import argparse
import logging
import shlex
import sys
from pathlib import Path

from espnet_ext import grid
from espnet_ext.bin.cli import LOG_FORMAT, exits_on_user_error, str2bool
from espnet_ext.fileio import atomic_write_text


@exits_on_user_error
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit", help="write the task table, submit the unfinished tasks")
    s.add_argument("--grid", type=Path, required=True, help="the grid file (conf/grid.yaml)")
    s.add_argument("--expdir", type=Path, default=Path("exp"))
    s.add_argument("--datadir", type=Path, default=Path("data"))
    s.add_argument("--cmd", default="run.pl", help="the job runner: run.pl or slurm.pl, with its options")
    s.add_argument("--dry_run", type=str2bool, default=False, help="print the task table (and sbatch scripts)")
    t = sub.add_parser("task", help="run one task's phase (inside a job)")
    t.add_argument("--grid_dir", type=Path, required=True)
    t.add_argument("--phase", choices=("train", "decode"), required=True)
    t.add_argument("--task", type=int, required=True)
    r = sub.add_parser("results", help="write <grid_dir>/RESULTS.md")
    r.add_argument("--grid_dir", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if args.command == "submit":
        return grid.submit(args.grid, args.expdir, args.datadir, shlex.split(args.cmd), args.dry_run)
    if args.command == "task":
        return grid.run_task(args.grid_dir, args.phase, args.task)
    text = grid.results_markdown(args.grid_dir)
    atomic_write_text(args.grid_dir / "RESULTS.md", text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
