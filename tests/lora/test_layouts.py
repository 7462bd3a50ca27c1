"""Bank layouts: which layers hold which adapters, per-layer routing plans, the shared adapter and its
file, and the tap routing the layers above it in the same pass."""
import copy

import pytest
import torch
import whisper.tokenizer

from espnet_ext.lora.adapter_files import AdapterFileError, load_adapter, load_adapter_bank, save_adapter
from espnet_ext.lora.inject import (
    SHARED,
    BankLayout,
    bank_info,
    banks,
    inject,
    language_banks,
    one_hot_weights,
    routing,
    set_language_routing,
    set_routing_weights,
    set_shared_adapter,
    shared_banks,
)
from espnet_ext.models.family import WHISPER
from espnet_ext.models.whisper_forward import Tap
from espnet_ext.train.model import LoRAConfig, build_lora_model
from lora_helpers import LANGS, randomize_adapters, whisper_inputs, whisper_logits


def layout(model, kind, k=1):
    return BankLayout(kind, k, tuple(WHISPER.encoder_block_names(model)[:k]))


@pytest.fixture
def model(whisper_tiny):
    return copy.deepcopy(whisper_tiny.asr_model).eval()


def test_layouts_place_adapters_by_encoder_depth(model):
    above = copy.deepcopy(model)
    inject(above, ["whisper_attn_qv"], 2, 4, LANGS, layout=layout(above, "above_tap"))
    assert not any(name.startswith("encoder.encoders.blocks.0.") for name in banks(above))
    assert any(name.startswith("encoder.encoders.blocks.1.") for name in banks(above))
    shared = copy.deepcopy(model)
    inject(shared, ["whisper_attn_qv"], 2, 4, LANGS, layout=layout(shared, "shared_below"))
    lower = shared_banks(shared)
    assert lower and all(name.startswith("encoder.encoders.blocks.0.") for name in lower)
    assert all(b.names == (SHARED,) for b in lower.values())
    assert set(language_banks(shared)) == set(banks(above))
    info = bank_info(shared)
    assert (info.layout.kind, info.layout.tap_layer, info.names) == ("shared_below", 1, tuple(LANGS))
    with pytest.raises(ValueError, match="needs tap_layer >= 1"):
        BankLayout("above_tap", 0)
    with pytest.raises(ValueError, match="not one of"):
        BankLayout("sideways", 1)


def test_per_layer_plans_route_only_the_layers_they_name(model):
    inject(model, ["whisper_attn_qv"], 2, 4, LANGS)
    named = [n for n in banks(model) if n.startswith("decoder.")]
    set_language_routing(model, one_hot_weights(model, ["hi", "it"]), modules=named)
    for name, bank in banks(model).items():
        assert (bank.routing is not None) == (name in named), name
    with pytest.raises(KeyError, match="no language bank"):
        set_language_routing(model, None, modules=["encoder.nothing"])


def test_shared_adapter_is_on_whenever_the_model_is_routed(model):
    inject(model, ["whisper_attn_qv"], 2, 4, LANGS, layout=layout(model, "shared_below"))
    randomize_adapters(model)
    inputs = whisper_inputs(batch=2)
    base = whisper_logits(model, inputs)
    set_shared_adapter(model, True)
    shared_only = whisper_logits(model, inputs)
    assert not torch.allclose(shared_only, base, atol=1e-4)  # the shared adapter alone changes the model
    set_routing_weights(model, None)
    torch.testing.assert_close(whisper_logits(model, inputs), base, atol=0, rtol=0)
    with routing(model, one_hot_weights(model, ["hi", "te"])):
        assert all(b.routing is not None for b in banks(model).values())
    assert all(b.routing is None for b in banks(model).values())


@pytest.mark.parametrize("lang", LANGS)
def test_the_shared_adapter_trains_on_every_language(whisper_tiny, lang):
    """A batch of any one language gives the shared adapter a gradient, and only that language's adapter."""
    conf = LoRAConfig(languages=tuple(LANGS), rank=2, alpha=4, layout="shared_below", tap_layer=1)
    trained = build_lora_model(copy.deepcopy(whisper_tiny.asr_model), WHISPER, conf, pad_to_30s=False).train()
    randomize_adapters(trained.model)
    speech, lengths, _ = whisper_inputs(batch=2)
    prompt = WHISPER.prompt(whisper.tokenizer.get_tokenizer(multilingual=True), lang)[1:]
    text = torch.tensor([prompt + [440, 1002]] * 2)
    index = LANGS.index(lang)
    loss, _, _ = trained(speech, lengths, text, torch.tensor([text.size(1)] * 2),
                         torch.full((2, 1), index), torch.ones(2, dtype=torch.long))
    loss.backward()
    for bank in shared_banks(trained.model).values():
        assert bank.lora_B.grad.abs().sum() > 0
    for bank in language_banks(trained.model).values():
        used = bank.lora_B.grad.flatten(1).abs().sum(1) > 0
        assert used.tolist() == [k == index for k in range(len(LANGS))]


