"""train_lora end to end on whisper_tiny_random: ESPnet trains, only adapters change, files export."""
import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from espnet_ext.bin import train_lora
from espnet_ext.lora.adapter_files import AdapterFileError, load_adapter_bank
from espnet_ext.models.registry import load_model, weights_fingerprint

from train_helpers import TINY_CONFIG, make_corpus, owsm_train_config, train_command

LANGS = ["hi", "pa", "te", "it"]


def reporter_stats(exp_dir):
    return torch.load(exp_dir / "checkpoint.pth", weights_only=False)["reporter"]["stats"]


def test_two_epochs_through_espnet_and_the_loss_goes_down(trained):
    exp_dir, _ = trained
    stats = reporter_stats(exp_dir)
    assert sorted(stats) == [1, 2]
    assert stats[2]["valid"]["loss"] < stats[1]["valid"]["loss"]
    assert stats[2]["train"]["loss"] < stats[1]["train"]["loss"]
    assert (exp_dir / "tensorboard" / "train").is_dir()


def test_only_adapters_change_and_the_base_stays_bit_identical(trained):
    _, model = trained
    fresh = load_model("whisper_tiny_random").asr_model.state_dict()
    trained_state = model.model.state_dict()  # the ESPnet model inside the wrapper: base + adapters
    base_keys = [k for k in trained_state if not k.endswith((".lora_A", ".lora_B"))]
    renamed = {k.replace(".base.", "."): k for k in base_keys}
    assert set(renamed) == set(fresh)
    for plain, key in renamed.items():
        assert torch.equal(trained_state[key], fresh[plain]), key
    assert all(trained_state[k].abs().sum() > 0 for k in trained_state if k.endswith(".lora_B"))


def test_exported_adapters_load_back_and_carry_their_provenance(trained):
    exp_dir, model = trained
    base = load_model("whisper_tiny_random")
    configs = load_adapter_bank(base.asr_model, exp_dir / "adapters", LANGS, base.name, base.fingerprint)
    config = configs["te"]
    assert (config["base_model"], config["base_fingerprint"]) == (base.name, base.fingerprint)
    assert (config["rank"], config["alpha"], config["targets"]) == (4, 8.0, ["whisper_attn_qv"])
    assert config["checkpoint"] == {"file": "2epoch.pth", "choice": "best", "criterion": "valid.loss",
                                    "epoch": 2, "epochs_trained": 2, "optimizer_steps": 4}
    assert config["train_data"]["utterances"] == {"hi": 2, "it": 2, "pa": 2, "te": 2}
    assert config["pad_to_30s"] is False and config["seed"] == 0
    weights = load_file(exp_dir / "adapters" / "te" / "adapter_model.safetensors")
    k = LANGS.index("te")
    key = "decoder.decoders.blocks.1.cross_attn.value"
    assert torch.equal(weights[f"{key}.lora_B"], model.model.get_submodule(key).lora_B[k])


def test_adapters_refuse_another_base(trained):
    exp_dir, _ = trained
    other = load_model("whisper_tiny_random")
    with torch.no_grad():
        other.asr_model.decoder.decoders.ln.weight.add_(1e-3)
    with pytest.raises(AdapterFileError, match="trained on base model 'whisper_tiny_random'"):
        load_adapter_bank(other.asr_model, exp_dir / "adapters", LANGS, other.name,
                          weights_fingerprint(other.asr_model))


def test_exp_dir_records_the_resolved_config_and_seed(trained):
    exp_dir, _ = trained
    config = yaml.safe_load((exp_dir / "config.yaml").read_text())
    assert config["seed"] == 0 and config["max_epoch"] == 2
    assert config["base_model"] == "whisper_tiny_random" and config["base_fingerprint"]
    assert config["encoder"] == "espnet_ext_whisper"  # the registry's architecture, not ASRTask's default
    assert config["lora_conf"]["languages"] == LANGS
    assert (exp_dir / "conf" / TINY_CONFIG.name).read_text() == TINY_CONFIG.read_text()
    assert yaml.safe_load((exp_dir / "train_lora_args.yaml").read_text())["model"] == "whisper_tiny_random"


