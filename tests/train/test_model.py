"""LoRARoutedModel: per-utterance routing from the lang file, adapter-only state, NaN guard; and
FullFinetuneModel, the same training wrapper with every weight trained."""
import copy

import pytest
import torch

from espnet_ext.lora.inject import banks, set_active_adapter
from espnet_ext.models.family import WHISPER
from espnet_ext.models.registry import load_model
from espnet_ext.train.loss import TokenLabelSmoothingLoss
from espnet_ext.train.model import LoRAConfig, NonFiniteLossError, build_full_model, build_lora_model

LANGS = ("hi", "pa", "te", "it")


@pytest.fixture(scope="module")
def _tiny():
    return load_model("whisper_tiny_random")


@pytest.fixture
def routed(_tiny):
    """A tiny routed model whose four adapters are different, nonzero deltas."""
    model = build_lora_model(copy.deepcopy(_tiny.asr_model), _tiny.family, LoRAConfig(languages=LANGS, rank=2, alpha=4), False)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for bank in banks(model.model).values():
            bank.lora_B.copy_(torch.randn(bank.lora_B.shape, generator=generator) * 0.5)
    return model.eval()


def batch(n: int = 4, samples: int = 8000, tokens: int = 6):
    """Equal-length utterances (no padding), so a batch loss is the mean of the per-utterance losses."""
    generator = torch.Generator().manual_seed(1)
    return dict(
        speech=torch.randn(n, samples, generator=generator) * 0.1,
        speech_lengths=torch.full((n,), samples),
        text=torch.randint(0, 50000, (n, tokens), generator=generator),
        text_lengths=torch.full((n,), tokens),
        lang=torch.arange(n)[:, None] % len(LANGS),
        lang_lengths=torch.ones(n, dtype=torch.long),
        utt_id=[f"utt{i}" for i in range(n)],
    )


def test_mixed_batch_routes_each_utterance_through_its_language(routed):
    data = batch()
    with torch.no_grad():
        mixed, _, _ = routed(**data)
        singles = []
        for i, lang in enumerate(LANGS):
            set_active_adapter(routed.model, lang)
            loss, _, _ = routed.model(data["speech"][i:i + 1], data["speech_lengths"][i:i + 1],
                                      data["text"][i:i + 1], data["text_lengths"][i:i + 1])
            singles.append(loss)
        set_active_adapter(routed.model, None)
        base, _, _ = routed.model(data["speech"], data["speech_lengths"], data["text"], data["text_lengths"])
    torch.testing.assert_close(mixed.sum(), torch.cat(singles).mean(), rtol=1e-5, atol=1e-4)
    assert abs(float(mixed.sum() - base.sum())) > 1e-3  # the adapters really took part


def test_state_dict_holds_only_the_adapters_and_round_trips(routed, _tiny):
    state = routed.state_dict()
    assert state and all(k.endswith((".lora_A", ".lora_B")) for k in state)
    assert len(state) == 2 * len(banks(routed.model))
    fresh = build_lora_model(copy.deepcopy(_tiny.asr_model), _tiny.family, LoRAConfig(languages=LANGS, rank=2, alpha=4), False)
    result = fresh.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key])


def test_load_refuses_a_checkpoint_of_another_bank(routed):
    state = routed.state_dict()
    state.pop(next(iter(state)))
    state["model.encoder.encoders.conv1.weight"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="does not fit this LoRA bank.*missing.*unexpected"):
        routed.load_state_dict(state)


def test_non_finite_loss_names_the_batch_and_the_bad_audio(routed):
    data = batch()
    data["speech"][2] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"utt0', 'utt1', 'utt2', 'utt3'.*non-finite audio samples in: \['utt2'\]"):
        routed(**data)


def test_language_index_outside_the_bank_is_an_error(routed):
    data = batch()
    data["lang"][1, 0] = 7
    with pytest.raises(ValueError, match=r"indices \[7\] \(utterances \['utt1'\]\)"):
        routed(**data)


def test_pad_to_30s_feeds_the_full_window(_tiny):
    model = build_lora_model(copy.deepcopy(_tiny.asr_model), _tiny.family, LoRAConfig(languages=LANGS, rank=2), True).eval()
    seen = {}
    model.model.encoder.register_forward_pre_hook(lambda _m, args: seen.update(shape=args[0].shape))
    with torch.no_grad():
        model(**batch(n=2))
    assert seen["shape"] == (2, 30 * 16000)


@pytest.mark.parametrize("conf, message", [
    ({"languages": ["hi"], "rnak": 4}, "unknown key"),
    ({"languages": []}, "languages is empty"),
    ({"languages": ["hi"], "targets": "whisper_attn_qv"}, "must be a list"),
    ({"languages": ["xx"]}, "unknown language code 'xx'"),
    ({"languages": ["hi", "hi"]}, "duplicates"),
    ({"languages": ["hi"], "rank": 0}, "rank >= 1"),
])
def test_lora_conf_errors(conf, message):
    with pytest.raises(ValueError, match=message):
        LoRAConfig.from_dict(conf)


@pytest.fixture
def full(_tiny):
    """The tiny model wrapped for full fine-tuning, from a copy whose weights were all frozen."""
    asr_model = copy.deepcopy(_tiny.asr_model).requires_grad_(False)
    return build_full_model(asr_model, WHISPER, False).eval()


def test_full_model_trains_every_weight_with_the_token_loss(full):
    """--finetune full: nothing stays frozen, no bank is injected, the loss is the LoRA model's fast one."""
    assert all(p.requires_grad for p in full.parameters()) and not banks(full.model)
    assert isinstance(full.model.criterion_att, TokenLabelSmoothingLoss)
    n = sum(p.numel() for p in full.parameters())
    assert full.trainable_report() == f"trainable parameters: {n:,} of {n:,} (100.0%)"


def test_full_model_state_is_the_whole_model_and_lang_does_not_route(full, _tiny):
    """Checkpoints must hold every weight; the lang file ESPnet still passes changes nothing."""
    assert set(full.state_dict()) == {f"model.{key}" for key in _tiny.asr_model.state_dict()}
    data = batch()
    with torch.no_grad():
        wrapped, _, _ = full(**data)
        shuffled, _, _ = full(**{**data, "lang": data["lang"].flip(0)})
        direct, _, _ = full.model(data["speech"], data["speech_lengths"], data["text"], data["text_lengths"])
    assert torch.equal(wrapped, shuffled) and torch.equal(wrapped, direct)


def test_full_model_stops_on_a_non_finite_loss(full):
    """The NaN guard is shared: a bad batch never reaches the (here: all) trained weights."""
    data = batch()
    data["speech"][1] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"non-finite audio samples in: \['utt1'\]"):
        full(**data)
