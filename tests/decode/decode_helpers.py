"""Helpers shared by the decoding tests."""
import numpy as np


def random_audio(seconds: float, seed: int) -> np.ndarray:
    """Reproducible 16 kHz noise: the tiny random models need no real speech to be compared."""
    return np.random.default_rng(seed).normal(0, 0.1, int(16000 * seconds)).astype(np.float32)
