#!/usr/bin/env python3
"""What batching, pooling and the scorer's width cost a LID head's training epoch: crops in drawn order,
crops batched by length, and (asp) its attention pooling by elementwise sums against matrix products,
and its frame scorer 128 wide against 64.

One epoch of stage 4's training draws each utterance's random 1-5 s crop (espnet_ext.lid.train); a
batch pads its crops to its longest. The rows below take the same epoch: the same utterances, the same
crops, the same head kind and initialisation, batch size, optimizer and threads; each is the median of
`--repeats` epochs (forward, backward, optimizer step) after one untimed warm-up epoch:

  drawn order:    batches cut from the epoch's draw as it comes (the training before 7 Dec 2026);
  length batches, pooled by sums (asp only): length batches, the asp head pooling by summing
                  attention x frames over [batch, frames, width] products (the training until 7 Dec);
  length batches, scorer 128 wide (asp only): length batches, the asp head scoring frames through a
                  128-wide layer (until 7 Dec; 64 now);
  length batches: `espnet_ext.lid.train.length_batches`, similar lengths together (the training now).

Each row also gives the share of the frames it computes on that are padding. The ratios are each row
over length batches (how many times faster an epoch is now).

Usage (after stage 4 of the default run, which caches the tap frames):
    .venv/bin/python bench/lid_training.py --feats_dir egs2/multilingual_lora/asr1/exp/whisper_base_all_r16/lid/feats
"""
import argparse
from functools import partial
from pathlib import Path

import numpy as np
import torch

from common import median_seconds
from espnet_ext.lid.features import FrameFeatures, label_indices, read_frame_cache
from espnet_ext.lid.heads import HEADS, ASPHead
from espnet_ext.lid.train import HeadTraining, crop, epoch_order, length_batches, set_statistics, train_batches
from espnet_ext.languages import LANGUAGES
from espnet_ext.models.whisper_forward import frame_mask


def training_frames(feats_dir: Path) -> FrameFeatures:
    """Every training cache stage 4 left in `feats_dir` (train_*: whole utterances and stretches alone)."""
    caches = sorted(d for d in feats_dir.glob("train*") if (d / "feats.scp").is_file())
    if not caches:
        raise SystemExit(f"lid_training.py: no train*/feats.scp under {feats_dir}; run stage 4 first "
                         "(./run.sh --stage 4 --stop_stage 4), or give its --feats_dir")
    parts = [read_frame_cache(d) for d in caches]
    return sum(parts[1:], parts[0])


class SummedASP(ASPHead):
    """The asp head as it pooled until 7 Dec 2026 (with its 128-wide scorer): the same numbers (to float32
    rounding) by elementwise products and sums."""

    def logits(self, hidden, lengths):
        x = self.standardise(hidden)
        mask = frame_mask(lengths.to(x.device), x.size(1))
        alpha = torch.softmax(self.score(x).squeeze(-1).masked_fill(~mask, float("-inf")), dim=-1)[..., None]
        mean = (alpha * x).sum(1)
        std = ((alpha * (x - mean[:, None]) ** 2).sum(1)).clamp_min(1e-6).sqrt()
        return self.out(torch.cat([mean, std], dim=-1))


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
    by_length = length_batches(lengths, config.batch_size, rng)
    rows = {"drawn order": ([np.arange(s, min(s + config.batch_size, len(order)))
                             for s in range(0, len(order), config.batch_size)], HEADS[args.head])}
    if args.head == "asp":
        rows["length batches, pooled by sums"] = (by_length, partial(SummedASP, attention=128))
        rows["length batches, scorer 128 wide"] = (by_length, partial(ASPHead, attention=128))
    rows["length batches"] = (by_length, HEADS[args.head])
    print(f"{len(order)} crops of {len(train.frames)} training items, {args.head} head, batch {config.batch_size}, "
          f"{args.threads} threads, median of {args.repeats} epochs after a warm-up")
    seconds = {}
    for name, (batches, kind) in rows.items():
        torch.manual_seed(0)
        head = kind(0, languages, train.frames[0].shape[1])
        set_statistics(head, train)
        optimizer = torch.optim.Adam(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        head.train()
        seconds[name] = median_seconds(lambda: train_batches(head, crops, labels, batches, optimizer),
                                       args.repeats)
        computed = sum(len(b) * lengths[b].max() for b in batches)
        print(f"{name:>30}: {seconds[name]:6.2f} s per epoch, {100 * (1 - lengths.sum() / computed):4.1f}% of the "
              f"frames computed are padding")
    for name in list(rows)[:-1]:
        print(f"{name} / length batches: {seconds[name] / seconds['length batches']:.2f}x")


if __name__ == "__main__":
    main()
