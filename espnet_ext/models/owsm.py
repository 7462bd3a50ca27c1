"""OWSM (ESPnet S2T) models: the tiny random one, real ones from local files, and their tokenizer.

OWSM v4 is an ESPnetS2TModel (E-Branchformer encoder, Transformer decoder, CTC) whose token list holds
Whisper-style special tokens next to the BPE pieces: <blank>, <unk>, <na>, <nolang>, one ISO 639-3
token per language (<hin>, <pan>, <tel>, <ita>, ...), task tokens (<asr>, <st_...>), <notimestamps>,
timestamps <0.00>..<30.00>, and <sos>, <eos>, <sop> at the end (ESPnet's s2t.sh layout).
"""
import re
import unicodedata
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import torch
import yaml

from espnet_ext.languages import LANGUAGES, get_language
from espnet_ext.models.espnet_import import import_espnet_module, s2t_task, task_args

TINY_CONFIG = Path(__file__).with_name("conf") / "owsm_tiny_random.yaml"
TINY_SEED = 20240601
TIMESTAMPS = [f"<{i * 0.02:.2f}>" for i in range(1501)]
# Specials that a tokenizer user asks for by role; all must be in the token list.
SPECIAL_ROLES = {
    "blank": "<blank>",
    "unk": "<unk>",
    "na": "<na>",
    "nolang": "<nolang>",
    "asr": "<asr>",
    "notimestamps": "<notimestamps>",
    "sos": "<sos>",
    "eos": "<eos>",
    "sop": "<sop>",
}
_SPECIAL_PATTERN = re.compile(r"^<[^<>\s]+>$")
_NOT_SPECIAL = {"<space>"}  # the char tokenizer's spelling of " "; it is text
# Besides ESPnet's class choices and their _conf: what S2TTask.build_model and the tokenizer read.
_MODEL_OPTIONS = ("token_list", "token_type", "bpemodel", "input_size", "ctc_conf", "non_linguistic_symbols", "cleaner")


def _script_characters() -> List[str]:
    """Assigned characters of every supported script, digits and common punctuation, in code order."""
    points = set(range(ord("0"), ord("9") + 1)) | {ord(c) for c in ".,?!'\"-:;()।"}
    for language in LANGUAGES.values():
        for low, high in language.script_ranges:
            points.update(range(low, high + 1))
    return [chr(p) for p in sorted(points) if unicodedata.category(chr(p)) != "Cn"]


def owsm_token_list(text_tokens: Sequence[str]) -> List[str]:
    """OWSM's token-list layout (ESPnet's s2t.sh): the specials, then `text_tokens`, then <sos> <eos> <sop>."""
    languages = [language.owsm_token for language in LANGUAGES.values()]
    head = ["<blank>", "<unk>", "<na>", "<nolang>", *languages, "<asr>", "<notimestamps>", *TIMESTAMPS]
    return head + list(text_tokens) + ["<sos>", "<eos>", "<sop>"]


def tiny_token_list() -> List[str]:
    """Token list of owsm_tiny_random: OWSM's layout around a character vocabulary."""
    return owsm_token_list(["<space>", *_script_characters()])


