"""decode.py --finetuned_dir: the fine-tuned weights are what decodes; another base, adapter routing and a
missing directory are refused by name."""
import json
import shutil

import pytest
import torch

from espnet_ext.bin import decode
from espnet_ext.models.finetuned import CONFIG_NAME, save_finetuned
from espnet_ext.models.registry import load_model
from decode_helpers import noise_data_dir


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """(full_model dir, its state dict): the tiny base with every weight moved, saved as export.py does."""
    base = load_model("whisper_tiny_random")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in base.asr_model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    meta = {"base_model": base.name, "base_fingerprint": base.fingerprint}  # the fingerprint before the change
    model_dir = save_finetuned(base.asr_model, tmp_path_factory.mktemp("exp") / "full_model", meta)
    return model_dir, base.asr_model.state_dict()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return noise_data_dir(tmp_path_factory.mktemp("data"), ["hi", "it"], 0.6)


def decode_args(data_dir, out_dir, *extra):
    return ["--model", "whisper_tiny_random", "--data_dir", str(data_dir), "--out_dir", str(out_dir),
            "--max_tokens", "4", "--threads", "1", "--pad_to_30s", "false", *extra]


def test_decoding_uses_exactly_the_finetuned_weights(finetuned, data_dir, tmp_path, monkeypatch):
    """What decodes is the saved model, not the registry base it was rebuilt from."""
    model_dir, saved = finetuned
    seen = {}
    original = decode.decode_data_dir

    def spy(model, *args, **kwargs):
        seen["state"] = model.asr_model.state_dict()
        return original(model, *args, **kwargs)

    monkeypatch.setattr(decode, "decode_data_dir", spy)
    decode.main(decode_args(data_dir, tmp_path, "--finetuned_dir", str(model_dir)))
    assert set(seen["state"]) == set(saved)
    assert all(torch.equal(seen["state"][key], value) for key, value in saved.items())
    assert len((tmp_path / "split1" / "1" / "text").read_text(encoding="utf-8").splitlines()) == 2


def test_another_base_is_refused_naming_both(finetuned, data_dir, tmp_path):
    """Weights fine-tuned from other base weights are meaningless over this base."""
    model_dir = shutil.copytree(finetuned[0], tmp_path / "full_model")
    config = json.loads((model_dir / CONFIG_NAME).read_text())
    config["base_fingerprint"] = "0123456789abcdef"
    (model_dir / CONFIG_NAME).write_text(json.dumps(config))
    real = load_model("whisper_tiny_random").fingerprint
    with pytest.raises(SystemExit, match=rf"from base model 'whisper_tiny_random' \(fingerprint 0123456789abcdef\) "
                                         rf"but the base loaded is 'whisper_tiny_random' \(fingerprint {real}\)"):
        decode.main(decode_args(data_dir, tmp_path / "out", "--finetuned_dir", str(model_dir)))


def test_finetuned_dir_with_adapter_routing_is_refused(finetuned, data_dir, tmp_path):
    """A fully fine-tuned model has no adapters: oracle/hard routing would silently mean nothing."""
    with pytest.raises(SystemExit, match="use it with --routing none, not oracle"):
        decode.main(decode_args(data_dir, tmp_path, "--finetuned_dir", str(finetuned[0]), "--routing", "oracle"))


def test_a_missing_finetuned_dir_is_refused(data_dir, tmp_path):
    """Stage 5 before stage 3 (or a typo) names the file it looked for."""
    with pytest.raises(SystemExit, match=r"nope/model_config.json does not exist.*--finetune full"):
        decode.main(decode_args(data_dir, tmp_path, "--finetuned_dir", str(tmp_path / "nope")))
