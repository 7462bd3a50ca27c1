#!/usr/bin/env python3
"""Train language-ID heads on the encoder tap of a trained LoRA bank (stage 4 of the recipe).

Usage (the default run's bank; the tap layer is the bank layout's):
    python -m espnet_ext.bin.train_lid --model whisper_base --adapter_dir exp/whisper_base_all_r16/adapters \
        --train_dir data/train_all data/train_en --dev_dir data/dev_all data/dev_en \
        --test_dir data/test_all data/test_en --oos_dir data/test_oos \
        --out_dir exp/whisper_base_all_r16/lid
    ... (the default: --heads asp --members 3, three asp heads from seeds 0, 1, 2, posteriors averaged)
    ... --heads all --members 1   # the five heads (linear mlp cnn bilstm asp), one seed each, compared

Each split may join several data dirs (the adapters' languages and the LID-only English class); the
classes are the languages found in train, in the language table's order. `--oos_dir` holds clips of
languages outside the classes (stage 1's `test_oos`): the report says how often each is routed
confidently (top posterior >= the threshold router's tau) to an in-set adapter. Each head's tau is set
on dev (espnet_ext.lid.train.dev_tau) and saved with it, as are the LID-only classes' thresholds.

The tap's frames are extracted once per data dir into `<feats_dir>/<dir name>/` (default `<out_dir>/feats`; heads
trained into other out dirs on the same bank may share one, as the robustness study's do) (float16
matrices in a kaldiio ark/scp) in the state the tap sees while decoding (a shared_below bank's shared adapter on, language
adapters off), by one forked one-thread process per --threads thread, side by side. Each head is trained on train (balanced languages, random 1-5 s crops of each whole
utterance's frames, and --alone_crops copies of the training audio cut to 0.5-2 s stretches encoded alone), its epoch chosen
by dev accuracy, and evaluated on train, dev and test; it is saved in `<out_dir>/<head>/` (lid_config.json
+ lid_model.safetensors, which decode.py --lid_dir reads) with `eval.json`, `confusion_test.png` and
`reliability_test.png`. `<out_dir>/heads.md` / `heads.json` compare every head trained there so far.
"""
import argparse
import json
import logging
import sys
import time
from functools import partial
from pathlib import Path
from typing import Dict, List, Optional

import torch

