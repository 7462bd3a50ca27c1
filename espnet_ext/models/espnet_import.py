"""The one door through which espnet_ext imports ESPnet's task classes.

Importing `espnet2.tasks.asr` or `espnet2.tasks.s2t` pulls in g2p_en, which calls `nltk.download()` at
import time when its NLTK data is missing. Offline that fails after printing a screenful of network
errors, and ESPnet also prints a flash-attention notice on every import. Neither matters to this
project (we never use English G2P or flash attention on CPU), so the import runs with `nltk.download`
made a no-op and stdout captured. Import ESPnet's tasks through `asr_task()` / `s2t_task()` only.
"""
import argparse
import contextlib
import importlib
import io
from typing import Iterator


@contextlib.contextmanager
def _quiet_espnet_import() -> Iterator[None]:
    """Make nltk.download a no-op and swallow prints while ESPnet's import chain runs."""
    import nltk

    original_download = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        nltk.download = original_download


def import_espnet_module(name: str):
    """Import the ESPnet module `name` (e.g. "espnet2.tasks.asr") without its offline noise."""
    with _quiet_espnet_import():
        return importlib.import_module(name)


def _with_whisper_choices(task):
    """`task` with this project's Whisper encoder/decoder among its choices (espnet_ext.models.whisper,
    imported here, not at the top: it imports this module)."""
    from espnet_ext.models.whisper import register_whisper_choices

    register_whisper_choices(task)
    return task


def asr_task():
    """ESPnet's ASRTask class, this project's Whisper classes registered."""
    return _with_whisper_choices(import_espnet_module("espnet2.tasks.asr").ASRTask)


def s2t_task():
    """ESPnet's S2TTask class (OWSM), this project's Whisper classes registered."""
    return _with_whisper_choices(import_espnet_module("espnet2.tasks.s2t").S2TTask)


def task_args(task, config: dict) -> argparse.Namespace:
    """ESPnet's parser defaults for `task`, overridden by `config`: what `--config x.yaml` would give."""
    defaults = vars(task.get_parser().parse_args([]))
    return argparse.Namespace(**{**defaults, **config})
