"""transformers' Whisper <-> openai-whisper: the one owner of the weight-name mapping between them.

Why: a Whisper fine-tuned with transformers is kept as a `save_pretrained` directory (config.json +
model.safetensors), while ESPnet's Whisper wrappers (whisper.py) load openai-whisper checkpoints
`{"dims": ..., "model_state_dict": ...}`. `convert_dir` turns the first into the second (the registry's
`model_path` route); `build_hf_whisper` goes the other way (bench/train_throughput.py's HF baseline).

Layout differences, besides the names in `_PREFIXES` / `_PARTS`:
- transformers puts everything under `model.` except the output head `proj_out`, which is tied to
  `model.decoder.embed_tokens` (save_pretrained leaves it out, older files store a copy); openai-whisper
  multiplies by the token embeddings, so a stored copy is dropped after checking it is identical;
- k_proj has no bias on either side, so no zero bias is added or dropped;
- the encoder's positions are a frozen nn.Embedding in transformers, a buffer in openai-whisper, both
  the same sinusoids and both in the state dict: the values are copied, never recomputed;
- the dims are config.json keys (`_DIMS`); openai-whisper's MLP is 4 x d_model wide, so any other
  encoder_ffn_dim / decoder_ffn_dim fails the shape check.
"""
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch

from espnet_ext.errors import UserError
from espnet_ext.fileio import atomic_open
from espnet_ext.models.ctranslate2_convert import state_mismatch

PathLike = Union[str, Path]

# (openai-whisper, transformers): the leading part of a name, at most one applies ...
_PREFIXES = (
    ("encoder.positional_embedding", "model.encoder.embed_positions.weight"),
    ("decoder.positional_embedding", "model.decoder.embed_positions.weight"),
    ("decoder.token_embedding.", "model.decoder.embed_tokens."),
    ("encoder.ln_post.", "model.encoder.layer_norm."),
    ("decoder.ln.", "model.decoder.layer_norm."),
    ("encoder.conv", "model.encoder.conv"),
    ("encoder.blocks.", "model.encoder.layers."),
    ("decoder.blocks.", "model.decoder.layers."),
)
# ... then every part inside a block (the dots on both sides keep `.attn.` from matching `.cross_attn.`).
_PARTS = (
    (".cross_attn_ln.", ".encoder_attn_layer_norm."),
    (".attn_ln.", ".self_attn_layer_norm."),
    (".mlp_ln.", ".final_layer_norm."),
    (".cross_attn.", ".encoder_attn."),
    (".attn.", ".self_attn."),
    (".mlp.0.", ".fc1."),
    (".mlp.2.", ".fc2."),
    (".query.", ".q_proj."),
    (".key.", ".k_proj."),
    (".value.", ".v_proj."),
    (".out.", ".out_proj."),
)
HEAD = "proj_out.weight"
EMBEDDINGS = "model.decoder.embed_tokens.weight"
# openai-whisper's ModelDimensions <- config.json (d_model is both widths).
_DIMS = (
    ("n_mels", "num_mel_bins"),
    ("n_audio_ctx", "max_source_positions"),
    ("n_audio_state", "d_model"),
    ("n_audio_head", "encoder_attention_heads"),
    ("n_audio_layer", "encoder_layers"),
    ("n_vocab", "vocab_size"),
    ("n_text_ctx", "max_target_positions"),
    ("n_text_state", "d_model"),
    ("n_text_head", "decoder_attention_heads"),
    ("n_text_layer", "decoder_layers"),
)
# config.json values that change the computation away from openai-whisper's, checked when present.
_EXPECTED_CONFIG = {"activation_function": "gelu", "scale_embedding": False}
DOWNLOAD_HINT = (
    "on a machine with network run `huggingface-cli download openai/whisper-small --local-dir DIR` "
    "(or your model's repo), or write DIR with WhisperForConditionalGeneration.save_pretrained(DIR)"
)