from espnet_ext.bin.cli import exits_on_user_error, start_cli
from espnet_ext.fileio import atomic_write_text
from espnet_ext.languages import ADAPTER_LANGUAGES, LANGUAGES, LID_ONLY_LANGUAGES
from espnet_ext.data.kaldi import read_data_dir
from espnet_ext.lid.features import (
    FrameFeatures, TapCache, channels, extract_tap_caches, label_indices, random_crops, read_frame_cache, speed,
)
from espnet_ext.lid.heads import DEFAULT_HEAD, DEFAULT_MEMBERS, HEADS, make_head
from espnet_ext.lid.report import confusion_png, reliability_png
from espnet_ext.lid.train import (
    SHORT_SECONDS, TAU_PRECISION, HeadTraining, dev_tau, evaluate, evaluate_out_of_set, fit_head, lid_only_thresholds,
    predict,
)
from espnet_ext.routing.routers import HardRouter

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
        p.add_argument(f"--{split}_dir", type=Path, nargs="+", required=True,
                       help=f"Kaldi {split} dir(s) with utt2lang, joined")
    p.add_argument("--oos_dir", type=Path, default=None,
                   help="Kaldi dir of out-of-set languages (never trained on): how often each is routed confidently")
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--feats_dir", type=Path, help="the tap frames' cache (default: <out_dir>/feats); share it only "
                   "between heads on the same --adapter_dir")
    p.add_argument("--heads", default=DEFAULT_HEAD, help=f"comma-separated heads of {','.join(HEADS)}, or all")
    p.add_argument("--epochs", type=int, default=HeadTraining.epochs)
    p.add_argument("--batch_size", type=int, default=HeadTraining.batch_size)
    p.add_argument("--lr", type=float, default=HeadTraining.lr)
    p.add_argument("--crop", type=float, nargs=2, default=HeadTraining.crop, metavar=("MIN_S", "MAX_S"),
                   help="seconds of the random training crops")
    p.add_argument("--crop_eval", type=float, nargs=2, default=None, metavar=("MIN_S", "MAX_S"),
                   help="also evaluate on the test utterances cut to random crops of this many seconds, "
                        "encoded alone (LID accuracy only: a crop has no transcript), e.g. 1 2")
    p.add_argument("--alone_crops", type=int, default=2,
                   help="add this many copies of the training set, each utterance cut to a new random "
                        "--alone_crop_seconds stretch encoded alone (what short utterances and the 1 s windows of "
                        "the language-over-time track look like; --crop cuts the whole utterance's frames); "
                        "2 is the default from the README's comparison of 0, 2 and 4, ~1 min of extraction")
    p.add_argument("--alone_crop_seconds", type=float, nargs=2, default=(0.5, 2.0), metavar=("MIN_S", "MAX_S"),
                   help="seconds of the --alone_crops stretches")
    p.add_argument("--speed_perturb", type=float, nargs="*", default=[],
                   help="add the training set at these speed factors (tempo and pitch: other voices), e.g. 0.9 1.1")
    p.add_argument("--channels", nargs="*", default=[],
                   help="add one copy of the training set with each utterance through one of these channels "
                        "(local/make_degraded.py's conditions, drawn per utterance), e.g. tel mp3 opus reverb snr10")
    p.add_argument("--eval_dir", type=Path, nargs="*", default=[],
                   help="also evaluate on these Kaldi dirs, each reported on its own under its name (e.g. the "
                        "degraded test sets)")
    p.add_argument("--train_fraction", type=float, default=1.0,
                   help="train on this share of the training utterances (the low-data condition)")
    p.add_argument("--members", type=int, default=DEFAULT_MEMBERS,
                   help="train each head this many times, from --seed, --seed + 1, ..., and save them as one head "
                        "averaging their posteriors (a seed ensemble)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return p


def _head_names(spec: str) -> List[str]:
    names = list(HEADS) if spec == "all" else [h.strip() for h in spec.split(",") if h.strip()]
    unknown = [h for h in names if h not in HEADS]
    if unknown or not names:
        raise SystemExit(f"train_lid.py: unknown --heads {unknown or spec!r}; choose from {', '.join(HEADS)} or all")
    return names


def tap_layer(loaded, adapter_dir: Optional[Path], layer: Optional[int]) -> int:
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
    members = report.get("members", 1)
    name = kind if members == 1 else f"{kind} x{members}"
    return (f"| {name} | {report['parameters'] / 1e3:.0f}k | {100 * report['eval']['train']['accuracy']:.1f} | "
            f"{100 * report['eval']['dev']['accuracy']:.1f} | {100 * test['accuracy']:.1f} | {per_lang} | "
            f"{100 * short['accuracy']:.1f} (n={short['n']}) |{crop_cells} {test['ece']:.3f} | "
            f"{report['train_seconds']:.0f} |")


def _out_of_set_table(reports: Dict[str, Dict]) -> str:
    """Per out-of-set language and head: % routed confidently to an in-set adapter (lower is better)."""
    with_oos = {kind: r["out_of_set"] for kind, r in reports.items() if "out_of_set" in r}
    first = next(iter(with_oos.values()))
    langs = [lang for lang in LANGUAGES if lang in first]  # the language table's order
    columns = " | ".join(f"{lang} (n={first[lang]['n']})" for lang in langs)
    rows = "".join(f"| {kind} | " + " | ".join(f"{100 * oos[lang]['confident_adapter']:.0f}" for lang in langs) + " |\n"
                   for kind, oos in with_oos.items())
    return ("\nOut-of-set clips routed confidently (top posterior >= the head's tau, after the LID-only "
            "thresholds) to an in-set adapter, %:\n\n"
            f"| head | {columns} |\n|---|{'---:|' * len(langs)}\n{rows}")


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
    taus = {kind: r["tau"] for kind, r in reports.items() if "tau" in r}
    if taus:
        table += (f"\nThreshold router's tau (set on dev: the lowest top posterior above which dev is "
                  f"{100 * TAU_PRECISION:g}% right): " + ", ".join(f"{kind} {t:.2f}" for kind, t in taus.items()) + "\n")
    thresholds = {kind: r["lid_only_min"] for kind, r in reports.items() if r.get("lid_only_min")}
    if thresholds:
        table += ("\nLID-only classes win a routing only at or above (the lowest posterior of a dev utterance of "
                  "theirs): " + "; ".join(f"{kind} " + ", ".join(f"{lang} {t:.2f}" for lang, t in th.items())
                                         for kind, th in thresholds.items()) + "\n")
    if any("out_of_set" in r for r in reports.values()):
        table += _out_of_set_table(reports)
    atomic_write_text(out_dir / "heads.md", table)
    atomic_write_text(out_dir / "heads.json", json.dumps(reports, indent=1) + "\n")
    return table


@exits_on_user_error
def main(argv=None) -> None:
    args = start_cli(get_parser(), argv)
    heads = _head_names(args.heads)
    if args.members < 1:
        raise SystemExit(f"train_lid.py: --members {args.members}; give 1 (one head) or more (a seed ensemble)")
    dirs = {split: getattr(args, f"{split}_dir") for split in SPLITS}
    if args.oos_dir is not None:
        dirs["out_of_set"] = [args.oos_dir]
    by_name: Dict[str, Path] = {}
    feats_dir = args.feats_dir or args.out_dir / "feats"
    for data_dir in [d for group in dirs.values() for d in group] + list(args.eval_dir):
        if not (data_dir / "utt2lang").is_file():
            raise SystemExit(f"train_lid.py: {data_dir}/utt2lang is missing; give a Kaldi dir with utt2lang "
                             "(stage 1 writes them)")
        if by_name.setdefault(data_dir.name, data_dir).resolve() != data_dir.resolve():
            raise SystemExit(f"train_lid.py: {by_name[data_dir.name]} and {data_dir} would share the feature cache "
                             f"{feats_dir}/{data_dir.name}: rename one")
    langs = {split: [u.lang for d in group for u in read_data_dir(d)] for split, group in dirs.items()}
    languages = [code for code in LANGUAGES if code in set(langs["train"])]  # the table's order
    adapters = [lang for lang in languages if lang in ADAPTER_LANGUAGES]
    for split in ("dev", "test"):  # named here, where the dirs are known, not deep inside the heads' training
        label_indices(langs[split], languages, f"--{split}_dir {' '.join(map(str, dirs[split]))}")
    seen = sorted(set(langs.get("out_of_set", [])) & set(languages))
    if seen:
        raise SystemExit(f"train_lid.py: {args.oos_dir} holds languages the heads are trained on ({seen}); "
                         "--oos_dir must hold other languages only")
    if args.channels:
        channels(args.channels)  # unknown condition names fail here, before any extraction

    def caches(group: List[Path], suffix: str = "", transform=None) -> List[TapCache]:
        return [TapCache(d, feats_dir / f"{d.name}{suffix}", transform) for d in group]

    sets = {split: caches(group) for split, group in dirs.items()}  # each read as one FrameFeatures
    evaluated = list(SPLITS)
    for data_dir in args.eval_dir:
        sets[data_dir.name] = caches([data_dir])
        evaluated.append(data_dir.name)
    if args.crop_eval:
        suffix = f"_crops_{args.crop_eval[0]:g}-{args.crop_eval[1]:g}s"
        sets["test" + suffix] = caches(args.test_dir, suffix, partial(random_crops, tuple(args.crop_eval)))
        evaluated.append("test" + suffix)
    # copies of the training set, each its own cache (the alone crops' each its own seed: new stretches)
    training_copies = [caches(args.train_dir, f"_sp{factor:g}", partial(speed, factor)) for factor in args.speed_perturb]
    if args.channels:
        training_copies.append(caches(args.train_dir, f"_channels_{'-'.join(args.channels)}",
                                      partial(channels, args.channels, seed=args.seed)))
    low, high = args.alone_crop_seconds
    training_copies += [caches(args.train_dir, f"_crops_{low:g}-{high:g}s_{copy}",
                               partial(random_crops, (low, high), seed=args.seed + copy))
                        for copy in range(1, args.alone_crops + 1)]
    from espnet_ext.models.registry import load_model

    loaded = load_model(args.model, model_path=args.model_path)
    layer = tap_layer(loaded, args.adapter_dir, args.layer)
    loaded.asr_model.eval()
    extract_tap_caches(loaded, layer, [c for group in [*sets.values(), *training_copies] for c in group],
                       processes=torch.get_num_threads())

    def read(group: List[TapCache]) -> FrameFeatures:
        parts = [read_frame_cache(c.cache_dir) for c in group]
        return sum(parts[1:], parts[0])

    features = {name: read(group) for name, group in sets.items()}
    train = sum((read(group) for group in training_copies), features["train"])
    if args.train_fraction < 1.0:
        keep = torch.randperm(len(train.utt_ids), generator=torch.Generator().manual_seed(args.seed))
        train = train.subset(sorted(keep[: max(len(languages), int(args.train_fraction * len(keep)))].tolist()))
    config = HeadTraining(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, crop=tuple(args.crop),
                          seed=args.seed)
    width = train.frames[0].shape[1]
    for kind in heads:
        head = make_head(kind, layer, languages, width, members=args.members)
        start = time.time()
        history = fit_head(head, train, features["dev"], config)
        seconds = time.time() - start
        head_dir = args.out_dir / kind
        posteriors = {split: predict(head, features[split]) for split in evaluated}
        report = {"languages": languages, "layer": layer, "members": args.members,
                  "parameters": sum(p.numel() for p in head.parameters()),
                  "train_seconds": seconds, "train_utterances": len(train.utt_ids), "history": history,
                  "eval": {split: evaluate(posteriors[split], features[split], languages) for split in evaluated}}
        report["lid_only_min"] = lid_only_thresholds(posteriors["dev"], features["dev"].langs, languages,
                                                     LID_ONLY_LANGUAGES)
        report["tau"] = dev_tau(posteriors["dev"], features["dev"].langs, languages)
        if "out_of_set" in features:  # as the routers see them: a LID-only class below its threshold dropped
            guarded = HardRouter(lid_only_min=report["lid_only_min"]).guard_lid_only(
                torch.from_numpy(predict(head, features["out_of_set"])), languages).numpy()
            report["out_of_set"] = evaluate_out_of_set(guarded, features["out_of_set"].langs, languages, adapters,
                                                       report["tau"])
        head.save(head_dir, {"base_model": loaded.name, "base_fingerprint": loaded.fingerprint,
                             "adapter_dir": str(args.adapter_dir) if args.adapter_dir else None,
                             "train_dir": [str(d) for d in args.train_dir], "training": vars(config),
                             "lid_only_min": report["lid_only_min"], "tau": report["tau"]})
        atomic_write_text(head_dir / "eval.json", json.dumps(report, indent=1) + "\n")
        labels = label_indices(features["test"].langs, languages)
        title = f"{kind} head, layer {layer}: test accuracy {100 * report['eval']['test']['accuracy']:.1f}%"
        confusion_png(report["eval"]["test"]["confusion"], languages, head_dir / "confusion_test.png", title)
        reliability_png(posteriors["test"], labels, head_dir / "reliability_test.png",
                        f"{kind} head: test ECE {report['eval']['test']['ece']:.3f}")
        log.info("%s head -> %s (dev %.1f%%, test %.1f%%, %.0f s)", kind, head_dir,
                 100 * report["eval"]["dev"]["accuracy"], 100 * report["eval"]["test"]["accuracy"], seconds)
        for data_dir in args.eval_dir:
            log.info("%s head on %s: %.1f%%", kind, data_dir, 100 * report["eval"][data_dir.name]["accuracy"])
    sys.stdout.write(write_comparison(args.out_dir))


if __name__ == "__main__":
    main()
