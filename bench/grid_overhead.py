#!/usr/bin/env python3
"""What Slurm costs: the tiny 8-task grid (conf/grid_tiny.yaml: 2 tiny random models x hi, te x ranks 2, 4,
each task trained, decoded and scored) run end to end under utils/run.pl and under utils/slurm.pl, at equal
concurrency (2 tasks at once: the one-node test cluster of tests/slurm/ has 2 CPUs and each task asks for
one), on the same data (`--utts` utterances per language and split, cut from the recipe's data/), from
an empty exp dir each time. Wall time from `run.sh --grid` to the grid's RESULTS.md (for slurm.pl: until
its three arrays have left the queue), after one warm-up run of each backend on a one-task grid; median
of `--repeats`. Needs a running Slurm (tests/slurm/start.sh) and stage 1 of the default run.

    python bench/grid_overhead.py --repeats 1     # ~15 minutes on 2 cores
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

RECIPE = Path(__file__).resolve().parents[1] / "egs2" / "multilingual_lora" / "asr1"
LANGS = ("hi", "te")


def make_data(data_root: Path, out: Path, utts: int) -> None:
    for split in ("train", "dev", "test"):
        for lang in LANGS:
            subprocess.run([sys.executable, "local/subset_data_dir.py", str(data_root / f"{split}_{lang}"),
                            str(utts), str(out / f"{split}_{lang}")], cwd=RECIPE, check=True, capture_output=True)


def write_grid(path: Path, name: str, tasks: str) -> Path:
    spec = yaml.safe_load((RECIPE / "conf" / "grid_tiny.yaml").read_text())
    spec.update(name=name, max_jobs_run=2)
    if tasks == "one":  # the warm-up: one model, language and rank
        spec.update(models=dict(list(spec["models"].items())[:1]), langs=spec["langs"][:1], ranks=spec["ranks"][:1])
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_grid(backend: str, grid: Path, data: Path, exp: Path) -> float:
    """Seconds from submitting until the grid's results exist (and, with Slurm, its jobs have left the queue)."""
    start = time.perf_counter()
    subprocess.run(["./run.sh", "--stage", "3", "--grid", str(grid), "--cmd", backend, "--datadir", str(data),
                    "--expdir", str(exp)], cwd=RECIPE, check=True, capture_output=True)
    name = yaml.safe_load(grid.read_text())["name"]
    submissions = exp / "grid" / name / "submissions.json"
    if submissions.is_file():
        ids = ",".join(s["job_id"] for s in json.loads(submissions.read_text()))
        while subprocess.run(["squeue", "-h", "-j", ids], capture_output=True, text=True).stdout.strip():
            time.sleep(1)
    seconds = time.perf_counter() - start
    rows = [line for line in (exp / "grid" / name / "RESULTS.md").read_text().splitlines() if "| done |" in line]
    if len(rows) != len(json.loads((exp / "grid" / name / "tasks.json").read_text())["tasks"]):
        raise SystemExit(f"grid_overhead.py: not every task of {exp}/grid/{name} finished; see its logs")
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_root", type=Path, default=RECIPE / "data", help="stage 1's data dirs")
    p.add_argument("--utts", type=int, default=2, help="utterances per language in each split")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_data(args.data_root.resolve(), tmp / "data", args.utts)
        times = {"run.pl": [], "slurm.pl": []}
        for backend in times:  # warm-up: file caches, Slurm's first scheduling pass
            run_grid(backend, write_grid(tmp / "warm.yaml", "warm", "one"), tmp / "data", tmp / f"warm_{backend}")
        for k in range(args.repeats):
            for backend in times:
                exp = tmp / f"exp_{backend}_{k}"
                times[backend].append(run_grid(backend, write_grid(tmp / "grid.yaml", "tiny", "all"), tmp / "data", exp))
                print(f"repeat {k + 1}: {backend} {times[backend][-1]:.1f} s", flush=True)
    local, slurm = (statistics.median(times[b]) for b in ("run.pl", "slurm.pl"))
    print(f"\nthe tiny 8-task grid, 2 tasks at a time, median of {args.repeats} after a warm-up:")
    print(f"  run.pl (this machine)         {local:7.1f} s")
    print(f"  slurm.pl (one-node Slurm)     {slurm:7.1f} s")
    print(f"  slurm.pl / run.pl             {slurm / local:7.2f}x  (Slurm overhead {100 * (slurm / local - 1):+.1f}%; "
          "target under +20%)")


if __name__ == "__main__":
    main()
