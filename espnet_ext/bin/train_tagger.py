#!/usr/bin/env python3
"""Train the LID frame tagger on code-switched speech (stage 4 of the recipe, with --codeswitch true).

The tagger (espnet_ext.lid.heads.TaggerHead) gives every tap frame of one encoder pass its language
posteriors: the track the code-switched sets, `espnet-lora-transcribe` and the demo cut into
segments (espnet_ext.lid.segments). It is trained on code-switched sets built from the training
sentences and voices (`local/make_codeswitch.py --split train`), each frame labelled with the
language of its `segments_lang` segment, and its epoch chosen by frame accuracy on the dev sets
(`--split dev`); the test sets stay for the report.

Usage (the default run's bank):
    python -m espnet_ext.bin.train_tagger --model whisper_base --adapter_dir exp/whisper_base_all_r16/adapters \\
        --train_dir data/train_cs_inter data/train_cs_intra data/train_cs_rapid \\
        --dev_dir data/dev_cs_inter data/dev_cs_intra data/dev_cs_rapid --out_dir exp/whisper_base_all_r16/lid/tagger

The tap's frames are cached in `<feats_dir>/<dir name>/` (default: `<out_dir>/../feats`, stage 4's cache, so
the LID heads' and the tagger's share one place) in the state the tap sees while decoding. Writes
`<out_dir>/lid_config.json` + `lid_model.safetensors` (loaded like any LID head: `--lid_dir`) and `eval.json`
(each epoch's loss and dev frame accuracy).
"""
import argparse
import json
import logging
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from espnet_ext.bin.cli import exits_on_user_error, start_cli
from espnet_ext.data.kaldi import DataDirError, read_segments_lang
from espnet_ext.fileio import atomic_write_text
from espnet_ext.languages import LANGUAGES
from espnet_ext.data.kaldi import LanguageSegment
from espnet_ext.lid.features import FrameFeatures, TapCache, extract_tap_caches, label_indices, read_frame_cache
from espnet_ext.lid.heads import TaggerHead
from espnet_ext.lid.segments import language_at
from espnet_ext.lid.train import TaggerTraining, fit_tagger

log = logging.getLogger("train_tagger")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="whisper_base", help="registry name (python -m espnet_ext.models.registry)")
    p.add_argument("--model_path", default=None, help="local weights for models that need them")
    p.add_argument("--adapter_dir", type=Path, default=None, help="the bank whose tap the tagger reads")
    p.add_argument("--layer", type=int, default=None, help="the tap layer (default: the bank layout's)")
    p.add_argument("--train_dir", type=Path, nargs="+", required=True, help="code-switched dirs with segments_lang")
    p.add_argument("--dev_dir", type=Path, nargs="+", required=True, help="code-switched dirs with segments_lang")
    p.add_argument("--out_dir", type=Path, required=True, help="<exp>/lid/tagger")
    p.add_argument("--feats_dir", type=Path, default=None, help="tap-frame cache (default: <out_dir>/../feats)")
    defaults = TaggerTraining()
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--threads", type=int, default=0)
    return p


def labelled(caches: List[TapCache], truth: Dict[Path, Dict[str, List[LanguageSegment]]],
             languages: List[str]) -> Tuple[FrameFeatures, List[np.ndarray]]:
    """The cached frames of code-switched dirs and each frame's language index, from their segments_lang
    (`truth`, by data dir)."""
    parts, labels = [], []
    for cache in caches:
        features, segments = read_frame_cache(cache.cache_dir), truth[cache.data_dir]
        parts.append(features)
        labels += [label_indices(language_at(segments[utt], len(frames)), languages, str(cache.data_dir))
                   for utt, frames in zip(features.utt_ids, features.frames)]
    return sum(parts[1:], parts[0]), labels


@exits_on_user_error
def main(argv=None) -> None:
    args = start_cli(get_parser(), argv)
    try:  # every dir's truth read before the model loads: a missing segments_lang fails in a second
        truth = {d: read_segments_lang(d) for d in args.train_dir + args.dev_dir}
    except DataDirError as err:
        raise SystemExit(f"train_tagger.py: {err}")
    spoken = {seg.lang for by_utt in truth.values() for segs in by_utt.values() for seg in segs}
    languages = [code for code in LANGUAGES if code in spoken]  # the language table's order, as the heads'
    feats_dir = args.feats_dir or args.out_dir.parent / "feats"
    caches = {split: [TapCache(d, feats_dir / d.name) for d in getattr(args, f"{split}_dir")]
              for split in ("train", "dev")}
    from espnet_ext.bin.train_lid import tap_layer
    from espnet_ext.models.registry import load_model

    loaded = load_model(args.model, model_path=args.model_path)
    layer = tap_layer(loaded, args.adapter_dir, args.layer)
    loaded.asr_model.eval()
    extract_tap_caches(loaded, layer, caches["train"] + caches["dev"], processes=torch.get_num_threads())
    train, train_labels = labelled(caches["train"], truth, languages)
    dev, dev_labels = labelled(caches["dev"], truth, languages)
    config = TaggerTraining(epochs=args.epochs, seed=args.seed)
    tagger = TaggerHead(layer, languages, train.frames[0].shape[1])
    start = time.time()
    history = fit_tagger(tagger, train, train_labels, dev, dev_labels, config)
    seconds = time.time() - start
    best = max(row["dev_frame_accuracy"] for row in history)
    tagger.save(args.out_dir, {"base_model": loaded.name, "base_fingerprint": loaded.fingerprint,
                               "adapter_dir": str(args.adapter_dir) if args.adapter_dir else None,
                               "train_dir": [str(d) for d in args.train_dir], "training": vars(config)})
    report = {"languages": languages, "layer": layer, "parameters": sum(p.numel() for p in tagger.parameters()),
              "train_seconds": seconds, "train_utterances": len(train.utt_ids), "dev_frame_accuracy": best,
              "history": history}
    atomic_write_text(args.out_dir / "eval.json", json.dumps(report, indent=1) + "\n")
    log.info("frame tagger -> %s (dev frame accuracy %.1f%%, %d utterances, %.0f s)", args.out_dir, 100 * best,
             len(train.utt_ids), seconds)


if __name__ == "__main__":
    main()
