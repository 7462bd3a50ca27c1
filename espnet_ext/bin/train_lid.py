#!/usr/bin/env python3
"""Train language-ID heads on the encoder tap of a trained LoRA bank (stage 4 of the recipe).

Usage (the default run's bank; the tap layer is the bank layout's):
    python -m espnet_ext.bin.train_lid --model whisper_base --adapter_dir exp/whisper_base_all_r16/adapters \
        --train_dir data/train_all --dev_dir data/dev_all --test_dir data/test_all \
        --out_dir exp/whisper_base_all_r16/lid --heads mlp
    ... --heads all        # the five heads (linear mlp cnn bilstm asp) and their comparison

The tap's frames are extracted once per set into `<out_dir>/feats/<set>/` (Kaldi compressed matrices,
kaldiio) in the state the tap sees while decoding (a shared_below bank's shared adapter on, language
adapters off). Each head is trained on train (balanced languages, random 1-5 s crops), its epoch chosen
by dev accuracy, and evaluated on train, dev and test; it is saved in `<out_dir>/<head>/` (lid_config.json
+ lid_model.safetensors, which decode.py --lid_dir reads) with `eval.json`, `confusion_test.png` and
`reliability_test.png`. `<out_dir>/heads.md` / `heads.json` compare every head trained there so far.
"""
import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from espnet_ext.fileio import atomic_write_text
from espnet_ext.languages import LANGUAGES
from espnet_ext.lid.features import cached_tap_frames, label_indices, random_crops, speed
from espnet_ext.lid.heads import HEADS, make_head
from espnet_ext.lid.report import confusion_png, reliability_png
from espnet_ext.lid.train import SHORT_SECONDS, HeadTraining, evaluate, fit_head, predict

