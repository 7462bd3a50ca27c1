"""train_lora --finetune full on whisper_tiny_random: every weight trains, full_model/ exports and loads back."""
import pytest
import torch
import yaml

from espnet_ext.bin import train_lora
from espnet_ext.models.finetuned import load_finetuned
from espnet_ext.models.registry import load_model

from train_helpers import TINY_CONFIG, train_command


def test_full_training_changes_the_base_weights(trained_full):
    """The reference system must train the base itself, encoder and decoder, not adapters."""
    _, model = trained_full
    fresh = load_model("whisper_tiny_random").asr_model.state_dict()
    trained = model.model.state_dict()
    assert set(trained) == set(fresh)  # no bank was injected
    changed = {name for name, p in model.model.named_parameters() if not torch.equal(p, fresh[name])}
    assert {"encoder.encoders.conv1.weight", "decoder.decoders.token_embedding.weight"} <= changed
    assert len(changed) > 0.9 * len(list(model.model.parameters()))


def test_full_model_export_is_the_trained_model_with_its_provenance(trained_full):
    """Decoding loads full_model/ over a fresh registry base: it must get exactly the trained weights."""
    exp_dir, model = trained_full
    base = load_model("whisper_tiny_random")
    config = load_finetuned(base.asr_model, exp_dir / "full_model", base.name, base.fingerprint)
    loaded = base.asr_model.state_dict()
    for key, value in model.model.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert config["finetune"] == "full" and config["base_fingerprint"] == base.fingerprint  # the original base's
    assert config["parameters"] == sum(p.numel() for p in base.asr_model.parameters())
    assert config["checkpoint"] == {"file": "1epoch.pth", "choice": "best", "criterion": "valid.loss",
                                    "epoch": 1, "epochs_trained": 1, "optimizer_steps": 2}
    assert config["train_data"]["utterances"] == {"hi": 2, "it": 2, "pa": 2, "te": 2}
    assert set(config["losses"]) == {"train", "valid"} and config["seed"] == 0 and config["pad_to_30s"] is False
    assert not (exp_dir / "adapters").exists()
    assert yaml.safe_load((exp_dir / "config.yaml").read_text())["finetune"] == "full"


def test_resume_refuses_another_finetune(trained_full, corpus, tmp_path):
    """Resuming a full fine-tuning as LoRA (or back) would load a checkpoint of the other kind."""
    exp_dir, _ = trained_full
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "config.yaml").write_text((exp_dir / "config.yaml").read_text())
    with pytest.raises(SystemExit, match="holds a --finetune full training; resume it as such"):
        train_lora.main(train_command(corpus, tmp_path / "exp", "--resume", "true"))


def test_a_misspelt_finetune_in_the_config_is_refused(corpus, tmp_path):
    """ESPnet's parser takes a config file's values unchecked: 'ful' must not silently train LoRA."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["finetune"] = "ful"
    path = tmp_path / "train_ful.yaml"
    path.write_text(yaml.safe_dump(config))
    command = train_command(corpus, tmp_path / "exp")
    command[command.index("--config") + 1] = str(path)
    with pytest.raises(SystemExit, match=r"finetune: 'ful' is not one of \('lora', 'full'\)"):
        train_lora.main(command)
