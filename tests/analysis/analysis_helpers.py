"""Shared by the analysis tests: the tiny random Whisper with a LoRA bank of random adapters, and its files."""
import copy
import dataclasses
from pathlib import Path
from typing import Optional, Sequence

import torch

from espnet_ext.lora.adapter_files import save_adapter
from espnet_ext.lora.inject import SHARED, BankLayout, adapter_names, banks, inject, shared_banks
from espnet_ext.models.registry import load_model

LANGS = ["hi", "pa", "te", "it"]


def shared_below(base, tap: int = 1) -> BankLayout:
    """The default layout's shape on a tiny model: a shared adapter in encoder blocks 1..tap."""
    return BankLayout("shared_below", tap, tuple(base.family.encoder_block_names(base.asr_model)[:tap]))


def random_bank(languages: Sequence[str] = tuple(LANGS), targets: Sequence[str] = ("whisper_all",),
                layout: Optional[BankLayout] = None, scale: float = 0.3, seed: int = 0, dropout: float = 0.0,
                base=None):
    """A copy of `base` (default whisper_tiny_random; in training mode, as the registry loads it) with a rank-4,
    alpha-8 bank (default layout shared_below, tap after block 1) whose lora_A and lora_B are all
    ~ N(0, scale^2): LoRA's own zero B would hide most bugs."""
    base = base or load_model("whisper_tiny_random")
    model = dataclasses.replace(base, asr_model=copy.deepcopy(base.asr_model))
    inject(model.asr_model, list(targets), rank=4, alpha=8, languages=list(languages), dropout=dropout,
           layout=layout or shared_below(base))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bank in banks(model.asr_model).values():
            bank.lora_A.copy_(torch.randn(bank.lora_A.shape, generator=gen) * scale)
            bank.lora_B.copy_(torch.randn(bank.lora_B.shape, generator=gen) * scale)
    return model


def save_bank(model, adapters_dir: Path) -> Path:
    """Every adapter of the model's bank (the shared one too, where the layout has it) as adapter files."""
    meta = {"base_model": model.name, "base_fingerprint": model.fingerprint}
    names = list(adapter_names(model.asr_model))
    if shared_banks(model.asr_model):
        names.append(SHARED)
    for name in names:
        save_adapter(model.asr_model, name, Path(adapters_dir) / name, meta)
    return Path(adapters_dir)