log = logging.getLogger("train_lid")
SPLITS = ("train", "dev", "test")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="whisper_base", help="registry name (python -m espnet_ext.models.registry)")
    p.add_argument("--model_path", default=None, help="local weights for models that need them")
    p.add_argument("--adapter_dir", type=Path, default=None,
                   help="<exp>/adapters of the bank to route; its layout gives the tap layer")
    p.add_argument("--layer", type=int, default=None, help="tap layer without --adapter_dir (the bare base)")
    for split in SPLITS:
        p.add_argument(f"--{split}_dir", type=Path, required=True, help=f"Kaldi {split} dir with utt2lang")
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--heads", default="mlp", help=f"comma-separated heads of {','.join(HEADS)}, or all")
    p.add_argument("--epochs", type=int, default=HeadTraining.epochs)
    p.add_argument("--batch_size", type=int, default=HeadTraining.batch_size)
    p.add_argument("--lr", type=float, default=HeadTraining.lr)
    p.add_argument("--crop", type=float, nargs=2, default=HeadTraining.crop, metavar=("MIN_S", "MAX_S"),
                   help="seconds of the random training crops")
    p.add_argument("--crop_eval", type=float, nargs=2, default=None, metavar=("MIN_S", "MAX_S"),
                   help="also evaluate on the test utterances cut to random crops of this many seconds, "
                        "encoded alone (LID accuracy only: a crop has no transcript), e.g. 1 2")
    p.add_argument("--speed_perturb", type=float, nargs="*", default=[],
                   help="add the training set at these speed factors (tempo and pitch: other voices), e.g. 0.9 1.1")
    p.add_argument("--train_fraction", type=float, default=1.0,
                   help="train on this share of the training utterances (the low-data condition)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return p


def _head_names(spec: str) -> List[str]:
    names = list(HEADS) if spec == "all" else [h.strip() for h in spec.split(",") if h.strip()]
    unknown = [h for h in names if h not in HEADS]
    if unknown or not names:
        raise SystemExit(f"train_lid.py: unknown --heads {unknown or spec!r}; choose from {', '.join(HEADS)} or all")
    return names


def _tap_layer(loaded, adapter_dir: Optional[Path], layer: Optional[int]) -> int:
    """Load the bank (if any) and put the model in the state the tap sees; the tap layer."""
    if adapter_dir is None:
        if layer is None:
            raise SystemExit("train_lid.py: give --adapter_dir (the bank's layout names the tap layer) or --layer")
        return layer
    from espnet_ext.bin.decode import load_adapters
    from espnet_ext.lora.inject import bank_info, route_for_tap

    load_adapters(loaded, adapter_dir)
    route_for_tap(loaded.asr_model)
    bank_layer = bank_info(loaded.asr_model).layout.tap_layer
    if layer is not None and layer != bank_layer:
        raise SystemExit(f"train_lid.py: --layer {layer}, but the bank in {adapter_dir} taps layer {bank_layer}")
    return bank_layer


def _row(kind: str, report: Dict, crops: List[str]) -> str:
    test = report["eval"]["test"]
    per_lang = " / ".join(f"{100 * v['accuracy']:.1f}" for v in test["per_language"].values())
    short = test[f"under_{SHORT_SECONDS:g}s"]
    crop_cells = "".join(f" {100 * report['eval'][c]['accuracy']:.1f} |" if c in report["eval"] else " |" for c in crops)
    return (f"| {kind} | {report['parameters'] / 1e3:.0f}k | {100 * report['eval']['train']['accuracy']:.1f} | "
            f"{100 * report['eval']['dev']['accuracy']:.1f} | {100 * test['accuracy']:.1f} | {per_lang} | "
            f"{100 * short['accuracy']:.1f} (n={short['n']}) |{crop_cells} {test['ece']:.3f} | "
            f"{report['train_seconds']:.0f} |")


def write_comparison(out_dir: Path) -> str:
    """heads.md / heads.json over every `<out_dir>/<head>/eval.json`."""
    reports = {kind: json.loads((out_dir / kind / "eval.json").read_text(encoding="utf-8"))
               for kind in HEADS if (out_dir / kind / "eval.json").is_file()}
    languages = next(iter(reports.values()))["languages"]
    crops = sorted({split for r in reports.values() for split in r["eval"] if split.startswith("test_crops")})
    header = (f"| head | parameters | train acc | dev acc | test acc | test {' / '.join(languages)} | "
              f"test < {SHORT_SECONDS:g} s |" + "".join(f" {c.replace('_', ' ')} |" for c in crops) +
              " test ECE | train s |\n|---|" + "---:|" * (8 + len(crops)) + "\n")
    table = header + "".join(_row(kind, r, crops) + "\n" for kind, r in reports.items())
    atomic_write_text(out_dir / "heads.md", table)
    atomic_write_text(out_dir / "heads.json", json.dumps(reports, indent=1) + "\n")
    return table


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    heads = _head_names(args.heads)
    for split in SPLITS:
        if not (getattr(args, f"{split}_dir") / "utt2lang").is_file():
            raise SystemExit(f"train_lid.py: {getattr(args, f'{split}_dir')}/utt2lang is missing; give a Kaldi dir "
                             "with utt2lang (stage 1 writes them)")
    from espnet_ext.models.registry import load_model

    loaded = load_model(args.model, model_path=args.model_path)
    layer = _tap_layer(loaded, args.adapter_dir, args.layer)
    loaded.asr_model.eval()
    features = {split: cached_tap_frames(loaded, getattr(args, f"{split}_dir"), layer, args.out_dir / "feats" / split)
                for split in SPLITS}
    evaluated = list(SPLITS)
    if args.crop_eval:
        name = f"test_crops_{args.crop_eval[0]:g}-{args.crop_eval[1]:g}s"
        features[name] = cached_tap_frames(loaded, args.test_dir, layer, args.out_dir / "feats" / name,
                                           transform=random_crops(tuple(args.crop_eval)))
        evaluated.append(name)
    languages = [code for code in LANGUAGES if code in set(features["train"].langs)]  # the table's order
    train = features["train"]
    for factor in args.speed_perturb:
        train = train + cached_tap_frames(loaded, args.train_dir, layer, args.out_dir / "feats" / f"train_sp{factor:g}",
                                          transform=speed(factor))
    if args.train_fraction < 1.0:
        keep = torch.randperm(len(train.utt_ids), generator=torch.Generator().manual_seed(args.seed))
        train = train.subset(sorted(keep[: max(len(languages), int(args.train_fraction * len(keep)))].tolist()))
    config = HeadTraining(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, crop=tuple(args.crop),
                          seed=args.seed)
    width = train.frames[0].shape[1]
    for kind in heads:
        head = make_head(kind, layer, languages, width)
        start = time.time()
        history = fit_head(head, train, features["dev"], config)
        seconds = time.time() - start
        head_dir = args.out_dir / kind
        posteriors = {split: predict(head, features[split]) for split in evaluated}
        report = {"languages": languages, "layer": layer, "parameters": sum(p.numel() for p in head.parameters()),
                  "train_seconds": seconds, "train_utterances": len(train.utt_ids), "history": history,
                  "eval": {split: evaluate(posteriors[split], features[split], languages) for split in evaluated}}
        head.save(head_dir, {"base_model": loaded.name, "base_fingerprint": loaded.fingerprint,
                             "adapter_dir": str(args.adapter_dir) if args.adapter_dir else None,
                             "train_dir": str(args.train_dir), "training": vars(config)})
        atomic_write_text(head_dir / "eval.json", json.dumps(report, indent=1) + "\n")
        labels = label_indices(features["test"].langs, languages)
        title = f"{kind} head, layer {layer}: test accuracy {100 * report['eval']['test']['accuracy']:.1f}%"
        confusion_png(report["eval"]["test"]["confusion"], languages, head_dir / "confusion_test.png", title)
        reliability_png(posteriors["test"], labels, head_dir / "reliability_test.png",
                        f"{kind} head: test ECE {report['eval']['test']['ece']:.3f}")
        log.info("%s head -> %s (dev %.1f%%, test %.1f%%, %.0f s)", kind, head_dir,
                 100 * report["eval"]["dev"]["accuracy"], 100 * report["eval"]["test"]["accuracy"], seconds)
    sys.stdout.write(write_comparison(args.out_dir))


if __name__ == "__main__":
    main()
