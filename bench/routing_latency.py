#!/usr/bin/env python3
"""What routing costs at decode time: the LID head and the routers against oracle routing, and a mixed-
language batch against the same utterances decoded per language with the adapter merged.

On the same test clips, weights, threads, batches and token limits (greedy), median of --repeats after
a warm-up, for one bank (an exp dir's adapters) and one LID head on its tap:

- "oracle": the routing known before the encoder pass (utt2lang): the baseline of every row below;
- one row per LID router (hard, soft, threshold, hierarchical): the head decides on the tap's states
  inside the pass (a per_language bank first runs a bare pass up to the tap, counted here); the row's
  overhead is its time minus oracle's, per utterance and as a share of oracle's decode time. Two
  medians of ~1 s per utterance differ by noise of a few ms, so
- "head + router alone" times the part routing adds, in isolation: the head on the tap states of the
  same batches, the router, and the plan the bank computes from the weights.
- "merged per language": each language's clips in batches of their own, the adapter merged into the
  base weights (no bank path at all, the cheapest a single-language server gets), against "oracle"'s
  mixed-language batches of the same clips.

Usage (after stages 3 and 4 of the default run):
    E=egs2/multilingual_lora/asr1/exp
    .venv/bin/python bench/routing_latency.py --data_root egs2/multilingual_lora/asr1/data --per_lang 4 \
        --exp_dir $E/whisper_base_all_r16 --lid_dir $E/whisper_base_all_r16/lid/asp
"""
import argparse
from pathlib import Path
from typing import List

import torch

from common import Clip, load_clips, median_seconds
from espnet_ext.bin.decode import load_adapters
from espnet_ext.data.audio import pad_batch
from espnet_ext.decode.search import SearchConfig
from espnet_ext.decode.transcribe import make_backend, transcribe_batch
from espnet_ext.lid.heads import load_head
from espnet_ext.lora.inject import (adapter_names, bank_info, merge_adapter, route_for_tap, set_language_routing,
                                    unmerge_all)
from espnet_ext.models.registry import load_model
from espnet_ext.models.whisper_forward import Tap
from espnet_ext.routing.routers import ROUTINGS, bank_weights, make_router

LID_ROUTINGS = [name for name, kind in ROUTINGS.items() if kind.source == "lid_head"]


def batches(clips: List[Clip], size: int) -> List[List[Clip]]:
    return [clips[i : i + size] for i in range(0, len(clips), size)]


def decode(backend, groups: List[List[Clip]], lid=None, router=None) -> None:
    for batch in groups:
        langs = [lang for _, lang in batch] if lid is None else [None] * len(batch)
        transcribe_batch(backend, [a for a, _ in batch], langs, SearchConfig(), lid, router)


def head_and_router(model, lid, tap_states, router) -> None:
    """The work routing adds to a pass: the head on the tap states, the router, the bank's plan."""
    for hidden, lengths in tap_states:
        routing = router(lid(hidden, lengths), lid.languages)
        set_language_routing(model, bank_weights(routing, lid.languages, adapter_names(model)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_root", type=Path, required=True)
    p.add_argument("--exp_dir", type=Path, required=True, help="exp dir with adapters/")
    p.add_argument("--lid_dir", type=Path, required=True, help="a LID head on the bank's tap (stage 4)")
    p.add_argument("--per_lang", type=int, default=4)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    clips = load_clips(args.data_root, args.per_lang, longest_first=True)
    n = len(clips)
    model = load_model("whisper_base")
    load_adapters(model, args.exp_dir / "adapters")
    model.asr_model.eval()
    lid = load_head(args.lid_dir, model.name, model.fingerprint)
    backend = make_backend(model, pad_to_30s=False)
    layout = bank_info(model.asr_model).layout
    mixed = batches(clips, args.batch_size)
    print(f"{n} test clips ({sum(len(a) for a, _ in clips) / 16000:.1f} s of audio), batches of "
          f"{args.batch_size}, greedy, {args.threads} threads, median of {args.repeats} after a warm-up; bank "
          f"{args.exp_dir.name} (layout {layout.kind}, tap layer {layout.tap_layer}), {lid.kind} head")
    with torch.no_grad():
        oracle = median_seconds(lambda: decode(backend, mixed), args.repeats)
        rows = [("oracle (routing known before the pass)", oracle)]
        for name in LID_ROUTINGS:
            router = make_router(name)
            rows.append((f"{name} (head on the tap, in the pass)",
                         median_seconds(lambda: decode(backend, mixed, lid, router), args.repeats)))
        route_for_tap(model.asr_model)
        tap_states = []
        for batch in mixed:
            speech, lengths = pad_batch([a for a, _ in batch])
            out = model.family.encode(model.asr_model, speech, lengths, False, tap=Tap(lid.layer, stop=True))
            tap_states.append((out.tapped, out.lengths))
        alone = median_seconds(lambda: head_and_router(model.asr_model, lid, tap_states, make_router("soft")),
                               args.repeats)
        by_lang = {}
        for audio, lang in clips:
            by_lang.setdefault(lang, []).append((audio, lang))

        def merged_per_language() -> None:
            for lang, own in by_lang.items():
                merge_adapter(model.asr_model, lang)
                try:  # a merged bank layer computes its base weight only, whatever the routing says
                    decode(backend, batches(own, args.batch_size))
                finally:
                    unmerge_all(model.asr_model)

        merged = median_seconds(merged_per_language, args.repeats)
    print("| row | ms/utt | overhead vs oracle, ms/utt | overhead / oracle decode time |")
    print("|---|---:|---:|---:|")
    for label, seconds in rows:
        extra = 1000 * (seconds - oracle) / n
        print(f"| {label} | {1000 * seconds / n:.0f} | {extra:+.1f} | {100 * (seconds - oracle) / oracle:+.2f}% |")
    print(f"| head + router alone (soft; same batches' tap states) | {1000 * alone / n:.2f} | {1000 * alone / n:+.2f} "
          f"| {100 * alone / oracle:+.2f}% |")
    print(f"\nmixed-language batches (oracle row) / merged per language: {oracle / merged:.2f}x "
          f"({1000 * oracle / n:.0f} vs {1000 * merged / n:.0f} ms/utt)")


if __name__ == "__main__":
    main()
