#!/usr/bin/env python3
"""Choose the language-ID tap layer k: a linear probe on every encoder layer's mean-pooled states.

Usage (the bare base, as the bank layouts need it; recipe data dirs):
    python -m espnet_ext.bin.lid_probe --model whisper_base --train_dir data/train_all \
        --dev_dir data/dev_all --test_dir data/test_all --out_dir exp/whisper_base_lid_probe

With `--adapter_dir <exp>/adapters` of a bank whose layout has a shared adapter below the tap, the states
are those the tap sees there (shared adapter on, language adapters off), and the probe is trained on
its tap layer only.

Writes `<out_dir>/scan.json` and `scan.md` (train/dev/test accuracy per layer; k = best dev accuracy,
ties to the lower layer, test never used to choose), and the chosen layer's probe in
`<out_dir>/layer<k>/{lid_config.json,lid_model.safetensors}`, a head the tap can route with. The pooled
features are cached in `<out_dir>/features_<set>.npz`; a rerun reads them.
"""
import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from espnet_ext.bin.cli import exits_on_user_error, start_cli
from espnet_ext.fileio import atomic_open, atomic_write_text
from espnet_ext.languages import LANGUAGES
from espnet_ext.lid.features import PooledFeatures, label_indices, pooled_layer_features
from espnet_ext.lid.probe import choose_layer, fit_probe, scan_layers

log = logging.getLogger("lid_probe")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="whisper_base", help="registry name (python -m espnet_ext.models.registry)")
    p.add_argument("--model_path", default=None, help="local weights for models that need them")
    for split in ("train", "dev", "test"):
        p.add_argument(f"--{split}_dir", type=Path, required=True, help=f"Kaldi {split} dir with utt2lang")
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--adapter_dir", type=Path, default=None,
                   help="<exp>/adapters of a shared_below bank: probe the states its tap sees")
    p.add_argument("--steps", type=int, default=300, help="full-batch Adam steps per probe")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return p


def _features(loaded, data_dir: Path, cache: Path, batch_size: int) -> PooledFeatures:
    if cache.is_file():
        with np.load(cache) as f:
            layers = {int(k[5:]): f[k] for k in f.files if k.startswith("layer")}
            return PooledFeatures(list(f["utt_ids"]), list(f["langs"]), layers)
    features = pooled_layer_features(loaded, data_dir, batch_size)
    with atomic_open(cache, "wb") as f:
        np.savez(f, utt_ids=np.array(features.utt_ids), langs=np.array(features.langs),
                 **{f"layer{k}": v for k, v in features.layers.items()})
    return features


def _tap_layer_of(loaded, adapter_dir: Optional[Path]) -> Optional[int]:
    """With adapters: load the bank, shared adapter on, languages off; the layout's tap layer."""
    if adapter_dir is None:
        return None
    from espnet_ext.bin.decode import load_adapters
    from espnet_ext.lora.inject import bank_info, route_for_tap

    load_adapters(loaded, adapter_dir)
    layout = bank_info(loaded.asr_model).layout
    if layout.kind != "shared_below":
        raise SystemExit(f"lid_probe.py: the bank in {adapter_dir} has layout {layout.kind}; only shared_below "
                         "changes what the tap sees (probe the bare base without --adapter_dir)")
    route_for_tap(loaded.asr_model)
    return layout.tap_layer


def _table(results: Dict[int, Dict[str, float]], chosen: int) -> str:
    rows = ["| layer | train acc | dev acc | test acc |", "|---:|---:|---:|---:|"]
    for layer, acc in sorted(results.items()):
        mark = " (chosen)" if layer == chosen else ""
        rows.append(f"| {layer}{mark} | {100 * acc['train']:.1f} | {100 * acc['dev']:.1f} | {100 * acc['test']:.1f} |")
    return "\n".join(rows) + "\n"


@exits_on_user_error
def main(argv=None) -> None:
    args = start_cli(get_parser(), argv)
    for split in ("train", "dev", "test"):
        if not (getattr(args, f"{split}_dir") / "utt2lang").is_file():
            raise SystemExit(f"lid_probe.py: {getattr(args, f'{split}_dir')}/utt2lang is missing; give a Kaldi dir "
                             "with utt2lang (stage 1 writes them)")
    from espnet_ext.models.registry import load_model

    loaded = load_model(args.model, model_path=args.model_path)
    tap_layer = _tap_layer_of(loaded, args.adapter_dir)
    loaded.asr_model.eval()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    splits = {split: _features(loaded, getattr(args, f"{split}_dir"), args.out_dir / f"features_{split}.npz",
                               args.batch_size) for split in ("train", "dev", "test")}
    if tap_layer is not None:
        for features in splits.values():
            features.layers = {tap_layer: features.layers[tap_layer]}
    languages = [code for code in LANGUAGES if code in set(splits["train"].langs)]  # the table's order
    results = scan_layers(splits["train"], splits["dev"], splits["test"], languages, args.steps)
    chosen = choose_layer(results)
    table = _table(results, chosen)
    atomic_write_text(args.out_dir / "scan.json", json.dumps(
        {"model": loaded.name, "adapter_dir": str(args.adapter_dir) if args.adapter_dir else None,
         "languages": languages, "chosen_layer": chosen,
         "accuracy": {str(k): v for k, v in sorted(results.items())}}, indent=1) + "\n")
    atomic_write_text(args.out_dir / "scan.md", table)
    x = splits["train"].layers[chosen]
    probe = fit_probe(chosen, languages, x, label_indices(splits["train"].langs, languages), steps=args.steps)
    probe.save(args.out_dir / f"layer{chosen}", {"base_model": loaded.name, "base_fingerprint": loaded.fingerprint,
                                                 "adapter_dir": str(args.adapter_dir) if args.adapter_dir else None,
                                                 "train_dir": str(args.train_dir), "steps": args.steps})
    sys.stdout.write(table)
    log.info("tap layer %d (best dev accuracy); probe in %s", chosen, args.out_dir / f"layer{chosen}")


if __name__ == "__main__":
    main()
