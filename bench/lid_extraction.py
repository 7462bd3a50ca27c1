#!/usr/bin/env python3
"""What running stage 4's tap-frame extraction side by side buys: the same caches extracted one after
another by one process on `--threads` threads, and by `--threads` forked one-thread processes at once
(espnet_ext.lid.features.extract_tap_caches, the default now).

Both rows extract the same caches (each `--data_dir` whole, and cut to 0.5-2 s stretches encoded
alone, as stage 4's training copies are) with the same model, bank, tap layer and batch size into
fresh directories; each is the median of `--repeats` runs after one untimed warm-up run. The ratio is
one after another over side by side (how many times sooner the caches are written now).

Usage (after stage 3 of the default run, from the recipe directory, whose data dirs these are):
    cd egs2/multilingual_lora/asr1
    ../../../.venv/bin/python ../../../bench/lid_extraction.py --adapter_dir exp/whisper_base_all_r16/adapters \
        --data_dir data/dev_all data/test_all
"""
import argparse
import shutil
import tempfile
from functools import partial
from pathlib import Path

import torch

from common import median_seconds
from espnet_ext.bin.train_lid import tap_layer
from espnet_ext.lid.features import TapCache, extract_tap_caches, random_crops
from espnet_ext.models.registry import load_model


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="whisper_base")
    p.add_argument("--adapter_dir", type=Path, help="the bank whose tap stage 4 reads")
    p.add_argument("--layer", type=int, help="tap layer without --adapter_dir (the bare base)")
    p.add_argument("--data_dir", type=Path, nargs="+", required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    layer = tap_layer(loaded, args.adapter_dir, args.layer)
    loaded.asr_model.eval()
    scratch = Path(tempfile.mkdtemp(prefix="lid_extraction_"))

    def extract(processes: int) -> None:
        shutil.rmtree(scratch, ignore_errors=True)
        caches = [TapCache(d, scratch / f"{d.name}{suffix}", transform) for d in args.data_dir
                  for suffix, transform in (("", None), ("_crops", partial(random_crops, (0.5, 2.0), seed=1)))]
        extract_tap_caches(loaded, layer, caches, processes=processes)

    rows = {f"one process, {args.threads} threads, one cache after another": 1,
            f"{args.threads} one-thread processes side by side": args.threads}
    print(f"tap layer {layer}; caches of {', '.join(str(d) for d in args.data_dir)}, whole and in 0.5-2 s "
          f"stretches; median of {args.repeats} runs after a warm-up")
    seconds = {}
    try:
        for name, processes in rows.items():
            seconds[name] = median_seconds(partial(extract, processes), args.repeats)
            print(f"{name:>55}: {seconds[name]:7.2f} s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    first, second = rows
    print(f"one after another / side by side: {seconds[first] / seconds[second]:.2f}x")


if __name__ == "__main__":
    main()