class HfFormatError(UserError, ValueError):
    """A transformers directory that is not an openai-whisper-compatible Whisper."""


class HfFileMissing(UserError, FileNotFoundError):
    """A file of a transformers Whisper directory that is not there."""


# ---------------------------------------------------------------------------------------------------
# Names


def _rename(name: str, forward: bool) -> Optional[str]:
    """Apply the tables openai -> transformers (`forward`) or back; None when no prefix matches."""
    for pair in _PREFIXES:
        source, target = pair if forward else pair[::-1]
        if name.startswith(source):
            name = target + name[len(source):]
            break
    else:
        return None
    for pair in _PARTS:
        source, target = pair if forward else pair[::-1]
        name = name.replace(source, target)
    return name


def hf_name(openai_name: str) -> str:
    """transformers' name of an openai-whisper state-dict entry."""
    name = _rename(openai_name, forward=True)
    if name is None:
        raise KeyError(f"{openai_name!r} is not an openai-whisper Whisper weight")
    return name


def openai_name(hf_name: str) -> Optional[str]:
    """openai-whisper's name of a WhisperForConditionalGeneration entry (None: not a Whisper weight).

    A WhisperModel's names, without the `model.` prefix, are accepted too.
    """
    return _rename(hf_name if hf_name.startswith("model.") else "model." + hf_name, forward=False)


