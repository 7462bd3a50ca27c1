"""Export a finished training: one PEFT-like directory per language, or the fully fine-tuned model.

    <exp>/adapters/<lang>/{adapter_config.json, adapter_model.safetensors}   (--finetune lora)
    <exp>/adapters/shared/...    the shared adapter below the tap, for lora_conf.layout shared_below
    <exp>/full_model/{model_config.json, model.safetensors}                  (--finetune full)

The epoch to export is read from the reporter inside checkpoint.pth, not from ESPnet's symlinks
(`valid.loss.best.pth`, ...), which a killed run may have left unlinked:

- "best":   the best epoch by the first `best_model_criterion` of the training config;
- "latest": the last finished epoch;
- "ave":    ESPnet's n-best average for that criterion (`<phase>.<key>.ave.pth`). It averages A and B
            separately, which is not the average of the deltas B A; use it knowingly.

Each exported config records the base (name + fingerprint of the weights training started from), the
training and validation data, the epoch and optimizer steps behind it, its losses, the seed, and
whether it was trained on the 30 s window, so decoding can match the input length it was trained on;
an adapter's config adds rank/alpha/targets (from the bank) and its language
(espnet_ext/lora/adapter_files.py), the full model's its parameter count (espnet_ext/models/finetuned.py).
"""
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

import torch
import yaml

from espnet_ext.lora.adapter_files import save_adapter
from espnet_ext.lora.inject import SHARED, shared_banks
from espnet_ext.models.espnet_import import import_espnet_module
from espnet_ext.models.finetuned import save_finetuned
from espnet_ext.train.model import FullFinetuneModel, LoRARoutedModel, TrainingModel

EXPORT_CHOICES = ("best", "latest", "ave")
FULL_MODEL_DIR = "full_model"


def read_training_config(exp_dir: Path) -> Dict[str, Any]:
    """ESPnet's resolved config.yaml of a training (every option, seed included)."""
    path = exp_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {exp_dir} holds no ESPnet training (run training first)")
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def read_reporter(exp_dir: Path):
    """ESPnet's Reporter (per-epoch train/valid statistics) from the training's checkpoint.pth."""
    path = exp_dir / "checkpoint.pth"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: no epoch of the training in {exp_dir} has finished")
    reporter = import_espnet_module("espnet2.train.reporter").Reporter()
    reporter.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["reporter"])
    return reporter


def choose_checkpoint(exp_dir: Path, which: str, criterion: List[str], reporter) -> Tuple[Path, int]:
    """(state-dict file, epoch it stands for) of the `which` checkpoint (see the module docstring)."""
    phase, key, mode = criterion
    if which == "latest":
        epoch = reporter.get_epoch()
        return exp_dir / f"{epoch}epoch.pth", epoch
    if not reporter.has(phase, key):
        raise ValueError(f"{exp_dir}: no {phase}.{key} was recorded, so there is no best epoch; export 'latest'")
    epoch = reporter.get_best_epoch(phase, key, mode)
    if which == "best":
        return exp_dir / f"{epoch}epoch.pth", epoch
    if which == "ave":
        return exp_dir / f"{phase}.{key}.ave.pth", epoch
    raise ValueError(f"unknown checkpoint choice {which!r}; choose from {EXPORT_CHOICES}")


def _steps(reporter, epoch: int, accum_grad: int) -> int:
    """Optimizer steps taken up to the end of `epoch` (ESPnet counts mini-batches)."""
    return int(reporter.stats[epoch]["train"]["total_count"]) // accum_grad


def _load_checkpoint(exp_dir: Path, model: TrainingModel, base_name: str, base_fingerprint: str,
                     which: str, data: Mapping[str, Any]) -> Dict[str, Any]:
    """Load the chosen checkpoint into `model`; returns the provenance every exported config records."""
    config = read_training_config(exp_dir)
    reporter = read_reporter(exp_dir)
    criterion = config["best_model_criterion"][0]
    path, epoch = choose_checkpoint(exp_dir, which, criterion, reporter)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; rerun training with --resume true to finish it")
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    stats = reporter.stats[epoch]
    return {
        "base_model": base_name,
        "base_fingerprint": base_fingerprint,
        "checkpoint": {"file": path.name, "choice": which, "criterion": ".".join(criterion[:2]),
                       "epoch": epoch, "epochs_trained": reporter.get_epoch(),
                       "optimizer_steps": _steps(reporter, epoch, config["accum_grad"])},
        "losses": {phase: float(stats[phase]["loss"]) for phase in ("train", "valid") if "loss" in stats.get(phase, {})},
        "pad_to_30s": model.pad_to_30s,
        "seed": config["seed"],
        "training_config": str(exp_dir / "config.yaml"),
        **dict(data),
    }


def export_adapters(exp_dir: Path, model: LoRARoutedModel, base_name: str, base_fingerprint: str,
                    which: str, data: Mapping[str, Any]) -> Dict[str, Path]:
    """Load the chosen checkpoint into `model` and write every language's adapter directory, and the
    shared adapter's (`adapters/shared`) when the bank's layout has one."""
    exp_dir = Path(exp_dir)
    meta = _load_checkpoint(exp_dir, model, base_name, base_fingerprint, which, data)
    names = [*model.languages, *([SHARED] if shared_banks(model.model) else [])]
    written = {}
    for name in names:
        save_adapter(model.model, name, exp_dir / "adapters" / name, meta)
        written[name] = exp_dir / "adapters" / name
    return written


def export_full_model(exp_dir: Path, model: FullFinetuneModel, base_name: str, base_fingerprint: str,
                      which: str, data: Mapping[str, Any]) -> Path:
    """Load the chosen checkpoint into `model` and write it to `<exp_dir>/full_model`.

    `base_fingerprint` is that of the base before fine-tuning: the one a decoder rebuilds and checks.
    """
    exp_dir = Path(exp_dir)
    meta = _load_checkpoint(exp_dir, model, base_name, base_fingerprint, which, data)
    return save_finetuned(model.model, exp_dir / FULL_MODEL_DIR, meta)
