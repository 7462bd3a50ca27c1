"""Gradient checkpointing: same loss and same adapter gradients as the plain forward."""
import copy

import pytest
import torch

from espnet_ext.models.registry import load_model
from espnet_ext.train import targets
from espnet_ext.train.checkpointing import enable_gradient_checkpointing
from espnet_ext.train.model import LoRAConfig, build_lora_model

LANGS = ("hi", "it")


def padded(rows):
    ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(r) for r in rows], batch_first=True, padding_value=-1)
    return ids, torch.tensor([len(r) for r in rows])


def loss_and_gradients(routed, loaded):
    """One training forward/backward on a two-language batch with the model's own targets."""
    encode = targets.for_model(loaded).encode
    rows = [encode("नमस्ते दोस्त", "hi"), encode("ciao amico", "it")]
    data = {}
    for name in rows[0]:
        data[name], data[f"{name}_lengths"] = padded([row[name] for row in rows])
    torch.manual_seed(0)
    speech, lengths = torch.randn(2, 8000) * 0.1, torch.tensor([8000, 6000])
    lang = torch.tensor([[0], [1]])
    loss, _, _ = routed(speech, lengths, lang=lang, lang_lengths=torch.ones(2, dtype=torch.long), **data)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in routed.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("name, targets", [("whisper_tiny_random", ["whisper_all"]),
                                           ("owsm_tiny_random", ["owsm_attn_ffn"])])
def test_checkpointed_blocks_give_the_same_loss_and_gradients(name, targets):
    loaded = load_model(name)
    conf = LoRAConfig(languages=LANGS, rank=2, alpha=4, dropout=0.2, targets=tuple(targets))
    plain = build_lora_model(copy.deepcopy(loaded.asr_model), loaded.family, conf, pad_to_30s=name.startswith("owsm")).train()
    with torch.no_grad():
        for parameter in plain.parameters():
            if parameter.requires_grad:
                parameter.normal_(0, 0.1)  # nonzero B: the adapters take part in the gradient
    checkpointed = copy.deepcopy(plain)
    assert enable_gradient_checkpointing(checkpointed.model, loaded.family) > 0
    expected_loss, expected = loss_and_gradients(plain, loaded)
    loss, gradients = loss_and_gradients(checkpointed, loaded)
    torch.testing.assert_close(loss, expected_loss)
    assert gradients.keys() == expected.keys()
    for key, gradient in gradients.items():
        torch.testing.assert_close(gradient, expected[key], rtol=1e-5, atol=1e-6)
