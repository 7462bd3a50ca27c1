"""Fixtures for the model tests: an isolated converter cache and a tiny CTranslate2 Whisper model."""
import shutil
import sys
from pathlib import Path

import pytest
import torch

from model_helpers import write_ct2_whisper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))  # train_helpers: corpus, train_lora args


@pytest.fixture(autouse=True, scope="session")
def isolated_cache(tmp_path_factory):
    """Every conversion made by the model tests goes to a temporary ESPNET_EXT_CACHE."""
    with pytest.MonkeyPatch.context() as patch:
        cache = tmp_path_factory.mktemp("espnet_ext_cache")
        patch.setenv("ESPNET_EXT_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def tiny_whisper_checkpoint():
    """(path, checkpoint dict) of the registry's seeded tiny Whisper."""
    from espnet_ext.models.registry import whisper_checkpoint

    path = whisper_checkpoint("whisper_tiny_random")
    return path, torch.load(path, weights_only=True)


@pytest.fixture(scope="session")
def tiny_ct2_dir(tmp_path_factory, tiny_whisper_checkpoint):
    """A CTranslate2 directory (model.bin, config.json, vocabulary.json) holding the tiny Whisper."""
    _, checkpoint = tiny_whisper_checkpoint
    return write_ct2_whisper(checkpoint, tmp_path_factory.mktemp("tiny_ct2"), [[1, 0], [1, 3]])


@pytest.fixture
def tiny_ct2_copy(tmp_path, tiny_ct2_dir):
    """A private copy of the tiny CTranslate2 directory that a test may corrupt."""
    target = tmp_path / "ct2"
    shutil.copytree(tiny_ct2_dir, target)
    return target
