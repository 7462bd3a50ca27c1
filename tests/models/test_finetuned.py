"""Fine-tuned model directories: tied weights stored once and restored, a strict load, clear refusals."""
import json

import pytest
import safetensors.torch
import torch
from torch import nn

from espnet_ext.models.finetuned import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    FinetunedFileError,
    load_finetuned,
    save_finetuned,
)

META = {"base_model": "toy", "base_fingerprint": "0123456789abcdef"}


class TiedDecoder(nn.Module):
    """Whisper's pattern: the output projection is the token embedding itself."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(7, 4)
        self.out = nn.Linear(4, 7, bias=False)
        self.out.weight = self.embed.weight


def test_tied_weights_are_stored_once_and_restored(tmp_path):
    """safetensors refuses shared tensors; the alias must come back, or the strict load would fail."""
    model = TiedDecoder()
    save_finetuned(model, tmp_path, META)
    assert list(safetensors.torch.load_file(tmp_path / WEIGHTS_NAME)) == ["embed.weight"]
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert config["tied"] == {"out.weight": "embed.weight"} and config["parameters"] == 28
    fresh = TiedDecoder()
    load_finetuned(fresh, tmp_path, "toy", META["base_fingerprint"])
    assert torch.equal(fresh.out.weight, model.embed.weight)


def test_a_weight_missing_from_the_file_is_refused(tmp_path):
    """Every weight must come from the file: a silently kept base weight would mislabel the system."""
    save_finetuned(nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2)), tmp_path, META)
    tensors = safetensors.torch.load_file(tmp_path / WEIGHTS_NAME)
    del tensors["1.weight"]
    safetensors.torch.save_file(tensors, tmp_path / WEIGHTS_NAME)
    with pytest.raises(FinetunedFileError, match=r"missing \['1.weight'\] \(1\), unexpected \[\] \(0\)"):
        load_finetuned(nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2)), tmp_path, "toy", META["base_fingerprint"])


def test_meta_must_name_the_base(tmp_path):
    """Without the base's name and fingerprint a loader could not refuse a wrong base later."""
    with pytest.raises(ValueError, match=r"missing \['base_fingerprint'\]"):
        save_finetuned(nn.Linear(2, 2), tmp_path, {"base_model": "toy"})
    assert not (tmp_path / CONFIG_NAME).exists()
