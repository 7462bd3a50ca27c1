"""int8 decoding (espnet_ext.decode.int8): the quantised linear layer is the float one within int8's error,
the int8 copy of a decoder carries the adapter merged into it and shares everything else, and a batch
whose banks route per row falls back to the float32 decoder, with the same transcripts."""
import pytest
import torch

from espnet_ext.decode.int8 import Int8Copies, Int8Linear, int8_copy
from espnet_ext.decode.search import SearchConfig
from espnet_ext.decode.transcribe import _merged, make_backend, transcribe_batch
from espnet_ext.lora.bank import LoRABankLinear
from espnet_ext.lora.inject import banks
from decode_helpers import random_audio
from test_routed_decoding import LANGS, banked_tiny


@pytest.fixture(scope="module")
def tiny():
    return banked_tiny()


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


@pytest.mark.parametrize("bias", [False, True])
@torch.no_grad()
def test_int8_linear_is_the_float_linear_within_int8_error(bias):
    gen = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(64, 300, bias=bias)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(300, 64, generator=gen) * torch.linspace(0.01, 1.0, 300)[:, None])
    x = torch.randn(3, 5, 64, generator=gen)  # any leading shape
    got, want = Int8Linear.from_linear(linear)(x), linear(x)
    assert got.shape == want.shape
    assert relative_error(got, want) < 0.03  # per-channel scales: the small rows keep their precision (7- or 8-bit x)
    assert not torch.equal(got, want)  # it is quantised


def test_the_copy_shares_all_but_the_linear_layers_and_leaves_the_decoder_as_it_was(tiny):
    decoder = tiny.asr_model.decoder.decoders
    before = {k: v.clone() for k, v in decoder.state_dict().items()}
    clone = int8_copy(decoder)
    assert clone.token_embedding is decoder.token_embedding
    assert clone.blocks[0].attn_ln is decoder.blocks[0].attn_ln
    assert not any(isinstance(m, (torch.nn.Linear, LoRABankLinear)) for m in clone.modules())
    outer = [c for p in decoder.modules() if not isinstance(p, LoRABankLinear) for c in p.children()
             if isinstance(c, (torch.nn.Linear, LoRABankLinear))]  # (a bank's own base is not a layer of its own)
    assert any(isinstance(c, LoRABankLinear) for c in outer)
    assert sum(isinstance(m, Int8Linear) for m in clone.modules()) == len(outer)
    assert all(torch.equal(before[k], v) for k, v in decoder.state_dict().items())


@torch.no_grad()
def first_step(backend, audio, lang: str) -> torch.Tensor:
    speech, lengths = torch.tensor(audio)[None], torch.tensor([len(audio)])
    with backend.state(backend.encode(speech, lengths)) as state:
        return state.step(torch.tensor([backend.prompt(lang)]))


@torch.no_grad()
def test_the_int8_decoder_carries_the_merged_adapter(tiny):
    fp32, int8 = make_backend(tiny, pad_to_30s=False), make_backend(tiny, pad_to_30s=False, int8="decoder")
    audio = random_audio(0.8, 0)
    bare = first_step(fp32, audio, "te")
    with _merged(tiny.asr_model, "te"):
        adapted, adapted_int8 = first_step(fp32, audio, "te"), first_step(int8, audio, "te")
    assert relative_error(adapted_int8, adapted) < relative_error(bare, adapted) / 10
    with _merged(tiny.asr_model, "hi"):  # another adapter merged: another int8 copy
        other = first_step(int8, audio, "te")
    assert relative_error(other, adapted_int8) > relative_error(adapted_int8, adapted) * 10
    assert len(int8.int8._copies) == 2


@torch.no_grad()
def test_a_batch_routed_per_row_decodes_in_float32_with_the_same_transcripts(tiny):
    audios = [random_audio(s, i) for i, s in enumerate([0.8, 0.5, 1.1, 0.7])]
    config = SearchConfig(max_tokens=8)
    int8 = make_backend(tiny, pad_to_30s=False, int8="decoder")
    got = transcribe_batch(int8, audios, LANGS, config)  # four languages: routed, not merged
    want = transcribe_batch(make_backend(tiny, pad_to_30s=False), audios, LANGS, config)
    assert [h.text for h in got] == [h.text for h in want]
    assert int8.int8._copies == {}  # no int8 copy was made for a routed batch


def test_the_vocabulary_projection_is_quantised_once():
    weight = torch.randn(50, 16)
    decoders = Int8Copies("decoder", weight)
    h = torch.randn(2, 16)
    assert relative_error(decoders.vocab(h), h @ weight.T) < 0.03


@torch.no_grad()
def test_int8_all_encodes_with_an_int8_copy_of_the_merged_encoder_and_puts_the_encoder_back(tiny):
    fp32, int8 = make_backend(tiny, pad_to_30s=False), make_backend(tiny, pad_to_30s=False, int8="all")
    speech, lengths = torch.tensor(random_audio(0.8, 0))[None], torch.tensor([12800])
    encoder = tiny.asr_model.encoder
    for bank in banks(tiny.asr_model).values():
        bank.routing = None  # (earlier tests left their batch's routing set): the bare base
    bare = fp32.encode(speech, lengths).features
    with _merged(tiny.asr_model, "te"):
        want, got = fp32.encode(speech, lengths).features, int8.encode(speech, lengths).features
    assert tiny.asr_model.encoder is encoder
    assert relative_error(got, want) < relative_error(bare, want) / 5
    assert not torch.equal(got, want)  # it did run on int8 weights
    unmerged = int8.encode(speech, lengths).features  # banks not merged: no copy, float32 as it was
    assert torch.equal(unmerged, bare)


@torch.no_grad()
def test_owsm_decodes_on_int8_weights_close_to_float32():
    from espnet_ext.models.registry import load_model

    owsm = load_model("owsm_tiny_random")
    owsm.asr_model.eval()
    fp32, int8 = make_backend(owsm, pad_to_30s=True), make_backend(owsm, pad_to_30s=True, int8="all")
    audio = random_audio(1.0, 3)
    want, got = first_step(fp32, audio, "hi"), first_step(int8, audio, "hi")
    assert relative_error(got, want) < 0.05 and not torch.equal(got, want)
