"""One adapter per directory, PEFT-style: `adapter_config.json` + `adapter_model.safetensors`.

The config names the base model and a fingerprint of its weights, so an adapter trained on one base
is never silently applied to another (the deltas would be meaningless there); it also records rank,
alpha, dropout, the target patterns and the exact module list, so a loader can rebuild the bank or
check that an existing one fits, and the bank layout it belongs to (`layout`: per_language, above_tap
or shared_below with the tap layer; see espnet_ext.lora.inject), so that an adapter trained without
layers below the tap is never loaded into a bank that routes them. A bank of layout shared_below has
one more directory, `shared/`, holding the language-independent adapter of the layers below the tap
(its `language` is "shared"). The safetensors file holds only that adapter's tensors,
`<module>.lora_A` [r, in] and `<module>.lora_B` [out, r].

Writing order: weights first, config second, each atomically; a directory with a config always has
the complete weights that config describes.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import safetensors.torch
from torch import nn

from espnet_ext.fileio import PathLike, atomic_write_bytes, atomic_write_text, read_format_config, read_safetensors
from espnet_ext.lora.inject import (
    SHARED,
    BankLayout,
    adapter_state_dict,
    bank_info,
    banks,
    load_adapter_state_dict,
    wrap_modules,
)
from espnet_ext.errors import UserError

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FORMAT = "espnet_ext.lora_bank_adapter/1"
_REQUIRED_META = ("base_model", "base_fingerprint")
_FROM_MODEL = ("format", "language", "rank", "alpha", "dropout", "targets", "modules")
_LAYOUT_OF_OLD_FILES = BankLayout().describe()  # written before bank layouts: every layer per language


class AdapterFileError(UserError, ValueError):
    """An adapter directory that is missing, corrupt or does not fit the model."""


def save_adapter(model: nn.Module, name: str, out_dir: PathLike, meta: Mapping[str, Any]) -> Path:
    """Write adapter `name` of the model's bank to `out_dir`; returns the config path.

    `meta` must hold base_model and base_fingerprint and may add anything JSON-serialisable
    (training_data, steps, ...); rank/alpha/dropout/targets/modules are taken from the model.
    """
    missing = [k for k in _REQUIRED_META if not meta.get(k)]
    clash = [k for k in _FROM_MODEL if k in meta]
    if missing or clash:
        raise ValueError(
            f"save_adapter meta: missing {missing} (needed to refuse a wrong base later), "
            f"reserved keys {clash} (they come from the model)"
        )
    info = bank_info(model)
    config = {
        "format": FORMAT,
        "language": name,
        **meta,
        "rank": info.rank,
        "alpha": info.alpha,
        "dropout": info.dropout,
        "targets": list(info.targets),
        "layout": info.layout.describe(),
        "modules": list(info.shared_modules if name == SHARED else info.modules),
    }
    out_dir = Path(out_dir)
    tensors = adapter_state_dict(model, name)
    metadata = {"language": name, "base_model": str(meta["base_model"]),
                "base_fingerprint": str(meta["base_fingerprint"])}
    atomic_write_bytes(out_dir / WEIGHTS_NAME, safetensors.torch.save(tensors, metadata=metadata))
    atomic_write_text(out_dir / CONFIG_NAME, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    return out_dir / CONFIG_NAME


def read_adapter_config(adapter_dir: PathLike) -> Dict[str, Any]:
    """The parsed, checked `adapter_config.json` of `adapter_dir`."""
    return read_format_config(
        Path(adapter_dir) / CONFIG_NAME, FORMAT, "adapter", _REQUIRED_META + _FROM_MODEL, AdapterFileError,
        f"an adapter directory holds {CONFIG_NAME} and {WEIGHTS_NAME} as written by "
        "espnet_ext.lora.adapter_files.save_adapter (is the path or language right?)",
        "re-save it with save_adapter",
    )


def _read_weights(adapter_dir: Path) -> Dict[str, Any]:
    return read_safetensors(adapter_dir / WEIGHTS_NAME, CONFIG_NAME, AdapterFileError, "re-save the adapter")


@dataclass
class AdapterWeights:
    """One adapter read without a model: its config and, per module, its factors `A` [r, in] and `B` [out, r];
    the module's update is `delta W = scaling * B A`."""

    config: Dict[str, Any]
    factors: Dict[str, Tuple[Any, Any]]  # module -> (A, B), float32 tensors

    @property
    def scaling(self) -> float:
        return float(self.config["alpha"]) / int(self.config["rank"])

    def parameter_count(self) -> int:
        return sum(a.numel() + b.numel() for a, b in self.factors.values())


