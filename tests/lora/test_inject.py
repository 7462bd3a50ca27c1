"""Injection by name into the tiny Whisper/OWSM, routing through the whole model, counting, exporting."""
import pytest
import torch
from torch import nn

from espnet_ext.lora.bank import LoRABankLinear
from espnet_ext.lora.inject import (
    TARGET_PRESETS,
    adapter_state_dict,
    banks,
    inject,
    load_adapter_state_dict,
    merge_adapter,
    one_hot_weights,
    parameter_counts,
    reorder_routing_weights,
    routing,
    set_active_adapter,
    set_routing_weights,
    trainable_report,
    unmerge_all,
)

from lora_helpers import LANGS, randomize_adapters, rows, whisper_inputs, whisper_logits


def test_glob_star_stays_within_one_component(whisper_tiny):
    model = whisper_tiny.asr_model
    names = inject(model, ["decoder.decoders.blocks.*.attn.query"], 2, 4, LANGS)
    assert names == ["decoder.decoders.blocks.0.attn.query", "decoder.decoders.blocks.1.attn.query"]
    assert not isinstance(model.decoder.decoders.blocks[0].cross_attn.query, LoRABankLinear)


def test_whisper_presets_and_regex(whisper_tiny):
    model = whisper_tiny.asr_model
    names = inject(model, ["whisper_attn_qv", r"re:encoder\.encoders\.blocks\.1\.mlp\.[02]"], 2, 4, LANGS)
    assert len(names) == 2 * 2 + 2 * 4 + 2  # encoder q,v; decoder self+cross q,v; two MLP layers
    assert "decoder.decoders.blocks.1.cross_attn.value" in names
    assert all(".key" not in n and ".out" not in n for n in names)
    assert set(names) == set(banks(model))


def test_whisper_all_wraps_every_block_linear(whisper_tiny):
    model = whisper_tiny.asr_model
    linears = {n for n, m in model.named_modules() if isinstance(m, nn.Linear) and ".blocks." in n}
    assert set(inject(model, TARGET_PRESETS["whisper_all"], 2, 4, LANGS)) == linears


def test_owsm_preset_targets_attention_and_feed_forward(owsm_tiny):
    names = inject(owsm_tiny.asr_model, ["owsm_attn_ffn"], 2, 4, LANGS)
    leaves = {n.rsplit(".", 1)[1] for n in names}
    assert leaves == {"linear_q", "linear_k", "linear_v", "linear_out", "w_1", "w_2"}
    assert any(n.startswith("encoder.") for n in names) and any(n.startswith("decoder.") for n in names)
    assert not any("linear_pos" in n or "cgmlp" in n or "output_layer" in n for n in names)


def test_pattern_matching_nothing_is_an_error(whisper_tiny):
    with pytest.raises(ValueError) as error:
        inject(whisper_tiny.asr_model, ["whisper_attn_qv", "encoder.encoders.blocks.*.attn.q"], 2, 4, LANGS)
    message = str(error.value)
    assert "'encoder.encoders.blocks.*.attn.q'" in message and "encoder.encoders.blocks.0.attn.query" in message
    assert not banks(whisper_tiny.asr_model)  # nothing was replaced


def test_inject_twice_is_refused(whisper_tiny):
    inject(whisper_tiny.asr_model, ["whisper_attn_qv"], 2, 4, LANGS)
    with pytest.raises(ValueError, match="already holds LoRA banks"):
        inject(whisper_tiny.asr_model, ["whisper_attn"], 2, 4, LANGS)


def test_zero_b_leaves_the_model_unchanged(whisper_tiny):
    model = whisper_tiny.asr_model
    inputs = whisper_inputs()
    with torch.no_grad():
        before = whisper_logits(model, inputs)
        inject(model, ["whisper_all"], 4, 8, LANGS, dropout=0.5)
        assert not any(bank.training for bank in banks(model).values())  # eval model: no LoRA dropout
        set_routing_weights(model, torch.tensor([[0.2, 0.3, 0.5, 0.0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]]))
        assert torch.equal(whisper_logits(model, inputs), before)


def test_one_hot_mixed_batch_equals_each_sample_alone(whisper_tiny):
    model = whisper_tiny.asr_model
    inject(model, ["whisper_all"], 4, 8, LANGS)
    randomize_adapters(model)
    inputs, chosen = whisper_inputs(), ["te", "hi", "te"]
    with torch.no_grad():
        base = whisper_logits(model, inputs)
        with routing(model, one_hot_weights(model, chosen)):
            mixed = whisper_logits(model, inputs)
        for b, lang in enumerate(chosen):
            set_active_adapter(model, lang)
            torch.testing.assert_close(mixed[b : b + 1], whisper_logits(model, rows(inputs, [b])), atol=1e-4, rtol=0)
    assert (mixed - base).abs().max() > 1e-2  # the adapters really changed the output