def test_shared_layout_round_trips_through_adapter_files(model, whisper_tiny, tmp_path):
    inject(model, ["whisper_attn_qv"], 2, 4, LANGS, layout=layout(model, "shared_below"))
    randomize_adapters(model)
    meta = {"base_model": whisper_tiny.name, "base_fingerprint": whisper_tiny.fingerprint}
    for name in [*LANGS, SHARED]:
        save_adapter(model, name, tmp_path / name, meta)
    inputs = whisper_inputs(batch=4)
    with routing(model, one_hot_weights(model, LANGS)):
        expected = whisper_logits(model, inputs)
    fresh = copy.deepcopy(whisper_tiny.asr_model).eval()
    configs = load_adapter_bank(fresh, tmp_path, LANGS, whisper_tiny.name, whisper_tiny.fingerprint)
    assert set(configs) == {*LANGS, SHARED} and configs[SHARED]["layout"] == {"kind": "shared_below", "tap_layer": 1}
    assert set(shared_banks(fresh)) == set(shared_banks(model))
    with routing(fresh, one_hot_weights(fresh, LANGS)):
        torch.testing.assert_close(whisper_logits(fresh, inputs), expected, atol=0, rtol=0)


def test_an_above_tap_adapter_refuses_a_per_language_bank(model, whisper_tiny, tmp_path):
    above = copy.deepcopy(model)
    inject(above, ["whisper_attn_qv"], 2, 4, LANGS, layout=layout(above, "above_tap"))
    save_adapter(above, "hi", tmp_path / "hi", {"base_model": whisper_tiny.name,
                                                "base_fingerprint": whisper_tiny.fingerprint})
    inject(model, ["whisper_attn_qv"], 2, 4, LANGS)
    with pytest.raises(AdapterFileError, match=r"layout above_tap \(tap layer 1\) but the model's LoRA bank has "
                                               r"layout per_language"):
        load_adapter(model, tmp_path / "hi", whisper_tiny.name, whisper_tiny.fingerprint)


@torch.no_grad()
def test_the_tap_routes_the_layers_above_it_in_the_same_pass(model):
    """above_tap: routing weights set by the tap callback give the output of routing set before the pass,
    and the callback sees the bare base's states (no adapter below the tap)."""
    inject(model, ["whisper_all"], 2, 4, LANGS, layout=layout(model, "above_tap"))
    randomize_adapters(model)
    speech, lengths, _ = whisper_inputs(batch=2)
    lengths = torch.tensor([8000, 5000])
    weights = one_hot_weights(model, ["pa", "it"])
    set_routing_weights(model, weights)
    expected = WHISPER.encode(model, speech, lengths, False)
    set_routing_weights(model, None)
    bare = WHISPER.encode(model, speech, lengths, False, all_hidden=True)
    seen = []

    def route(hidden, frames):
        seen.append(hidden)
        set_language_routing(model, weights)

    got = WHISPER.encode(model, speech, lengths, False, tap=Tap(1, route))
    torch.testing.assert_close(got.features, expected.features, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(seen[0], bare.hidden[1], atol=0, rtol=0)
    assert not torch.allclose(got.features, bare.features, atol=1e-4)


@torch.no_grad()
def test_with_no_adapter_active_the_tapped_forward_is_the_plain_forward(model, whisper_tiny):
    inject(model, ["whisper_all"], 2, 4, LANGS, layout=layout(model, "shared_below"))
    randomize_adapters(model)
    set_routing_weights(model, None)
    speech, lengths, _ = whisper_inputs(batch=2)
    lengths = torch.tensor([8000, 3000])
    plain = WHISPER.encode(whisper_tiny.asr_model, speech, lengths, False)
    tapped = WHISPER.encode(model, speech, lengths, False, tap=Tap(1, lambda h, n: set_language_routing(model, None)))
    torch.testing.assert_close(tapped.features, plain.features, atol=0, rtol=0)


def test_owsm_layouts_cut_at_its_encoder_blocks(owsm_tiny):
    from espnet_ext.models.family import OWSM

    model = owsm_tiny.asr_model
    lower = tuple(OWSM.encoder_block_names(model)[:1])
    assert lower == ("encoder.encoders.0",)
    inject(model, ["owsm_attn"], 2, 4, LANGS, layout=BankLayout("shared_below", 1, lower))
    assert shared_banks(model) and all(n.startswith("encoder.encoders.0.") for n in shared_banks(model))
    assert any(n.startswith("encoder.encoders.1.") for n in language_banks(model))
    assert any(n.startswith("decoder.") for n in language_banks(model))