def read_adapter_weights(adapter_dir: PathLike) -> AdapterWeights:
    """The adapter in `adapter_dir` as factors per module, in its config's module order (analysis and result
    tables read adapters this way; loading into a model is `load_adapter`)."""
    adapter_dir = Path(adapter_dir)
    config = read_adapter_config(adapter_dir)
    state = _read_weights(adapter_dir)
    missing = [m for m in config["modules"] if f"{m}.lora_A" not in state or f"{m}.lora_B" not in state]
    if missing:
        raise AdapterFileError(f"{adapter_dir / WEIGHTS_NAME} lacks the factors of {len(missing)} modules its config "
                               f"lists (e.g. {missing[0]}); re-save the adapter")
    return AdapterWeights(config, {m: (state[f"{m}.lora_A"].float(), state[f"{m}.lora_B"].float())
                                   for m in config["modules"]})


def check_base(config: Mapping[str, Any], adapter_dir: PathLike, base_name: str, base_fingerprint: str) -> None:
    """Refuse an adapter trained on another base model (name or weight fingerprint differ)."""
    if config["base_model"] != base_name or config["base_fingerprint"] != base_fingerprint:
        raise AdapterFileError(
            f"adapter {adapter_dir} was trained on base model {config['base_model']!r} (fingerprint "
            f"{config['base_fingerprint']}) but the model is {base_name!r} (fingerprint "
            f"{base_fingerprint}); load the base it was trained on, or retrain the adapter"
        )


def _layout(config: Mapping[str, Any]) -> BankLayout:
    return BankLayout.from_record(config.get("layout", _LAYOUT_OF_OLD_FILES))


def _describe(layout: BankLayout) -> str:
    return layout.kind + (f" (tap layer {layout.tap_layer})" if layout.kind != "per_language" else "")


def _check_fits(model: nn.Module, config: Mapping[str, Any], adapter_dir: PathLike, slot: str) -> None:
    info = bank_info(model)
    layout = _layout(config)
    if layout != info.layout:
        raise AdapterFileError(
            f"adapter {adapter_dir} belongs to a bank of layout {_describe(layout)} but the model's LoRA bank has "
            f"layout {_describe(info.layout)}; load it into a bank of its own layout (decode its exp dir's "
            "adapters/ as a whole), or retrain it with the bank's layout"
        )
    problems = []
    if config["rank"] != info.rank or config["alpha"] != info.alpha:
        problems.append(f"rank/alpha {config['rank']}/{config['alpha']:g} vs the bank's {info.rank}/{info.alpha:g}")
    modules = info.shared_modules if slot == SHARED else info.modules
    if list(config["modules"]) != list(modules):
        only_file = sorted(set(config["modules"]) - set(modules))
        only_bank = sorted(set(modules) - set(config["modules"]))
        problems.append(
            f"targets {config['targets']} vs the bank's {list(info.targets)} (modules only in the adapter: "
            f"{only_file[:4]}, only in the bank: {only_bank[:4]})"
        )
    if slot != SHARED and slot not in info.names:
        problems.append(f"no slot {slot!r} among the bank's adapters {list(info.names)}")
    if problems:
        raise AdapterFileError(f"adapter {adapter_dir} does not fit the model's LoRA bank: " + "; ".join(problems))


def _wrap_for(model: nn.Module, config: Mapping[str, Any], languages: Sequence[str],
              shared: Optional[Mapping[str, Any]] = None) -> None:
    """Inject the bank an adapter config describes (the language banks, and the shared ones)."""
    wrap_modules(model, config["modules"], shared["modules"] if shared else [], config["rank"], config["alpha"],
                 languages, config["dropout"], config["targets"], _layout(config))


