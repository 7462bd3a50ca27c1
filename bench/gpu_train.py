#!/usr/bin/env python3
"""The recipe's training on one GPU, as a user with a GPU runs it: the tiny grid and Whisper small's
architecture. Run by `bench/gpu.sh train` on a GPU machine (under 8 minutes on one H100/H200).

1. The tiny grid (conf/grid_tiny.yaml: 2 models x 2 languages x 2 ranks) through run.pl, every training
   and decoding job with `--ngpu 1` (the grid's `resources.<phase>.gpu: 1`): 8 trainings, 8 decodes
   and the results table, as `./run.sh --stage 3 --grid ... --cmd run.pl` runs them. Row: its wall time
   and how many tasks produced their result.txt.
2. Whisper small's architecture with random weights (`whisper_small_random`, the registry entry that
   bench/gpu_speed.py measures too) trained by the recipe's stage 3 with the default training config
   (conf/tuning/train_lora_whisper_base_r16.yaml: rank 16 on every projection, shared_below layout) for
   `--epochs` x 80 steps (3: 240) with `--ngpu 1`: once in fp32 (the baseline), once with `--use_amp true` (bf16
   autocast). Rows: steps, utterances/s and seconds of audio per second (median over the epochs after
   the first, which warms up; from the trainer's per-epoch throughput line, validation excluded), the
   peak GPU memory, the training job's wall time (model build and checkpoints included), and each
   row's utterances/s over the fp32 row's.

The corpus is the default one (espeak-ng voices), made small: a GPU machine has no espeak-ng, so
`--make_corpus DIR` writes it here (the sets both parts read, audio paths relative to DIR) and `--corpus
DIR` copies it into the work dir there. The weights being random, the loss means nothing; the speed and
memory do not depend on the values.

Usage:
    bench/gpu.sh bundle                                      # here: wheels, sclite and this corpus
    bench/gpu.sh train                                       # on the GPU machine, the bundle carried
    .venv/bin/python bench/gpu_train.py --make_corpus /tmp/c && \\
        .venv/bin/python bench/gpu_train.py --corpus /tmp/c --dry_run   # CPU: tiny model, tiny grid, 2 steps
"""
import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from espnet_ext import grid
from espnet_ext.data.kaldi import read_data_dir, write_data_dir
from espnet_ext.train.trainer import Throughput

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "multilingual_lora" / "asr1"
GRID_LANGS = ("hi", "te")  # conf/grid_tiny.yaml's languages
CORPUS_SETS = ("train_all", "dev_all") + tuple(f"{split}_{lang}" for lang in GRID_LANGS
                                                for split in ("train", "dev", "test"))
TRAIN_CONFIG = "conf/tuning/train_lora_whisper_base_r16.yaml"  # the recipe's default training
DRY_RUN_CONFIG = "conf/tuning/train_lora_tiny.yaml"  # the tiny model has no block 3 for the default's tap


def make_corpus(out: Path, train_utts: int = 40, utts_per_split: int = 10) -> None:
    """The default corpus, small (stage 1 into a scratch dir), cut to CORPUS_SETS with their audio copied
    under `out` and referred to by paths relative to it."""
    with tempfile.TemporaryDirectory() as scratch:
        recipe(["--stop_stage", "1", "--datadir", scratch, "--expdir", f"{scratch}/exp", "--tts_train_utts", str(train_utts),
                "--tts_utts_per_split", str(utts_per_split)], log=None)
        for name in CORPUS_SETS:
            utterances = []
            for utt in read_data_dir(Path(scratch) / name):
                relative = Path(utt.wav).relative_to(scratch)
                (out / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(utt.wav, out / relative)
                utterances.append(replace(utt, wav=str(relative)))
            write_data_dir(out / name, utterances)
    print(f"gpu_train.py: {out}: {', '.join(CORPUS_SETS)}")


def install_corpus(corpus: Path, datadir: Path) -> None:
    """Copy `make_corpus`'s sets into `datadir`, the audio paths made absolute (they are relative to `corpus`)."""
    for name in CORPUS_SETS:
        utterances = [replace(utt, wav=str((corpus / utt.wav).resolve())) for utt in read_data_dir(corpus / name)]
        write_data_dir(datadir / name, utterances)


def recipe(args: List[str], log: Optional[Path]) -> float:
    """Run `./run.sh args` in the recipe; its wall time. Output to `log` (None: this terminal); a failure
    ends the benchmark naming the log."""
    start = time.perf_counter()
    if log is None:
        done = subprocess.run(["./run.sh", *args], cwd=RECIPE)
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            done = subprocess.run(["./run.sh", *args], cwd=RECIPE, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"gpu_train.py: ./run.sh {' '.join(args)} failed (exit {done.returncode}); see {log or 'above'}")
    return time.perf_counter() - start


def grid_row(work: Path, ngpu: int, dry_run: bool) -> Dict[str, float]:
    """The tiny grid through run.pl with its jobs on `ngpu` GPUs: wall time and tasks with a result.txt."""
    spec = yaml.safe_load((RECIPE / "conf" / "grid_tiny.yaml").read_text())
    for phase in ("train", "decode"):
        spec["resources"][phase]["gpu"] = ngpu
    if dry_run:
        spec.update(models={"whisper_tiny_random": spec["models"]["whisper_tiny_random"]}, langs=["hi"], ranks=[2])
    path = work / "grid_tiny_gpu.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    seconds = recipe(["--stage", "3", "--stop_stage", "6", "--grid", str(path), "--cmd", "run.pl",
                      "--datadir", str(work / "data"), "--expdir", str(work / "exp")], work / "grid.log")
    directory = work / "exp" / "grid" / spec["name"]
    tasks = grid.read_tasks(directory)[1]
    table = directory / "RESULTS.md"
    print(table.read_text() if table.is_file() else f"(no {table})")
    return {"seconds": seconds, "tasks": len(tasks), "done": sum(task.done() for task in tasks)}