def test_only_adapter_parameters_get_gradients(whisper_tiny):
    model = whisper_tiny.asr_model.train()
    inject(model, ["whisper_all"], 2, 4, LANGS)
    set_routing_weights(model, one_hot_weights(model, ["hi", "te", "hi"]))
    whisper_logits(model, whisper_inputs()).logsumexp(-1).mean().backward()
    for name, param in model.named_parameters():
        is_adapter = name.endswith((".lora_A", ".lora_B"))
        assert param.requires_grad == is_adapter, name
        assert (param.grad is not None) == is_adapter, name
    bank = banks(model)["decoder.decoders.blocks.1.mlp.2"]
    used, unused = [bank.index(n) for n in ("hi", "te")], [bank.index(n) for n in ("pa", "it")]
    assert all(bank.lora_B.grad[k].abs().sum() > 0 for k in used)  # A's grad is 0 while B = 0
    assert all(bank.lora_B.grad[k].abs().sum() == 0 for k in unused)  # no sample routed there


def test_reorder_routing_weights_follows_the_batch(whisper_tiny):
    model = whisper_tiny.asr_model
    inject(model, ["whisper_attn"], 2, 4, LANGS)
    randomize_adapters(model)
    inputs = whisper_inputs()
    index = torch.tensor([2, 2, 0, 1])
    with torch.no_grad():
        set_routing_weights(model, torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]))
        full = whisper_logits(model, inputs)
        reorder_routing_weights(model, index)
        reordered = whisper_logits(model, rows(inputs, index))
    torch.testing.assert_close(reordered, full[index], atol=1e-4, rtol=0)


def test_routing_context_restores_the_previous_routing(whisper_tiny):
    model = whisper_tiny.asr_model
    inject(model, ["whisper_attn_qv"], 2, 4, LANGS)
    set_active_adapter(model, "pa")
    before = {id(b.routing) for b in banks(model).values()}
    with routing(model, one_hot_weights(model, ["it"])):
        assert {b.routing.adapter for b in banks(model).values()} == {LANGS.index("it")}
    assert {id(b.routing) for b in banks(model).values()} == before
    with pytest.raises(KeyError, match="'xx'"):
        set_active_adapter(model, "xx")


def test_merge_adapter_matches_routing_and_unmerge_restores_every_weight(whisper_tiny):
    model = whisper_tiny.asr_model
    inject(model, ["whisper_all"], 4, 8, LANGS)
    randomize_adapters(model)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = whisper_inputs()
    with torch.no_grad():
        set_active_adapter(model, "pa")
        routed = whisper_logits(model, inputs)
        merge_adapter(model, "pa")
        merged = whisper_logits(model, inputs)
    torch.testing.assert_close(merged, routed, atol=1e-5, rtol=1e-5)  # logits ~3: float32 sums
    unmerge_all(model)
    restored = model.state_dict()
    assert all(torch.equal(restored[k], v) for k, v in original.items())


def test_trainable_report_counts(whisper_tiny):
    model = whisper_tiny.asr_model
    base_total = sum(p.numel() for p in model.parameters())
    shapes = {n: (m.in_features, m.out_features) for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    names = inject(model, ["whisper_attn_qv", "decoder.decoders.blocks.*.mlp.0"], 4, 8, LANGS)
    per_adapter = sum(4 * (shapes[n][0] + shapes[n][1]) for n in names)
    counts = parameter_counts(model)
    assert counts == {"base": base_total, "adapters": 4 * per_adapter, "per_adapter": per_adapter,
                      "shared": 0, "trainable": 4 * per_adapter}
    report = trainable_report(model)
    assert f"{4 * per_adapter:,} ({100 * 4 * per_adapter / base_total:.3f}% of {base_total:,}" in report
    assert f"per adapter: {per_adapter:,}" in report and f"{len(names)} layers" in report


def test_adapter_state_dict_round_trip_touches_one_slot(whisper_tiny):
    model = whisper_tiny.asr_model
    inject(model, ["whisper_attn_qv"], 2, 4, LANGS)
    randomize_adapters(model, seed=1)
    state = adapter_state_dict(model, "te")
    assert len(state) == 2 * len(banks(model))
    assert state["encoder.encoders.blocks.0.attn.query.lora_A"].shape == (2, 64)
    others = {n: adapter_state_dict(model, n) for n in ("hi", "pa", "it")}
    randomize_adapters(model, seed=2)
    load_adapter_state_dict(model, "te", state)
    assert all(torch.equal(v, adapter_state_dict(model, "te")[k]) for k, v in state.items())
    assert not torch.equal(others["hi"]["encoder.encoders.blocks.0.attn.query.lora_A"],
                           adapter_state_dict(model, "hi")["encoder.encoders.blocks.0.attn.query.lora_A"])
    with pytest.raises(ValueError, match="missing"):
        load_adapter_state_dict(model, "te", dict(list(state.items())[1:]))


def test_owsm_mixed_batch_equals_each_sample_alone(owsm_tiny):
    model = owsm_tiny.asr_model
    inject(model, ["owsm_attn_ffn"], 2, 4, LANGS)
    randomize_adapters(model)
    feats = torch.randn(2, 40, 80, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([40, 40])
    with torch.no_grad():
        set_routing_weights(model, one_hot_weights(model, ["pa", "it"]))
        mixed = model.encoder(feats, lengths)[0]
        for b, lang in enumerate(["pa", "it"]):
            set_active_adapter(model, lang)
            alone = model.encoder(feats[b : b + 1], lengths[b : b + 1])[0]
            torch.testing.assert_close(mixed[b : b + 1], alone, atol=1e-4, rtol=0)
        set_routing_weights(model, None)
        assert (model.encoder(feats, lengths)[0] - mixed).abs().max() > 1e-2
