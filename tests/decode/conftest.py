"""Shared by the tests of users' transcription (test_service.py) and the demo page (test_demo.py)."""
import copy
import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from espnet_ext.bin import train_lid
from espnet_ext.decode.search import SearchConfig
from espnet_ext.decode.service import Transcriber
from espnet_ext.lora.adapter_files import save_adapter
from espnet_ext.lora.inject import SHARED, BankLayout, banks, inject
from espnet_ext.models.family import WHISPER
from espnet_ext.models.registry import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import make_corpus  # noqa: E402

LANGS = ["hi", "pa", "te", "it"]


@pytest.fixture(scope="session")
def tiny_exp(tmp_path_factory):
    """exp/adapters (a shared_below bank, tap after block 1, random adapters) and exp/lid/linear on its tap."""
    root = tmp_path_factory.mktemp("exp")
    base = load_model("whisper_tiny_random")
    model = dataclasses.replace(base, asr_model=copy.deepcopy(base.asr_model))
    lower = tuple(WHISPER.encoder_block_names(model.asr_model)[:1])
    inject(model.asr_model, ["whisper_all"], rank=4, alpha=8, languages=LANGS, layout=BankLayout("shared_below", 1, lower))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for bank in banks(model.asr_model).values():
            bank.lora_A.copy_(torch.randn(bank.lora_A.shape, generator=gen) * 0.3)
            bank.lora_B.copy_(torch.randn(bank.lora_B.shape, generator=gen) * 0.3)
    meta = {"base_model": base.name, "base_fingerprint": base.fingerprint}
    for name in LANGS + [SHARED]:
        save_adapter(model.asr_model, name, root / "adapters" / name, meta)
    data = make_corpus(root)
    train_lid.main(["--model", "whisper_tiny_random", "--adapter_dir", str(root / "adapters"), "--train_dir", str(data),
                    "--dev_dir", str(data), "--test_dir", str(data), "--out_dir", str(root / "lid"), "--heads", "linear",
                    "--epochs", "2", "--threads", "1"])
    return root


@pytest.fixture(scope="session")
def transcriber(tiny_exp):
    return Transcriber(tiny_exp, head="linear", switch_penalty=4.0, search=SearchConfig(max_tokens=6))