def training_row(work: Path, model: str, config: str, tag: str, ngpu: int, train_args: str) -> Dict[str, float]:
    """Stage 3 of the recipe (all four languages) on `ngpu` GPUs: its throughput."""
    seconds = recipe(["--stage", "3", "--stop_stage", "3", "--lang", "all", "--model", model, "--train_config",
                      config, "--ngpu", str(ngpu), "--tag", tag, "--train_args", train_args,
                      "--datadir", str(work / "data"), "--expdir", str(work / "exp")], work / f"train_{tag}.log")
    epochs = Throughput.read_log((work / "exp" / f"{model}_all_r16_{tag}" / "log" / "train.log").read_text())
    timed = epochs[1:] or epochs  # the first epoch warms up (allocator, kernels' autotuning)
    return {"seconds": seconds, "steps": sum(e["batches"] for e in epochs),
            "utt_s": statistics.median(e["utt_s"] for e in timed),
            "audio_s": statistics.median(e["audio_s"] for e in timed),
            "memory_gib": max(e["memory_gib"] for e in epochs)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--make_corpus", type=Path, help="write the small corpus here (on a machine with espeak-ng), then stop")
    p.add_argument("--corpus", type=Path, help="the corpus --make_corpus wrote")
    p.add_argument("--work", type=Path, default=Path("/tmp/gpu_train"), help="data/ and exp/ of the runs (emptied)")
    p.add_argument("--epochs", type=int, default=3, help="Whisper small's epochs of 80 steps (the config has 4)")
    p.add_argument("--dry_run", action="store_true",
                   help="CPU: a one-task grid, whisper_tiny_random for 2 epochs of 2 steps; checks the script, times nothing")
    args = p.parse_args(argv)
    if args.make_corpus:
        make_corpus(args.make_corpus)
        return
    if not args.corpus or not (args.corpus / "train_all").is_dir():
        sys.exit(f"gpu_train.py: --corpus {args.corpus}: no corpus there; write one with --make_corpus DIR first")
    import torch

    ngpu = 0 if args.dry_run else 1
    if ngpu and not torch.cuda.is_available():
        sys.exit("gpu_train.py: torch sees no GPU; run it on a GPU machine, or --dry_run on CPU")
    shutil.rmtree(args.work, ignore_errors=True)
    install_corpus(args.corpus, args.work / "data")
    print(f"device: {torch.cuda.get_device_name(0) if ngpu else 'cpu'}; torch {torch.__version__}"
          f"{'; dry run: nothing here is a measurement' if args.dry_run else ''}")

    grid_result = grid_row(args.work, ngpu, args.dry_run)
    print(f"the tiny grid through run.pl, every job on {ngpu} GPU(s): {grid_result['done']} of {grid_result['tasks']} tasks "
          f"trained, decoded and scored in {grid_result['seconds']:.0f} s (with the results table)")

    model, config = ("whisper_tiny_random", DRY_RUN_CONFIG) if args.dry_run else ("whisper_small_random", TRAIN_CONFIG)
    steps = "--num_iters_per_epoch 2 --max_epoch 2" if args.dry_run else f"--max_epoch {args.epochs}"
    print(f"\n{model}: the recipe's stage 3 ({config}, all four languages), {ngpu} GPU(s); each row printed "
          "when its training ends")
    print("| precision | steps | utterances/s | s of audio/s | vs fp32 | peak GPU memory (GiB) | training job (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    precisions = {"fp32": ("fp32", "")}
    if ngpu:  # ESPnet's --use_amp is a GPU option (bf16 where the GPU has it)
        precisions["bf16 autocast"] = ("bf16", " --use_amp true")
    base = None
    for label, (tag, amp) in precisions.items():
        r = training_row(args.work, model, config, tag, ngpu, steps + amp)
        base = base or r["utt_s"]
        print(f"| {label} | {r['steps']} | {r['utt_s']:.1f} | {r['audio_s']:.0f} | {r['utt_s'] / base:.2f}x | "
              f"{r['memory_gib']:.2f} | {r['seconds']:.0f} |", flush=True)
    print("(utterances/s and audio/s: median over the epochs after the first, from the trainer's per-epoch line; "
          "training job: the whole stage 3, model build and checkpoints included)")


if __name__ == "__main__":
    main()
