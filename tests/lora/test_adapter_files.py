"""Adapter directories: exact round trips, and refusals that name what is wrong and where."""
import json

import pytest
import safetensors.torch
import torch

from espnet_ext.lora.adapter_files import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    AdapterFileError,
    load_adapter,
    load_adapter_bank,
    save_adapter,
)
from espnet_ext.lora.inject import (
    adapter_names,
    adapter_state_dict,
    banks,
    inject,
    one_hot_weights,
    set_routing_weights,
)
from lora_helpers import LANGS, randomize_adapters, whisper_inputs, whisper_logits

TARGETS = ["whisper_attn_qv", "decoder.decoders.blocks.*.mlp.2"]


def trained(tiny, seed=0):
    """The tiny model with a randomly 'trained' four-language bank."""
    inject(tiny.asr_model, TARGETS, 4, 8, LANGS, dropout=0.1)
    randomize_adapters(tiny.asr_model, seed)
    return tiny.asr_model


def meta(tiny, **extra):
    return {"base_model": tiny.name, "base_fingerprint": tiny.fingerprint, "training_data": "train_te",
            "steps": 120, **extra}


def save_all(tiny, root):
    for lang in LANGS:
        save_adapter(tiny.asr_model, lang, root / lang, meta(tiny))


def test_save_writes_config_and_only_that_adapter(whisper_tiny, tmp_path):
    model = trained(whisper_tiny)
    save_adapter(model, "te", tmp_path / "te", meta(whisper_tiny))
    config = json.loads((tmp_path / "te" / CONFIG_NAME).read_text())
    assert config["language"] == "te" and config["base_model"] == "whisper_tiny_random"
    assert config["base_fingerprint"] == whisper_tiny.fingerprint
    assert (config["rank"], config["alpha"], config["dropout"]) == (4, 8.0, 0.1)
    assert config["targets"] == TARGETS and config["modules"] == list(banks(model))
    assert (config["training_data"], config["steps"]) == ("train_te", 120)
    tensors = safetensors.torch.load_file(tmp_path / "te" / WEIGHTS_NAME)
    expected = adapter_state_dict(model, "te")
    assert tensors.keys() == expected.keys() and all(torch.equal(tensors[k], v) for k, v in expected.items())
    assert sorted(p.name for p in (tmp_path / "te").iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]  # no temp files


def test_save_needs_the_base_identity(whisper_tiny, tmp_path):
    with pytest.raises(ValueError, match="base_fingerprint"):
        save_adapter(trained(whisper_tiny), "te", tmp_path, {"base_model": whisper_tiny.name})


def test_round_trip_into_a_fresh_model_is_exact(whisper_tiny, new_whisper, tmp_path):
    model = trained(whisper_tiny)
    save_adapter(model, "hi", tmp_path / "hi", meta(whisper_tiny))
    fresh = new_whisper()
    config = load_adapter(fresh.asr_model, tmp_path / "hi", fresh.name, fresh.fingerprint)
    assert config["language"] == "hi" and adapter_names(fresh.asr_model) == ("hi",)
    loaded = adapter_state_dict(fresh.asr_model, "hi")
    assert all(torch.equal(loaded[k], v) for k, v in adapter_state_dict(model, "hi").items())
    inputs = whisper_inputs(batch=2)
    with torch.no_grad():
        set_routing_weights(model, one_hot_weights(model, ["hi", "hi"]))
        set_routing_weights(fresh.asr_model, one_hot_weights(fresh.asr_model, ["hi", "hi"]))
        assert torch.equal(whisper_logits(fresh.asr_model, inputs), whisper_logits(model, inputs))


def test_bank_of_four_loads_every_language(whisper_tiny, new_whisper, tmp_path):
    model = trained(whisper_tiny, seed=3)
    save_all(whisper_tiny, tmp_path)
    fresh = new_whisper()
    configs = load_adapter_bank(fresh.asr_model, tmp_path, LANGS, fresh.name, fresh.fingerprint)
    assert list(configs) == LANGS and adapter_names(fresh.asr_model) == tuple(LANGS)
    for lang in LANGS:
        ours, theirs = adapter_state_dict(fresh.asr_model, lang), adapter_state_dict(model, lang)
        assert all(torch.equal(ours[k], v) for k, v in theirs.items())