def hf_state_dict(openai_state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """WhisperForConditionalGeneration's state dict (float32, head tied) from an openai-whisper one."""
    state = {hf_name(name): tensor.float() for name, tensor in openai_state.items()}
    state[HEAD] = state[EMBEDDINGS]
    return state


def openai_state_dict(hf_state: Dict[str, torch.Tensor], source: str) -> Dict[str, torch.Tensor]:
    """openai-whisper's state dict (float32) from a transformers one; refuses an untied head."""
    state, unknown = {}, []
    for name, tensor in hf_state.items():
        mapped = openai_name(name)
        if mapped is None and name != HEAD:
            unknown.append(name)
        elif mapped is not None:
            state[mapped] = tensor.float()
    if unknown:
        shown = ", ".join(sorted(unknown)[:8]) + (" ..." if len(unknown) > 8 else "")
        raise HfFormatError(f"{source}: not WhisperForConditionalGeneration weights: unknown names {shown}")
    head, embeddings = hf_state.get(HEAD), state.get("decoder.token_embedding.weight")
    if head is not None and (embeddings is None or not torch.equal(head.float(), embeddings)):
        raise HfFormatError(
            f"{source}: {HEAD} differs from the token embeddings; openai-whisper ties them, so this model "
            "cannot be represented (was it trained with tie_word_embeddings=false?)"
        )
    return state


# ---------------------------------------------------------------------------------------------------
# Config


def whisper_dims(config: dict, source: str) -> dict:
    """openai-whisper's dims from a transformers Whisper config.json's content."""
    if config.get("model_type") != "whisper":
        raise HfFormatError(
            f"{source}: model_type is {config.get('model_type')!r}, not 'whisper'; give a Whisper model directory"
        )
    for key, expected in _EXPECTED_CONFIG.items():
        if config.get(key, expected) != expected:
            raise HfFormatError(f"{source}: {key} = {config[key]!r} but openai-whisper needs {expected!r}")
    missing = sorted({key for _, key in _DIMS if key not in config})
    if missing:
        raise HfFormatError(f"{source}: lacks {', '.join(missing)}; write it again with save_pretrained")
    return {dim: int(config[key]) for dim, key in _DIMS}


def hf_config(dims: dict, **overrides):
    """transformers' WhisperConfig for openai-whisper `dims` (the inverse of whisper_dims)."""
    from transformers import WhisperConfig

    if dims["n_audio_state"] != dims["n_text_state"]:
        raise ValueError(f"transformers' Whisper has one d_model; these dims differ: {dims}")
    values = {key: dims[dim] for dim, key in _DIMS}
    values.update(encoder_ffn_dim=4 * dims["n_audio_state"], decoder_ffn_dim=4 * dims["n_text_state"])
    return WhisperConfig(**{**values, **overrides})


def build_hf_whisper(checkpoint: dict, **config):
    """WhisperForConditionalGeneration holding an openai-whisper checkpoint's weights.

    `config` overrides WhisperConfig fields (token ids, use_cache); the dims come from the checkpoint.
    """
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration(hf_config(checkpoint["dims"], **config))
    model.load_state_dict(hf_state_dict(checkpoint["model_state_dict"]))
    return model


# ---------------------------------------------------------------------------------------------------
# Directories


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise HfFormatError(f"{path}: not valid JSON ({err}); copy the file again") from None


def is_transformers_dir(model_dir: PathLike) -> bool:
    """True for a transformers model directory: a config.json naming a model_type (CTranslate2's has none)."""
    config = Path(model_dir) / "config.json"
    return config.is_file() and "model_type" in _read_json(config)


def read_dims(model_dir: PathLike) -> dict:
    """openai-whisper's dims of a transformers Whisper directory, from its config.json alone."""
    config = Path(model_dir) / "config.json"
    if not config.is_file():
        raise HfFileMissing(f"{config} does not exist; {DOWNLOAD_HINT}")
    return whisper_dims(_read_json(config), str(config))


def weight_files(model_dir: PathLike) -> List[Path]:
    """The weight files of a directory: model.safetensors, the shards its index names, or pytorch_model.bin."""
    root = Path(model_dir)
    single, index = root / "model.safetensors", root / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        shards = sorted({root / name for name in _read_json(index).get("weight_map", {}).values()})
        absent = [str(p) for p in shards if not p.is_file()]
        if absent:
            raise HfFileMissing(f"{index} names shards that are missing: {', '.join(absent)}; {DOWNLOAD_HINT}")
        return shards
    if (root / "pytorch_model.bin").is_file():
        return [root / "pytorch_model.bin"]
    raise HfFileMissing(f"{single} does not exist (nor a sharded index or pytorch_model.bin); {DOWNLOAD_HINT}")


def _load_weights(path: Path) -> Dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def _alignment_heads(model_dir: Path) -> Optional[List[List[int]]]:
    """generation_config.json's [layer, head] pairs for word timestamps, when the directory has them."""
    path = model_dir / "generation_config.json"
    heads = _read_json(path).get("alignment_heads") if path.is_file() else None
    return [[int(layer), int(head)] for layer, head in heads] if heads else None


def read_checkpoint(model_dir: PathLike) -> dict:
    """The openai-whisper checkpoint dict of a transformers Whisper directory."""
    root = Path(model_dir)
    dims = read_dims(root)
    files = weight_files(root)
    source = " + ".join(str(p) for p in files)
    hf_state: Dict[str, torch.Tensor] = {}
    for path in files:
        hf_state.update(_load_weights(path))
    state = openai_state_dict(hf_state, source)
    problem = state_mismatch(dims, state)
    if problem:
        raise HfFormatError(f"{source}: does not match {root / 'config.json'} (dims {dims}): {problem}")
    checkpoint = {"dims": dims, "model_state_dict": state}
    heads = _alignment_heads(root)
    if heads:
        checkpoint["alignment_heads"] = heads
    return checkpoint


def convert_dir(model_dir: PathLike, out: PathLike) -> Path:
    """Write the openai-whisper checkpoint of a transformers Whisper directory to `out` (atomic)."""
    checkpoint = read_checkpoint(model_dir)
    with atomic_open(out, "wb") as f:
        torch.save(checkpoint, f)
    return Path(out)


def source_files(model_dir: PathLike) -> Tuple[Path, ...]:
    """Every file a conversion reads, for the registry's cache key."""
    root = Path(model_dir)
    extra = [p for p in (root / "config.json", root / "generation_config.json") if p.is_file()]
    return tuple(extra + weight_files(root))
