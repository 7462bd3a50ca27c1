"""Helpers shared by the LoRA tests (kept out of conftest.py so test modules can import them)."""
import torch

from espnet_ext.lora.inject import banks

LANGS = ["hi", "pa", "te", "it"]


def randomize_adapters(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every adapter nonzero A and B (B starts at zero, which would hide most bugs)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bank in banks(model).values():
            bank.lora_A.copy_(torch.randn(bank.lora_A.shape, generator=gen) * 0.1)
            bank.lora_B.copy_(torch.randn(bank.lora_B.shape, generator=gen) * 0.1)


def whisper_inputs(seed: int = 0, batch: int = 3):
    """Fixed random audio (0.5 s) and decoder tokens: (speech, lengths, tokens)."""
    gen = torch.Generator().manual_seed(seed)
    speech = torch.randn(batch, 8000, generator=gen) * 0.1
    return speech, torch.full((batch,), 8000), torch.randint(0, 50000, (batch, 4), generator=gen)


def rows(inputs, index):
    """The same inputs for the samples `index` only."""
    return tuple(t[index] for t in inputs)


def whisper_logits(asr_model: torch.nn.Module, inputs) -> torch.Tensor:
    """Decoder logits through ESPnet's Whisper encoder and decoder."""
    speech, lengths, tokens = inputs
    features, feature_lengths, _ = asr_model.encoder(speech, lengths)
    token_lengths = torch.full((tokens.size(0),), tokens.size(1))
    return asr_model.decoder(features, feature_lengths, tokens, token_lengths)[0]