def test_a_new_run_never_overwrites_a_training(trained, corpus):
    exp_dir, _ = trained
    with pytest.raises(SystemExit, match="already holds a training.*--resume true"):
        train_lora.main(train_command(corpus, exp_dir))


def test_resume_refuses_a_changed_base(trained, corpus, tmp_path):
    exp_dir, _ = trained
    config = yaml.safe_load((exp_dir / "config.yaml").read_text())
    config["base_fingerprint"] = "0123456789abcdef"
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit, match="was trained on whisper_tiny_random \\(fingerprint 0123456789abcdef\\)"):
        train_lora.main(train_command(corpus, tmp_path / "exp", "--resume", "true"))


def test_architecture_options_are_refused_not_ignored(tmp_path, corpus):
    with pytest.raises(SystemExit, match="model_conf: .*lsm_weight.*fixed by the registry"):
        train_lora.main(train_command(corpus, tmp_path / "exp", "--model_conf", "lsm_weight=0.0"))


def test_languages_passed_to_espnet_are_the_ones_prepared(tmp_path, corpus):
    with pytest.raises(SystemExit, match=r"languages \['pa', 'te'\] \(e.g. utterance pa-s1-00\) have no adapter"):
        train_lora.main(train_command(corpus, tmp_path / "exp", "--lora_conf", 'languages=["hi", "it"]'))


def test_every_adapter_needs_training_data(tmp_path):
    data_dir = make_corpus(tmp_path, languages=("hi", "pa", "it"))
    with pytest.raises(SystemExit, match=r"no usable utterances for \['te'\]"):
        train_lora.main(train_command(data_dir, tmp_path / "exp", "--lora_conf", f"languages={LANGS}"))


def test_nan_loss_stops_naming_the_batch_and_exports_nothing(tmp_path):
    data_dir = make_corpus(tmp_path, poison="te-s1-01")
    with pytest.raises(SystemExit, match=r"loss is nan on the batch of utterances \[.*'te-s1-01'.*\] "
                                         r"\(non-finite audio samples in: \['te-s1-01'\]\)"):
        train_lora.main(train_command(data_dir, tmp_path / "exp"))
    assert not (tmp_path / "exp" / "adapters").exists()
    assert not (tmp_path / "exp" / "checkpoint.pth").exists()


def test_owsm_trains_on_the_30s_window_and_exports(tmp_path, corpus):
    command = train_command(corpus, tmp_path / "exp")
    command[1], command[command.index("--config") + 1] = "owsm_tiny_random", str(owsm_train_config(tmp_path))
    train_lora.main(command)
    base = load_model("owsm_tiny_random")
    configs = load_adapter_bank(base.asr_model, tmp_path / "exp" / "adapters", LANGS, base.name, base.fingerprint)
    assert configs["it"]["pad_to_30s"] is True
    text_prev = (tmp_path / "exp" / "data" / "train" / "text_prev").read_text().splitlines()
    assert {line.split()[1] for line in text_prev} == {str(base.tokenizer.na)}
    assert json.loads((tmp_path / "exp" / "adapters" / "it" / "adapter_config.json").read_text())["language"] == "it"


def test_use_wandb_logs_offline_without_a_network_or_key(tmp_path, corpus, monkeypatch):
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: never logged in
    exp = tmp_path / "exp"
    train_lora.main(train_command(corpus, exp, "--max_epoch", "1", "--use_wandb", "true"))
    (run,) = (exp / "wandb").glob("offline-run-*/run-*.wandb")
    assert b"valid" in run.read_bytes() and b"loss" in run.read_bytes()  # the epoch's stats were logged
    assert (exp / "adapters" / "hi" / "adapter_config.json").is_file()


def test_each_epoch_logs_the_utterances_it_trained_on_and_their_speed(tmp_path, corpus, caplog):
    caplog.set_level("INFO")
    train_lora.main(train_command(corpus, tmp_path / "exp", "--max_epoch", "1"))
    (line,) = [r.getMessage() for r in caplog.records if "throughput" in r.getMessage()]
    n_utts = len((corpus / "text").read_text().splitlines())
    assert line.startswith(f"epoch 1 throughput: ") and f" batches, {n_utts} utterances, " in line
    assert "utterances/s" in line and "GPU" not in line
