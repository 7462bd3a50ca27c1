"""Paired comparison of two systems on the same utterances: the relative WER change with a bootstrap
95% confidence interval (utterances resampled with replacement, both systems on the same resample, as
Bisani & Ney, ICASSP 2004, assess small WER differences). Both systems share the reference tokens, so
the relative change of the error rate is that of the error counts."""
from typing import Mapping, Optional, Sequence, Tuple

import numpy as np


def bootstrap_relative_change(errors: Sequence[int], baseline_errors: Sequence[int], resamples: int = 1000,
                              seed: int = 0) -> Tuple[float, float, float]:
    """(relative change, 2.5th, 97.5th percentile): (errors - baseline) / baseline, as a fraction."""
    errors, baseline = np.asarray(errors, dtype=float), np.asarray(baseline_errors, dtype=float)
    if not baseline.sum():
        return float("nan"), float("nan"), float("nan")
    index = np.random.default_rng(seed).integers(0, len(errors), (resamples, len(errors)))
    base = baseline[index].sum(1)
    draws = (errors[index].sum(1) - base) / np.where(base > 0, base, np.nan)
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return float((errors.sum() - baseline.sum()) / baseline.sum()), float(low), float(high)


def paired_errors(utterances: Mapping[str, Mapping], baseline: Mapping[str, Mapping], lang: Optional[str],
                  unit: str = "word") -> Tuple[np.ndarray, np.ndarray]:
    """Both systems' errors on the utterances both scored (those of `lang`, or all), from two scores.json
    "utterances" maps; `unit` word or char."""
    ids = sorted(u for u in utterances.keys() & baseline.keys() if lang is None or utterances[u]["lang"] == lang)
    key = f"{unit}_errors"
    return np.array([utterances[u][key] for u in ids]), np.array([baseline[u][key] for u in ids])