class OwsmTokenizer:
    """Text <-> token ids for an OWSM model, with its special token ids by role.

    Wraps ESPnet's own tokenizer (sentencepiece BPE for real OWSM, characters for the tiny model) and
    TokenIDConverter, so ids agree with what ESPnet's S2T training and inference produce.
    """

    def __init__(self, token_list: List[str], token_type: str, bpemodel: Optional[str] = None):
        build_tokenizer = import_espnet_module("espnet2.text.build_tokenizer").build_tokenizer
        converter = import_espnet_module("espnet2.text.token_id_converter").TokenIDConverter
        missing = [token for token in SPECIAL_ROLES.values() if token not in token_list]
        if missing:
            raise ValueError(f"OWSM token list lacks the special tokens {missing}")
        self.token_list = list(token_list)
        self._index = {token: i for i, token in enumerate(self.token_list)}
        self._tokenizer = build_tokenizer(token_type=token_type, bpemodel=bpemodel)
        self._converter = converter(token_list=self.token_list)
        self.special_ids = {
            i for i, token in enumerate(self.token_list) if _SPECIAL_PATTERN.match(token) and token not in _NOT_SPECIAL
        }
        for role, token in SPECIAL_ROLES.items():
            setattr(self, role, self._index[token])

    def encode(self, text: str) -> List[int]:
        """Token ids of `text` (no special tokens added)."""
        return self._converter.tokens2ids(self._tokenizer.text2tokens(text))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`, with special tokens (language, task, timestamps, sos/eos...) dropped."""
        kept = [int(i) for i in ids if int(i) not in self.special_ids]
        return self._tokenizer.tokens2text(self._converter.ids2tokens(kept))

    def token_id(self, token: str) -> int:
        """Id of a token spelled exactly as in the token list, e.g. "<hin>"."""
        try:
            return self._index[token]
        except KeyError:
            raise ValueError(f"token {token!r} is not in this OWSM token list") from None

    def language_id(self, code: str) -> int:
        """Id of the OWSM language token for an ISO 639-1 code from the language table."""
        return self.token_id(get_language(code).owsm_token)


def _build(config: dict, seed: Optional[int] = None):
    """ESPnetS2TModel from an S2T config dict via S2TTask.build_model; `seed` fixes random init."""
    task = s2t_task()
    args = task_args(task, config)
    if seed is None:
        return task.build_model(args)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return task.build_model(args)


def tiny_config() -> dict:
    """Config of owsm_tiny_random: the YAML shipped in conf/ plus the generated token list."""
    with TINY_CONFIG.open(encoding="utf-8") as f:
        config = yaml.safe_load(f)
    config["token_list"] = tiny_token_list()
    return config


def build_tiny(config: Optional[dict] = None) -> Tuple[torch.nn.Module, dict, OwsmTokenizer]:
    """(model, config, tokenizer) of owsm_tiny_random, identical on every call; with `config` (tiny_config()
    changed, e.g. to a BPE vocabulary) the same seeded build, for tests of other packagings."""
    config = config or tiny_config()
    model = _build(config, seed=TINY_SEED)
    return model, config, OwsmTokenizer(config["token_list"], config["token_type"], config.get("bpemodel"))


# ---------------------------------------------------------------------------------------------------
# Real models from a directory laid out like an ESPnet model zoo / Hugging Face repo


def _meta_files(root: Path) -> Optional[Tuple[Path, Path]]:
    """(config, model file) named by the meta.yaml that ESPnet's packed models carry, if any."""
    meta = root / "meta.yaml"
    if not meta.is_file():
        return None
    with meta.open(encoding="utf-8") as f:
        content = yaml.safe_load(f) or {}
    config = (content.get("yaml_files") or {}).get("s2t_train_config")
    model = (content.get("files") or {}).get("s2t_model_file")
    if not config or not model:
        raise ValueError(f"{meta}: lacks yaml_files.s2t_train_config or files.s2t_model_file; not an S2T model")
    return root / config, root / model


def _search_files(root: Path) -> Tuple[Path, Path]:
    """The single config.yaml and single .pth under `root` when there is no meta.yaml."""
    configs = sorted(p for p in root.rglob("config.yaml") if "stats" not in p.parent.name)
    models = sorted(root.rglob("*.pth"))
    if len(configs) != 1 or len(models) != 1:
        raise FileNotFoundError(
            f"{root}: expected one S2T config.yaml and one model .pth (or a meta.yaml naming them), found "
            f"configs {[str(p) for p in configs]} and models {[str(p) for p in models]}"
        )
    return configs[0], models[0]


def find_owsm_files(root: Union[str, Path]) -> Tuple[Path, Path]:
    """(config.yaml, model .pth) of an OWSM model directory."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"OWSM model directory {root} does not exist")
    config, model = _meta_files(root) or _search_files(root)
    for path in (config, model):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from the OWSM model directory {root}")
    return config, model


def _resolve(value, root: Path):
    """A packed config's path, found under the model root. As published it is relative to the root;
    espnet_model_zoo rewrites it in place to an absolute path into the snapshot, which breaks when the
    cache is copied to another machine: then its longest tail that exists under the root is taken."""
    if not isinstance(value, str) or not value or Path(value).is_absolute() and Path(value).exists():
        return value
    parts = Path(value).relative_to(Path(value).anchor).parts
    tails = (root.joinpath(*parts[start:]) for start in range(len(parts)))
    return str(next((tail for tail in tails if tail.exists()), value))


def _model_part(config: dict) -> dict:
    """The options of a published config.yaml that make the model and its text. The rest of ESPnet's dump
    is OWSM's own training run (data paths, batch size, optimiser, GPUs), which a LoRA run must not inherit
    (train/task.py adopts the model's config over the training config's)."""
    choices = [choice.name for choice in s2t_task().class_choices_list]
    keep = {*choices, *(f"{name}_conf" for name in choices), *_MODEL_OPTIONS}
    return {key: value for key, value in config.items() if key in keep}


def read_owsm_config(config_path: Path, root: Path) -> dict:
    """The S2T config with its token list, BPE model and stats file paths resolved against `root`."""
    with config_path.open(encoding="utf-8") as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict) or "encoder" not in config:
        raise ValueError(f"{config_path}: not an ESPnet S2T training config")
    config = _model_part(config)
    for key in ("token_list", "bpemodel"):
        config[key] = _resolve(config.get(key), root)
    normalize_conf = dict(config.get("normalize_conf") or {})
    if "stats_file" in normalize_conf:
        normalize_conf["stats_file"] = _resolve(normalize_conf["stats_file"], root)
        config["normalize_conf"] = normalize_conf
    for name, path in (("bpemodel", config.get("bpemodel")), ("stats_file", normalize_conf.get("stats_file"))):
        if path and not Path(path).is_file():  # else ESPnet fails later, far from the file's name
            raise FileNotFoundError(f"{path}, the {name} of {config_path}, is missing")
    if isinstance(config["token_list"], str):
        with open(config["token_list"], encoding="utf-8") as f:
            config["token_list"] = [line.rstrip("\n") for line in f]
    return config


def load_owsm_dir(root: Union[str, Path]) -> Tuple[torch.nn.Module, dict, OwsmTokenizer, Path]:
    """(model, config, tokenizer, model file) of a local OWSM model; weights must match exactly."""
    root = Path(root)
    config_path, model_path = find_owsm_files(root)
    config = read_owsm_config(config_path, root)
    model = _build(config)
    state = torch.load(model_path, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{model_path}: weights do not fit the model of {config_path}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    tokenizer = OwsmTokenizer(config["token_list"], config.get("token_type", "bpe"), config.get("bpemodel"))
    return model, config, tokenizer, model_path


def save_owsm_dir(model: torch.nn.Module, config: dict, root: Union[str, Path]) -> Tuple[Path, Path]:
    """Write (config.yaml, model.pth) so that `load_owsm_dir(root)` rebuilds the same model."""
    from espnet_ext.fileio import atomic_open, atomic_write_text

    root = Path(root)
    config_path, model_path = root / "config.yaml", root / "model.pth"
    atomic_write_text(config_path, yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    with atomic_open(model_path, "wb") as f:
        torch.save(model.state_dict(), f)
    return config_path, model_path

