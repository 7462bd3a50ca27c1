#!/usr/bin/env python3
"""Decode time per utterance of each bank layout, with the routing decided by a LID head on the tap.

For every system (an exp dir's adapters + a LID head on its tap layer: a probe of espnet_ext.bin.lid_probe or a stage-4 head),
on the same test clips, weights, threads, batches and token limits (greedy):

- "oracle": the routing is known before the encoder pass (utt2lang), one pass: the floor;
- "tap":    the probe decides on the tap's states. Layouts above_tap and shared_below decide inside
            the one encoder pass; per_language must first run the bare encoder up to the tap (its lower
            blocks hold adapters too), then the routed pass: that bare pass is counted.

Prints per system: ms per utterance of both (median of --repeats after one warm-up run), their ratio,
the tap row against system (a)'s tap row (the first --system), and how often the probe's decision was
the utterance's language on these clips.

Usage (after stage 3 of the default (c) and of the per_language study config (a), and lid_probe on the
bare base and on (c)'s shared adapter; README, "Bank layouts"):
    E=egs2/multilingual_lora/asr1/exp
    .venv/bin/python bench/layout_decode.py --data_root egs2/multilingual_lora/asr1/data --per_lang 4 \
        --system a=$E/whisper_base_all_r16_per_language:$E/whisper_base_lid_probe/layer3 \
        --system c=$E/whisper_base_all_r16:$E/whisper_base_all_r16/lid_probe/layer3
"""
import argparse
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch

from common import Clip, load_clips, median_seconds
from espnet_ext.bin.decode import load_adapters
from espnet_ext.decode.search import SearchConfig
from espnet_ext.decode.transcribe import make_backend, transcribe_batch
from espnet_ext.lid.heads import load_head
from espnet_ext.lora.inject import bank_info
from espnet_ext.models.registry import load_model


def decode_all(backend, clips: List[Clip], batch_size: int, lid) -> List[str]:
    """Decode every clip (routing forced from the clip's language, or by `lid`); the languages chosen."""
    chosen = []
    for i in range(0, len(clips), batch_size):
        batch = clips[i : i + batch_size]
        langs = [lang for _, lang in batch] if lid is None else [None] * len(batch)
        chosen += [h.lang for h in transcribe_batch(backend, [a for a, _ in batch], langs, SearchConfig(), lid)]
    return chosen


def median_time(backend, clips, batch_size, lid, repeats: int) -> Tuple[float, List[str]]:
    """Median seconds of decoding every clip (after a warm-up), and the languages chosen."""
    chosen: List[str] = []

    def work() -> None:
        chosen[:] = decode_all(backend, clips, batch_size, lid)

    return median_seconds(work, repeats), chosen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_root", type=Path, required=True)
    p.add_argument("--system", action="append", required=True, help="LABEL=EXP_DIR:LID_PROBE_DIR (first = baseline)")
    p.add_argument("--per_lang", type=int, default=8)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    clips = load_clips(args.data_root, args.per_lang, longest_first=True)
    seconds = sum(len(a) for a, _ in clips) / 16000
    print(f"{len(clips)} test clips ({seconds:.1f} s of audio), batches of {args.batch_size}, greedy, "
          f"{args.threads} threads, median of {args.repeats} after a warm-up")
    rows = []
    for spec in args.system:
        label, _, paths = spec.partition("=")
        exp_dir, _, lid_dir = paths.partition(":")
        model = load_model("whisper_base")
        load_adapters(model, Path(exp_dir) / "adapters")
        model.asr_model.eval()
        lid = load_head(lid_dir, model.name, model.fingerprint)
        backend = make_backend(model, pad_to_30s=False)
        oracle, _ = median_time(backend, clips, args.batch_size, None, args.repeats)
        tapped, chosen = median_time(backend, clips, args.batch_size, lid, args.repeats)
        accuracy = np.mean([c == lang for c, (_, lang) in zip(chosen, clips)])
        rows.append((label, bank_info(model.asr_model).layout.kind, lid.layer, oracle, tapped, accuracy))
    n = len(clips)
    base_tap = rows[0][4]
    print(f"| system | layout | oracle ms/utt | tap-routed ms/utt | tap / oracle | tap vs ({rows[0][0]}) tap | "
          "probe picks the language |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, kind, layer, oracle, tapped, accuracy in rows:
        where = "bare pass + routed pass" if kind == "per_language" else "inside the pass"
        print(f"| ({label}) | {kind}, LID on layer {layer} ({where}) | {1000 * oracle / n:.0f} | "
              f"{1000 * tapped / n:.0f} | {tapped / oracle:.2f}x | {tapped / base_tap:.2f}x | {100 * accuracy:.1f}% |")


if __name__ == "__main__":
    main()
