"""Test signal builders shared by tests/data and tests/local (tests/local/conftest.py puts this folder
on sys.path)."""
from pathlib import Path

import numpy as np
import soundfile as sf


def tone(seconds: float, sample_rate: int = 16000, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    """A 0.3-amplitude sine, shaped (frames,) or (frames, channels)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


def write_tone(path: Path, seconds: float, sample_rate: int = 16000, channels: int = 1) -> Path:
    """Write a 16-bit WAV tone (any rate or channel count, to build bad inputs too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, sample_rate, channels=channels), sample_rate, subtype="PCM_16")
    return path
