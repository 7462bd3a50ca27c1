"""Decoding with a LoRA bank: a mixed-language batch routed per utterance (greedy and beam) gives what
each utterance gets alone with its own adapter merged into the base weights."""
import copy
import dataclasses

import pytest
import torch

from espnet_ext.decode.search import SearchConfig
from espnet_ext.decode.transcribe import make_backend, transcribe_batch
from espnet_ext.lora.inject import banks, inject, merge_adapter, unmerge_all
from decode_helpers import random_audio

from espnet_ext.models.registry import load_model

LANGS = ["hi", "pa", "te", "it"]


@pytest.fixture(scope="module")
def routed_tiny():
    base = load_model("whisper_tiny_random")
    model = dataclasses.replace(base, asr_model=copy.deepcopy(base.asr_model))
    inject(model.asr_model, ["whisper_all"], rank=4, alpha=8, languages=LANGS)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for bank in banks(model.asr_model).values():
            bank.lora_A.copy_(torch.randn(bank.lora_A.shape, generator=gen) * 0.3)
            bank.lora_B.copy_(torch.randn(bank.lora_B.shape, generator=gen) * 0.3)
    model.asr_model.eval()
    return model



@pytest.mark.parametrize("beam", [1, 2])
@torch.no_grad()
def test_mixed_batch_equals_merged_single_language(routed_tiny, beam):
    backend = make_backend(routed_tiny, pad_to_30s=False)
    audios = [random_audio(0.8, i) for i in range(4)]  # equal lengths: real-length batches are not masked
    config = SearchConfig(beam_size=beam, max_tokens=8)
    batched = transcribe_batch(backend, audios, LANGS, config)
    for i, lang in enumerate(LANGS):
        merge_adapter(routed_tiny.asr_model, lang)
        try:
            for bank in banks(routed_tiny.asr_model).values():
                bank.routing = None  # merged: the bank path is off, the base weight carries the adapter
            alone = transcribe_batch(backend, [audios[i]], [lang], config)[0]
        finally:
            unmerge_all(routed_tiny.asr_model)
        assert batched[i].text == alone.text, lang


@torch.no_grad()
def test_adapters_change_the_output(routed_tiny):
    backend = make_backend(routed_tiny, pad_to_30s=False)
    clip = [random_audio(0.8, 7)]
    outputs = {lang: transcribe_batch(backend, clip, [lang], SearchConfig(max_tokens=8))[0].text for lang in LANGS}
    assert len(set(outputs.values())) > 1
