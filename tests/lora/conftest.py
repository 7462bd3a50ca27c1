"""Tiny random Whisper / OWSM models for the LoRA tests, fresh (deep-copied) for every test."""
import copy
from dataclasses import dataclass

import pytest
import torch

from espnet_ext.models.registry import load_model


@dataclass
class Tiny:
    asr_model: torch.nn.Module
    name: str
    fingerprint: str


def _fresh(loaded) -> Tiny:
    return Tiny(copy.deepcopy(loaded.asr_model).eval(), loaded.name, loaded.fingerprint)


@pytest.fixture(scope="session")
def _whisper_loaded():
    return load_model("whisper_tiny_random")


@pytest.fixture(scope="session")
def _owsm_loaded():
    return load_model("owsm_tiny_random")


@pytest.fixture
def whisper_tiny(_whisper_loaded) -> Tiny:
    return _fresh(_whisper_loaded)


@pytest.fixture
def new_whisper(_whisper_loaded):
    """Another fresh copy on demand, for tests that need a second model (e.g. to load into)."""
    return lambda: _fresh(_whisper_loaded)


@pytest.fixture
def owsm_tiny(_owsm_loaded) -> Tiny:
    return _fresh(_owsm_loaded)
