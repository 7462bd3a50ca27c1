#!/usr/bin/env python3
"""What batching costs a LID head's training epoch: crops in drawn order against crops batched by length.

One epoch of stage 4's training draws each utterance's random 1-5 s crop (espnet_ext.lid.train); a
batch pads its crops to its longest. Both rows below take the same epoch: the same utterances, the same
crops, the same head kind and initialisation, batch size, optimizer and threads; each is the median of
`--repeats` epochs (forward, backward, optimizer step) after one untimed warm-up epoch:

  drawn order:    batches cut from the epoch's draw as it comes (the training before 7 Dec 2026);
  length batches: `espnet_ext.lid.train.length_batches`, similar lengths together (the training now).

Each row also gives the share of the frames it computes on that are padding. The ratio is drawn order
over length batches (how many times faster an epoch is now).

Usage (after stage 4 of the default run, which caches the tap frames):
    .venv/bin/python bench/lid_training.py --feats_dir egs2/multilingual_lora/asr1/exp/whisper_base_all_r16/lid/feats
"""
import argparse
from pathlib import Path

import numpy as np
import torch

from common import median_seconds
from espnet_ext.lid.features import FrameFeatures, cached_tap_frames, label_indices
from espnet_ext.lid.heads import HEADS, make_head
from espnet_ext.lid.train import HeadTraining, crop, epoch_order, length_batches, set_statistics, train_batches
from espnet_ext.languages import LANGUAGES


def training_frames(feats_dir: Path) -> FrameFeatures:
    """Every training cache stage 4 left in `feats_dir` (train_*: whole utterances and stretches alone)."""
    caches = sorted(d for d in feats_dir.glob("train*") if (d / "feats.scp").is_file())
    if not caches:
        raise SystemExit(f"lid_training.py: no train*/feats.scp under {feats_dir}; run stage 4 first "
                         "(./run.sh --stage 4 --stop_stage 4), or give its --feats_dir")
    parts = [cached_tap_frames(None, d, 0, d) for d in caches]  # cached: no model is needed to read them
    return sum(parts[1:], parts[0])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--feats_dir", type=Path, required=True, help="stage 4's tap-frame cache (<exp>/lid/feats)")
    p.add_argument("--head", default="asp", choices=list(HEADS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    train, config = training_frames(args.feats_dir), HeadTraining()
    languages = [code for code in LANGUAGES if code in set(train.langs)]
    rng = np.random.default_rng(0)
    order = epoch_order(train.langs, config.balanced, rng)
    crops = [crop(train.frames[i], train.durations[i], config.crop, rng) for i in order]
    labels = label_indices(train.langs, languages)[order]
    lengths = np.array([len(c) for c in crops])
    rows = {"drawn order": [np.arange(s, min(s + config.batch_size, len(order)))
                            for s in range(0, len(order), config.batch_size)],
            "length batches": length_batches(lengths, config.batch_size, rng)}
    print(f"{len(order)} crops of {len(train.frames)} training items, {args.head} head, batch {config.batch_size}, "
          f"{args.threads} threads, median of {args.repeats} epochs after a warm-up")
    seconds = {}
    for name, batches in rows.items():
        torch.manual_seed(0)
        head = make_head(args.head, 0, languages, train.frames[0].shape[1])
        set_statistics(head, train)
        optimizer = torch.optim.Adam(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        head.train()
        seconds[name] = median_seconds(lambda: train_batches(head, crops, labels, batches, optimizer),
                                       args.repeats)
        computed = sum(len(b) * lengths[b].max() for b in batches)
        print(f"{name:>15}: {seconds[name]:6.2f} s per epoch, {100 * (1 - lengths.sum() / computed):4.1f}% of the "
              f"frames computed are padding")
    print(f"drawn order / length batches: {seconds['drawn order'] / seconds['length batches']:.2f}x")


if __name__ == "__main__":
    main()