def test_wrong_base_is_refused_naming_both(whisper_tiny, owsm_tiny, tmp_path):
    save_adapter(trained(whisper_tiny), "pa", tmp_path / "pa", meta(whisper_tiny))
    with pytest.raises(AdapterFileError) as error:
        load_adapter(owsm_tiny.asr_model, tmp_path / "pa", owsm_tiny.name, owsm_tiny.fingerprint)
    message = str(error.value)
    for part in ("whisper_tiny_random", whisper_tiny.fingerprint, "owsm_tiny_random", owsm_tiny.fingerprint,
                 str(tmp_path / "pa")):
        assert part in message
    assert not banks(owsm_tiny.asr_model)
    with pytest.raises(AdapterFileError, match="fingerprint"):  # same name, other weights
        load_adapter(whisper_tiny.asr_model, tmp_path / "pa", whisper_tiny.name, "0" * 16)


def test_rank_and_target_mismatch_are_refused(whisper_tiny, new_whisper, tmp_path):
    save_adapter(trained(whisper_tiny), "it", tmp_path / "it", meta(whisper_tiny))
    other_rank = new_whisper()
    inject(other_rank.asr_model, TARGETS, 2, 8, LANGS)
    with pytest.raises(AdapterFileError, match="rank/alpha 4/8 vs the bank's 2/8"):
        load_adapter(other_rank.asr_model, tmp_path / "it", other_rank.name, other_rank.fingerprint)
    other_targets = new_whisper()
    inject(other_targets.asr_model, ["whisper_attn"], 4, 8, LANGS)
    with pytest.raises(AdapterFileError, match="only in the bank: .*attn.key"):
        load_adapter(other_targets.asr_model, tmp_path / "it", other_targets.name, other_targets.fingerprint)


def test_missing_and_corrupt_files_are_refused(whisper_tiny, tmp_path):
    model = trained(whisper_tiny)
    with pytest.raises(AdapterFileError, match=CONFIG_NAME):
        load_adapter(model, tmp_path / "nowhere", whisper_tiny.name, whisper_tiny.fingerprint)
    save_adapter(model, "te", tmp_path / "te", meta(whisper_tiny))
    weights = tmp_path / "te" / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(AdapterFileError, match=f"{weights}.*not a readable safetensors"):
        load_adapter(model, tmp_path / "te", whisper_tiny.name, whisper_tiny.fingerprint)
    weights.unlink()
    with pytest.raises(AdapterFileError, match=f"{weights} is missing"):
        load_adapter(model, tmp_path / "te", whisper_tiny.name, whisper_tiny.fingerprint)
    (tmp_path / "te" / CONFIG_NAME).write_text("{not json")
    with pytest.raises(AdapterFileError, match="not valid JSON"):
        load_adapter(model, tmp_path / "te", whisper_tiny.name, whisper_tiny.fingerprint)


def test_bank_refuses_a_missing_or_mislabelled_language(whisper_tiny, new_whisper, tmp_path):
    trained(whisper_tiny)
    save_all(whisper_tiny, tmp_path)
    (tmp_path / "it").rename(tmp_path / "xx")
    fresh = new_whisper()
    with pytest.raises(AdapterFileError, match=r"no adapter directory .*it; .* holds \['hi', 'pa', 'te', 'xx'\]"):
        load_adapter_bank(fresh.asr_model, tmp_path, LANGS, fresh.name, fresh.fingerprint)
    (tmp_path / "xx").rename(tmp_path / "it")
    (tmp_path / "te").rename(tmp_path / "tmp")
    (tmp_path / "pa").rename(tmp_path / "te")
    (tmp_path / "tmp").rename(tmp_path / "pa")
    with pytest.raises(AdapterFileError, match="adapter for 'te', not 'pa'"):
        load_adapter_bank(fresh.asr_model, tmp_path, LANGS, fresh.name, fresh.fingerprint)
    assert not banks(fresh.asr_model)  # checked before anything was injected
