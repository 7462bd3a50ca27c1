"""Bootstrap 95% confidence intervals over utterances (resampled with replacement), as Bisani & Ney,
ICASSP 2004, assess small WER differences: of one system's error rate, and of the relative WER change
between two systems on the same utterances (paired: both systems on the same resample). Both systems
share the reference tokens, so the relative change of the error rate is that of the error counts."""
from typing import Collection, Mapping, Optional, Sequence, Tuple

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


def bootstrap_rate(errors: Sequence[int], tokens: Sequence[int], resamples: int = 1000, seed: int = 0
                   ) -> Tuple[float, float, float]:
    """(error rate, 2.5th, 97.5th percentile) as fractions: sum(errors) / sum(tokens) over the utterances,
    and its 95% interval over resamples of the utterances (how far the rate of another draw of test
    utterances like these could be)."""
    errors, tokens = np.asarray(errors, dtype=float), np.asarray(tokens, dtype=float)
    if not tokens.sum():
        return float("nan"), float("nan"), float("nan")
    index = np.random.default_rng(seed).integers(0, len(errors), (resamples, len(errors)))
    total = tokens[index].sum(1)
    draws = errors[index].sum(1) / np.where(total > 0, total, np.nan)
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return float(errors.sum() / tokens.sum()), float(low), float(high)


def paired_errors(utterances: Mapping[str, Mapping], baseline: Mapping[str, Mapping], lang: Optional[str],
                  unit: str = "word", among: Optional[Collection[str]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Both systems' errors on the utterances both scored (those of `lang`, or all; only those `among`
    where given), from two scores.json "utterances" maps; `unit` word or char."""
    ids = sorted(u for u in utterances.keys() & baseline.keys()
                 if (lang is None or utterances[u]["lang"] == lang) and (among is None or u in among))
    key = f"{unit}_errors"
    return np.array([utterances[u][key] for u in ids]), np.array([baseline[u][key] for u in ids])


def format_change(change: Sequence[float], digits: int = 0) -> str:
    """(relative change, CI low, CI high) as fractions -> "-76% [-80, -72]" (`digits` after the point)."""
    return "{:+.{d}f}% [{:+.{d}f}, {:+.{d}f}]".format(*(100 * x for x in change), d=digits)


def paired_change(utterances: Mapping[str, Mapping], baseline: Mapping[str, Mapping], lang: Optional[str] = None,
                  among: Optional[Collection[str]] = None, digits: int = 0) -> str:
    """"+11.5% [+6.4, +17.0]": the relative WER change of one system against a baseline (two scores.json
    "utterances" maps) on the utterances both scored (of `lang`, or all; only those `among` where given),
    with its paired bootstrap 95% interval: the one way every table states a comparison."""
    return format_change(bootstrap_relative_change(*paired_errors(utterances, baseline, lang, among=among)), digits)