def load_adapter(
    model: nn.Module,
    adapter_dir: PathLike,
    base_name: str,
    base_fingerprint: str,
    name: Optional[str] = None,
) -> Dict[str, Any]:
    """Load the adapter in `adapter_dir` into slot `name` (default: its language); returns its config.

    Injects a one-adapter bank as the config describes when the model has none yet; otherwise the
    existing bank must match its layout, rank, alpha and module list and have the slot.
    """
    adapter_dir = Path(adapter_dir)
    config = read_adapter_config(adapter_dir)
    check_base(config, adapter_dir, base_name, base_fingerprint)
    state = _read_weights(adapter_dir)
    slot = name or config["language"]
    if not banks(model):
        if slot == SHARED:
            raise AdapterFileError(f"{adapter_dir} is the shared adapter of a bank; load the whole bank "
                                   "(load_adapter_bank on its adapters/ directory)")
        _wrap_for(model, config, [slot])
    _check_fits(model, config, adapter_dir, slot)
    try:
        load_adapter_state_dict(model, slot, state)
    except ValueError as e:
        raise AdapterFileError(f"{adapter_dir / WEIGHTS_NAME}: {e}") from None
    return config


def _read_bank_member(root: Path, name: str, base_name: str, base_fingerprint: str) -> Dict[str, Any]:
    if not (root / name).is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise AdapterFileError(f"no adapter directory {root / name}; {root} holds {present}")
    config = read_adapter_config(root / name)
    check_base(config, root / name, base_name, base_fingerprint)
    if config["language"] != name:
        raise AdapterFileError(f"{root / name / CONFIG_NAME} is an adapter for {config['language']!r}, not {name!r}")
    return config


def load_adapter_bank(
    model: nn.Module,
    adapters_root: PathLike,
    languages: Sequence[str],
    base_name: str,
    base_fingerprint: str,
) -> Dict[str, Dict[str, Any]]:
    """Load `adapters_root/<lang>/` for every language into one bank (injected if the model has none),
    and `adapters_root/shared/` when their layout has a shared adapter; returns the configs by name.

    Every directory is checked before anything is injected, so a bad one leaves the model untouched.
    """
    if not languages:
        raise ValueError("load_adapter_bank needs at least one language")
    root = Path(adapters_root)
    configs = {lang: _read_bank_member(root, lang, base_name, base_fingerprint) for lang in languages}
    layouts = {lang: (c["rank"], c["alpha"], tuple(c["modules"]), _layout(c)) for lang, c in configs.items()}
    if len(set(layouts.values())) > 1:
        raise AdapterFileError(
            f"the adapters under {root} cannot share one bank: rank, alpha, layout or module lists differ "
            f"({ {lang: (r, a, len(m), _describe(k)) for lang, (r, a, m, k) in layouts.items()} }); train them "
            "with one config"
        )
    first = configs[languages[0]]
    if _layout(first).kind == "shared_below":
        configs[SHARED] = _read_bank_member(root, SHARED, base_name, base_fingerprint)
    if not banks(model):
        _wrap_for(model, first, languages, configs.get(SHARED))
    for name in configs:
        load_adapter(model, root / name, base_name, base_fingerprint, name=name)
    return configs


def bank_languages(adapter_dir) -> List[str]:
    """The languages with an adapter under `adapter_dir` (the shared adapter is not one), sorted; an
    AdapterFileError naming the dir when there are none."""
    if adapter_dir is None:
        raise AdapterFileError("a --routing other than none needs --adapter_dir <exp>/adapters (stage 3 trains them)")
    langs = sorted(p.parent.name for p in Path(adapter_dir).glob(f"*/{CONFIG_NAME}") if p.parent.name != SHARED)
    if not langs:
        where = "does not exist" if not Path(adapter_dir).exists() else f"holds no <lang>/{CONFIG_NAME}"
        raise AdapterFileError(f"--adapter_dir {adapter_dir} {where}; give the adapters dir of a trained exp "
                               "(<exp>/adapters), or run stage 3 first")
    return langs
