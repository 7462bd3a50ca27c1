"""Training-time augmentation: waveform speed perturbation and additive noise, plus ESPnet's SpecAugment.

The default corpus speaks every training sentence with synthetic voices, and dev/test use voices never
heard in training, so what the adapters must learn is the language, not the training voices.
Augmentation widens the voices the adapters see at no extra data-prep cost:

- speed perturbation, as Kaldi/ESPnet's `perturb_data_dir_speed.sh` (sox `speed`: tempo and pitch
  change together), applied on the fly per utterance instead of tripling the data dir, so an epoch
  costs what it cost before. The factor is drawn from `speed_factors`; resampling is linear
  interpolation (the factors are within 10% of 1, where its aliasing is negligible).
- additive Gaussian noise at a signal-to-noise ratio drawn from `noise_snr_db`, with probability
  `noise_prob` per utterance (no noise corpus is needed offline);
- other channels, with probability `channel_prob` per utterance one of `channels` drawn uniformly: the
  degraded test sets' own transforms (espnet_ext/data/degrade.py: telephone band, MP3/Opus at low
  bitrates, a simulated room, `snr<dB>` coloured or babble noise whose talkers are the batch's other
  utterances, a `voice` shift through sox), so that training can see what those sets test;
- SpecAugment on the log-mel features: ESPnet's own `SpecAug`, configured with ESPnet's usual
  `specaug: specaug` / `specaug_conf:` options and attached where the model family applies it to
  features (`espnet_ext.models.family.ModelFamily.set_specaug`).

Randomness comes from torch's global generator, which ESPnet's trainer reseeds at every epoch
(seed + epoch), so a resumed run draws the same augmentation as an uninterrupted one (the channel
transforms take a numpy generator seeded from it).
"""
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from espnet_ext.data.degrade import apply_condition, check_condition, mix_at_snr


@dataclass(frozen=True)
class AugmentConfig:
    """`augment_conf` of a training config; the defaults change nothing."""

    speed_factors: Tuple[float, ...] = (1.0,)
    noise_prob: float = 0.0
    noise_snr_db: Tuple[float, float] = (10.0, 30.0)
    channel_prob: float = 0.0
    channels: Tuple[str, ...] = ("tel", "mp3", "opus", "reverb", "snr10")

    @classmethod
    def from_dict(cls, conf: Mapping[str, Any]) -> "AugmentConfig":
        unknown = sorted(set(conf) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"augment_conf: unknown key(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        config = cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in conf.items()})
        if not config.speed_factors or any(f <= 0 for f in config.speed_factors):
            raise ValueError(f"augment_conf.speed_factors must be positive numbers, got {config.speed_factors}")
        low, high = config.noise_snr_db
        if not 0.0 <= config.noise_prob <= 1.0 or low > high:
            raise ValueError(f"augment_conf: need 0 <= noise_prob <= 1 and noise_snr_db [low, high]; got {config}")
        if not 0.0 <= config.channel_prob <= 1.0 or not config.channels:
            raise ValueError(f"augment_conf: need 0 <= channel_prob <= 1 and at least one channel; got {config}")
        for name in config.channels:
            try:
                check_condition(name)
            except ValueError as err:
                raise ValueError(f"augment_conf.channels: {err}") from None
        return config

    @property
    def active(self) -> bool:
        return set(self.speed_factors) != {1.0} or self.noise_prob > 0 or self.channel_prob > 0


class WaveformAugment(nn.Module):
    """Speed perturbation and noise on a padded batch of waveforms; the identity in eval mode."""

    def __init__(self, config: AugmentConfig):
        super().__init__()
        self.config = config

    def forward(self, speech: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """speech (batch, samples) zero-padded, lengths (batch,) -> the augmented batch, re-padded."""
        if not self.training or not self.config.active:
            return speech, lengths
        clean = [row[:length] for row, length in zip(speech, lengths.tolist())]
        rows = [self._augment(row, clean[:i] + clean[i + 1:]) for i, row in enumerate(clean)]
        new_lengths = torch.tensor([len(row) for row in rows], dtype=lengths.dtype, device=lengths.device)
        return nn.utils.rnn.pad_sequence(rows, batch_first=True), new_lengths

    def _augment(self, wave: torch.Tensor, others: List[torch.Tensor]) -> torch.Tensor:
        factors = self.config.speed_factors
        wave = speed_perturb(wave, factors[int(torch.randint(len(factors), ()))])
        if self.config.channel_prob > 0 and float(torch.rand(())) < self.config.channel_prob:
            wave = other_channel(wave, self.config.channels, others)
        if self.config.noise_prob > 0 and float(torch.rand(())) < self.config.noise_prob:
            low, high = self.config.noise_snr_db
            wave = add_noise(wave, low + (high - low) * float(torch.rand(())))
        return wave


def other_channel(wave: torch.Tensor, channels: Tuple[str, ...], talkers: List[torch.Tensor]) -> torch.Tensor:
    """One of `channels` (degrade.py's conditions) drawn from torch's generator, applied to a 1-D waveform."""
    name = channels[int(torch.randint(len(channels), ()))]
    rng = np.random.default_rng(int(torch.randint(2 ** 62, ())))
    out, _ = apply_condition(name, wave.detach().cpu().float().numpy(), rng,
                             [t.detach().cpu().float().numpy() for t in talkers])
    return torch.from_numpy(np.ascontiguousarray(out)).to(wave.device, wave.dtype)


def add_noise(wave: torch.Tensor, snr_db: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """White Gaussian noise at `snr_db` below the waveform's mean power (no noise corpus needed)."""
    return mix_at_snr(wave, torch.randn(wave.shape, generator=generator, dtype=wave.dtype), snr_db)


def speed_perturb(wave: torch.Tensor, factor: float) -> torch.Tensor:
    """Tempo and pitch together by `factor` (sox `speed`; 1.1 = 10% faster and higher), by linear
    resampling of a 1-D waveform."""
    if factor == 1.0:
        return wave
    size = max(1, round(len(wave) / factor))
    return F.interpolate(wave[None, None], size=size, mode="linear", align_corners=False)[0, 0]
