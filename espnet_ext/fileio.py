"""Atomic file writing: a reader (or a killed run) never sees a half-written output; and a lock that
keeps two processes from writing one directory at once.

Everything the recipe writes goes to `<name>.tmp.<pid>` in the same directory first and is renamed
over the target only when complete, so an interrupted stage leaves the previous file intact.
"""
import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import IO, Any, Dict, Iterator, Sequence, Type, Union

from espnet_ext.errors import UserError

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", encoding: str = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; rename it onto `path` on success only. A path that
    is not a regular file (`--output /dev/null`, a pipe) is written as it is: renaming onto it would
    replace the device with a file."""
    path = Path(path)
    binary = "b" in mode
    if path.exists() and not path.is_file() and not path.is_dir():
        with open(path, mode, **({} if binary else {"encoding": encoding})) as f:
            yield f
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
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


@contextlib.contextmanager
def atomic_directory(path: PathLike) -> Iterator[Path]:
    """Yield an empty staging sibling of directory `path` to fill; on success it replaces `path` (the previous
    version is removed only afterwards), on failure it is removed and `path` stays as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging, old = (path.with_name(f"{path.name}.{kind}.{os.getpid()}") for kind in ("tmp", "old"))
    for leftover in (staging, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    staging.mkdir()
    try:
        yield staging
        if path.exists():
            os.replace(path, old)
        os.replace(staging, path)
    finally:
        for done in (staging, old):
            if done.exists():
                shutil.rmtree(done)


class ConfigError(UserError, ValueError):
    """A YAML config that is missing or not valid YAML; the message names the file (line, column)."""


def yaml_syntax_error(err: Exception) -> ConfigError:
    """A PyYAML parse error as one line: the file as the parser named it, the line and column of the
    problem (1-based, as editors count), what was expected, and the fix."""
    mark = getattr(err, "problem_mark", None)
    source = mark.name if mark is not None else ""
    what = ", ".join(part for part in (getattr(err, "context", None), getattr(err, "problem", None)) if part)
    what = what or str(err).splitlines()[0]
    if not source or source.startswith("<"):  # yaml's name for a string: an option's key=value, not a file
        return ConfigError(f"a YAML value given as an option is not valid YAML ({what}); correct it")
    return ConfigError(f"{source}: not valid YAML at line {mark.line + 1}, column {mark.column + 1} ({what}); "
                       "correct the syntax there")


def read_yaml_config(path: PathLike) -> Dict[str, Any]:
    """The mapping in YAML file `path` (an empty file: {}); ConfigError when it is missing, not valid
    YAML, or not a mapping of option names."""
    import yaml

    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such config file; give an existing YAML file (the recipe's are in conf/)")
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise yaml_syntax_error(err) from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: holds a YAML {type(values).__name__}, not a mapping of option names to values; "
                          "write it as `option: value` lines")
    return values


class LockHeld(UserError, RuntimeError):
    """Another process holds the lock; the message names it (pid, host, since when) and the lock file."""


@contextlib.contextmanager
def exclusive_lock(path: PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed) for the block, or raise LockHeld at once,
    naming the holder that the file records. The operating system drops the lock when its holder dies,
    SIGKILL included, so a killed run never leaves a stale lock behind. A POSIX record lock (lockf), not
    flock: an flock is shared with forked children (data-loader workers), which outlive a killed trainer
    for a while and kept the exp dir locked against its resume (tests/train/test_kill_resume.py)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise LockHeld(f"{what} is in use by {holder} (lock file {path}); wait for it to finish, or "
                           "stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()


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
