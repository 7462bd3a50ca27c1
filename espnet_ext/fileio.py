"""Atomic file writing: a reader (or a killed run) never sees a half-written output.

Everything the recipe writes goes to `<name>.tmp.<pid>` in the same directory first and is renamed
over the target only when complete, so an interrupted stage leaves the previous file intact.
"""
import contextlib
import json
import os
from pathlib import Path
from typing import IO, Any, Dict, Iterator, Sequence, Type, Union

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", encoding: str = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; rename it onto `path` on success only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    binary = "b" in mode
    try:
        with open(tmp, mode, **({} if binary else {"encoding": encoding})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write `text` to `path` atomically (UTF-8)."""
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


# ---------------------------------------------------------------------------------------------------
# Reading back the self-describing weight directories (a JSON config beside a safetensors file) that
# espnet_ext.lora.adapter_files and espnet_ext.models.finetuned write; each passes its own names and
# error type, so the messages name the file, what it should be and how to make it again.


def read_format_config(path: Path, fmt: str, kind: str, keys: Sequence[str], error: Type[Exception],
                       absent_hint: str, fix: str) -> Dict[str, Any]:
    """The parsed JSON config at `path` (a `kind` config), checked to be of format `fmt` with all `keys`.

    `absent_hint` follows "<path> does not exist; " and `fix` ends the other messages.
    """
    if not path.is_file():
        raise error(f"{path} does not exist; {absent_hint}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise error(f"{path} is not valid JSON ({e}); {fix}") from None
    absent = [k for k in keys if k not in config]
    if absent or config["format"] != fmt:
        raise error(f"{path} is not an espnet_ext {kind} config (format {config.get('format')!r}, expected "
                    f"{fmt!r}; missing keys {absent}); {fix}")
    return config


def read_safetensors(path: Path, config_name: str, error: Type[Exception], fix: str) -> Dict[str, Any]:
    """The tensors of the safetensors file at `path`, whose directory's `config_name` names them."""
    import safetensors.torch
    from safetensors import SafetensorError

    if not path.is_file():
        raise error(f"{path} is missing although {config_name} exists; {fix}")
    try:
        return safetensors.torch.load_file(path)
    except SafetensorError as e:
        raise error(f"{path} is not a readable safetensors file ({e}); {fix}") from None
