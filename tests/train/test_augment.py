"""Training-time augmentation: speed perturbation, noise, SpecAugment; identity outside training."""
import copy
import math

import pytest
import torch
import yaml

from espnet_ext.bin import train_lora
from espnet_ext.models.espnet_import import import_espnet_module
from espnet_ext.models.registry import load_model
from espnet_ext.models.family import WHISPER
from espnet_ext.train.augment import AugmentConfig, WaveformAugment
from train_helpers import train_command

SpecAug = import_espnet_module("espnet2.asr.specaug.specaug").SpecAug
RATE = 16000


def tone(freq: float, seconds: float = 0.5) -> torch.Tensor:
    return torch.sin(2 * math.pi * freq * torch.arange(int(seconds * RATE)) / RATE)


def peak_frequency(wave: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(wave).abs()
    return float(spectrum.argmax()) * RATE / len(wave)


def test_inactive_config_and_eval_mode_leave_the_batch_alone():
    speech, lengths = torch.randn(2, 800), torch.tensor([800, 500])
    for augment in (WaveformAugment(AugmentConfig()).train(),
                    WaveformAugment(AugmentConfig(speed_factors=(1.1,), noise_prob=1.0)).eval()):
        out, out_lengths = augment(speech, lengths)
        assert out is speech and out_lengths is lengths


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_scales_length_and_pitch_together(factor):
    wave = tone(1000.0)
    speech = torch.stack([wave, torch.cat([wave[:4000], torch.zeros(4000)])])
    out, lengths = WaveformAugment(AugmentConfig(speed_factors=(factor,))).train()(speech, torch.tensor([8000, 4000]))
    assert lengths.tolist() == [round(8000 / factor), round(4000 / factor)]
    assert out.shape == (2, lengths.max())
    assert peak_frequency(out[0]) == pytest.approx(1000.0 * factor, rel=0.01)
    assert not out[1, lengths[1]:].any()  # re-padded with zeros


def test_noise_is_added_at_the_drawn_snr():
    torch.manual_seed(0)
    wave = tone(440.0, seconds=1.0)
    out, _ = WaveformAugment(AugmentConfig(noise_prob=1.0, noise_snr_db=(20.0, 20.0))).train()(
        wave[None], torch.tensor([len(wave)]))
    noise = out[0] - wave
    snr = 10 * math.log10(float(wave.pow(2).mean() / noise.pow(2).mean()))
    assert snr == pytest.approx(20.0, abs=0.3)


def test_same_seed_same_augmentation():
    augment = WaveformAugment(AugmentConfig(speed_factors=(0.9, 1.0, 1.1), noise_prob=0.5)).train()
    speech, lengths = torch.randn(4, 1600), torch.tensor([1600, 1200, 900, 400])
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(augment(speech, lengths))
    torch.testing.assert_close(runs[0][0], runs[1][0])
    assert runs[0][1].tolist() == runs[1][1].tolist()


@pytest.mark.parametrize("channel", ["tel", "mp3", "reverb", "snr5"])
def test_a_channel_of_the_degraded_sets_in_training_only_and_reproducible_with_the_seed(channel):
    augment = WaveformAugment(AugmentConfig(channel_prob=1.0, channels=(channel,))).train()
    speech = torch.stack([tone(440.0, 1.0), tone(1500.0, 1.0), tone(250.0, 1.0)]) * 0.3
    lengths = torch.tensor([16000, 12000, 16000])
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        runs.append(augment(speech, lengths))
    out, out_lengths = runs[0]
    assert out_lengths.tolist() == lengths.tolist()  # a channel keeps the length
    assert not torch.allclose(out[0], speech[0], atol=1e-3)  # and changes the audio
    torch.testing.assert_close(runs[1][0], out)  # same seed, same draw
    if channel in ("reverb", "snr5"):  # random rooms / noise: another seed, another draw
        assert not torch.allclose(runs[2][0], out)
    assert augment.eval()(speech, lengths)[0] is speech  # never outside training


def test_telephone_channel_removes_what_a_phone_line_cannot_carry():
    torch.manual_seed(0)
    augment = WaveformAugment(AugmentConfig(channel_prob=1.0, channels=("tel",))).train()
    out, _ = augment(tone(5000.0, 1.0)[None] * 0.3, torch.tensor([16000]))
    assert float(out.pow(2).mean()) < 1e-3 * float((tone(5000.0, 1.0) * 0.3).pow(2).mean())


@pytest.mark.parametrize("conf, message", [
    ({"speed": [1.1]}, "unknown key"),
    ({"channel_prob": 0.5, "channels": ["radio"]}, "augment_conf.channels: .*radio"),
    ({"channel_prob": 1.5}, "channel_prob"),
    ({"speed_factors": [0.0]}, "positive"),
    ({"noise_prob": 2.0}, "noise_prob"),
    ({"noise_snr_db": [30, 10]}, "noise_snr_db"),
])
def test_bad_augment_conf_is_refused(conf, message):
    with pytest.raises(ValueError, match=message):
        AugmentConfig.from_dict(conf)


def test_specaug_acts_on_whisper_features_in_training_only():
    model = copy.deepcopy(load_model("whisper_tiny_random").asr_model)
    speech, lengths = torch.randn(1, 16000) * 0.1, torch.tensor([16000])
    clean = model.eval().encoder(speech, lengths)[0]
    WHISPER.set_specaug(model, SpecAug(apply_time_warp=False, freq_mask_width_range=(30, 40),
                                             num_freq_mask=1, apply_time_mask=False))
    torch.testing.assert_close(model.eval().encoder(speech, lengths)[0], clean)
    assert not torch.allclose(model.train().encoder(speech, lengths)[0], clean)


def test_training_accepts_espnet_specaug_augment_and_checkpointing_options(tmp_path, corpus):
    """specaug is ESPnet's option, not an architecture change; all of them land in config.yaml."""
    exp = tmp_path / "exp"
    train_lora.main(train_command(
        corpus, exp, "--max_epoch", "1", "--specaug", "specaug", "--specaug_conf", "apply_time_warp=false",
        "--specaug_conf", "time_mask_width_range=[0,5]", "--augment_conf", "speed_factors=[0.9,1.1]",
        "--gradient_checkpointing", "true"))
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["specaug"] == "specaug" and config["specaug_conf"]["apply_time_warp"] is False
    assert config["augment_conf"] == {"speed_factors": [0.9, 1.1]}
    assert config["gradient_checkpointing"] is True
    assert (exp / "adapters" / "it" / "adapter_model.safetensors").is_file()
