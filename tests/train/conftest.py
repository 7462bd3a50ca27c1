"""Fixtures of the stage-3 tests: a tiny corpus and shared tiny training runs (LoRA, full fine-tuning)."""
from pathlib import Path

import pytest

from train_helpers import make_corpus, train_command


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def train_capturing_the_model(command):
    """Run train_lora with `command`; returns the in-memory model ESPnet trained."""
    from espnet_ext.bin import train_lora
    from espnet_ext.train.trainer import LoRATrainer

    captured = {}
    original = LoRATrainer.run.__func__

    def capture(cls, model, *args, **kwargs):
        captured["model"] = model
        return original(cls, model, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LoRATrainer, "run", classmethod(capture))
        train_lora.main(command)
    return captured["model"]


@pytest.fixture(scope="session")
def trained(corpus, tmp_path_factory):
    """One 2-epoch run of train_lora: (exp_dir, the in-memory model ESPnet trained)."""
    exp_dir = tmp_path_factory.mktemp("exp") / "tiny_all_r4"
    return exp_dir, train_capturing_the_model(train_command(corpus, exp_dir))


@pytest.fixture(scope="session")
def trained_full(corpus, tmp_path_factory):
    """One 1-epoch run of train_lora --finetune full: (exp_dir, the in-memory model ESPnet trained)."""
    exp_dir = tmp_path_factory.mktemp("exp") / "tiny_all_full"
    return exp_dir, train_capturing_the_model(train_command(corpus, exp_dir, "--finetune", "full", "--max_epoch", "1"))
