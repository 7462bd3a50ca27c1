"""A fully fine-tuned registry model as files: `model_config.json` + `model.safetensors` in one directory.

    <exp>/full_model/{model_config.json, model.safetensors}    (written by espnet_ext.train.export)

The weights are the ESPnet model's whole state dict (the registry model's `asr_model` keys). The config
names the base model the fine-tuning started from and that base's weight fingerprint: a loader rebuilds
the base from the registry (the architecture), checks it is that base, and loads the weights over it
(the values); another base is refused. The config also carries the provenance the exporter passes
(checkpoint, losses, seed, data) and the parameter count.

Tied weights (e.g. a decoder output projection that is the token embedding) are stored once:
safetensors refuses tensors that share memory, so an alias of an already stored tensor is left out of
the file and listed in the config's `tied` ({left-out key: stored key}); the loader puts it back before
a strict load, so a weight missing from the file is an error, never a silently untrained one.

Writing order: weights first, config second, each atomically; a directory with a config always has
the complete weights that config describes.
"""
import json
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple

import safetensors.torch
import torch
from torch import nn

from espnet_ext.fileio import PathLike, atomic_write_bytes, atomic_write_text, read_format_config, read_safetensors
from espnet_ext.errors import UserError

CONFIG_NAME = "model_config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "espnet_ext.finetuned_model/1"
_REQUIRED_META = ("base_model", "base_fingerprint")
_FROM_MODEL = ("format", "finetune", "parameters", "tied")


class FinetunedFileError(UserError, ValueError):
    """A fine-tuned model directory that is missing, corrupt or does not fit the base model."""


def _stored_tensors(state: Mapping[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """(tensors to write, {alias key: stored key}): each tied tensor once, nothing else sharing memory."""
    tensors: Dict[str, torch.Tensor] = {}
    tied: Dict[str, str] = {}
    first_key: Dict[tuple, str] = {}
    for key, tensor in state.items():
        view = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
                tensor.stride(), tensor.dtype)
        if view in first_key:
            tied[key] = first_key[view]
        else:
            first_key[view] = key
            tensors[key] = tensor.detach().to("cpu", copy=True).contiguous()  # a copy: overlaps are not shared
    return tensors, tied


def save_finetuned(model: nn.Module, out_dir: PathLike, meta: Mapping[str, Any]) -> Path:
    """Write every weight of `model` and its config to `out_dir`; returns the directory.

    `meta` must hold base_model and base_fingerprint (of the base before fine-tuning) and may add
    anything JSON-serialisable; format, finetune, parameters and tied come from the model.
    """
    missing = [k for k in _REQUIRED_META if not meta.get(k)]
    clash = [k for k in _FROM_MODEL if k in meta]
    if missing or clash:
        raise ValueError(f"save_finetuned meta: missing {missing} (needed to refuse a wrong base later), "
                         f"reserved keys {clash} (they come from the model)")
    tensors, tied = _stored_tensors(model.state_dict())
    config = {"format": FORMAT, "finetune": "full", **meta,
              "parameters": sum(p.numel() for p in model.parameters()), "tied": tied}
    metadata = {key: str(meta[key]) for key in _REQUIRED_META}
    out_dir = Path(out_dir)
    atomic_write_bytes(out_dir / WEIGHTS_NAME, safetensors.torch.save(tensors, metadata=metadata))
    atomic_write_text(out_dir / CONFIG_NAME, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    return out_dir


def read_finetuned_config(model_dir: PathLike) -> Dict[str, Any]:
    """The parsed, checked `model_config.json` of `model_dir`."""
    return read_format_config(
        Path(model_dir) / CONFIG_NAME, FORMAT, "fine-tuned model", _REQUIRED_META + _FROM_MODEL, FinetunedFileError,
        f"a fine-tuned model directory holds {CONFIG_NAME} and {WEIGHTS_NAME} as written by training with "
        "--finetune full (<exp>/full_model); is the path right, has stage 3 run?",
        "export the model again",
    )


def _check_base(config: Mapping[str, Any], model_dir: Path, base_name: str, base_fingerprint: str) -> None:
    """Refuse weights fine-tuned from another base (name or weight fingerprint differ)."""
    if config["base_model"] != base_name or config["base_fingerprint"] != base_fingerprint:
        raise FinetunedFileError(
            f"fine-tuned model {model_dir} was trained from base model {config['base_model']!r} (fingerprint "
            f"{config['base_fingerprint']}) but the base loaded is {base_name!r} (fingerprint "
            f"{base_fingerprint}); decode with --model {config['base_model']} and the weights it was trained "
            "from, or fine-tune again from this base"
        )


def _read_weights(model_dir: Path) -> Dict[str, torch.Tensor]:
    return read_safetensors(model_dir / WEIGHTS_NAME, CONFIG_NAME, FinetunedFileError, "export the model again")


def load_finetuned(model: nn.Module, model_dir: PathLike, base_name: str, base_fingerprint: str) -> Dict[str, Any]:
    """Load the weights in `model_dir` over `model`, the registry base they were fine-tuned from.

    Every weight of `model` must come from the file (tied ones through `tied`); returns the config.
    """
    model_dir = Path(model_dir)
    config = read_finetuned_config(model_dir)
    _check_base(config, model_dir, base_name, base_fingerprint)
    state = _read_weights(model_dir)
    for alias, stored in config["tied"].items():
        if stored in state:
            state[alias] = state[stored]
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise FinetunedFileError(f"{model_dir / WEIGHTS_NAME} does not fit {base_name}: missing {missing[:4]} "
                                 f"({len(missing)}), unexpected {unexpected[:4]} ({len(unexpected)})")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # shapes differ
        raise FinetunedFileError(f"{model_dir / WEIGHTS_NAME} does not fit {base_name}: {e}") from None
    return config
