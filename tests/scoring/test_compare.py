"""Bootstrap intervals: of an error rate, and (paired) of a relative WER change."""
import numpy as np
import pytest

from espnet_ext.scoring.compare import bootstrap_rate, bootstrap_relative_change, format_change, paired_change, paired_errors


def test_identical_systems_change_nothing_and_the_interval_is_a_point():
    errors = [1, 0, 3, 2]
    assert bootstrap_relative_change(errors, errors) == (0.0, 0.0, 0.0)


def test_interval_brackets_the_change_and_shrinks_with_more_utterances():
    rng = np.random.default_rng(0)
    base = rng.poisson(2, 2000)
    worse = base + rng.binomial(1, 0.2, 2000)  # +0.2 errors per utterance: +10% relative
    change, low, high = bootstrap_relative_change(worse, base)
    assert change == pytest.approx(0.1, abs=0.02) and low < change < high and low > 0
    _, low_small, high_small = bootstrap_relative_change(worse[:100], base[:100])
    assert high_small - low_small > high - low


def test_paired_errors_take_common_utterances_of_a_language():
    a = {"u1": {"lang": "hi", "word_errors": 3}, "u2": {"lang": "te", "word_errors": 1}, "u3": {"lang": "hi", "word_errors": 5}}
    b = {"u1": {"lang": "hi", "word_errors": 2}, "u2": {"lang": "te", "word_errors": 1}}
    errors, base = paired_errors(a, b, "hi")
    assert errors.tolist() == [3] and base.tolist() == [2]
    assert paired_errors(a, b, None)[0].tolist() == [3, 1]
    assert paired_errors(a, b, None, among={"u2", "u3"})[0].tolist() == [1]  # u3 only one system scored


def test_a_change_reads_as_percent_with_its_interval():
    assert format_change((-0.7612, -0.8049, -0.7151)) == "-76% [-80, -72]"
    assert format_change((0.1149, 0.0641, 0.1703), 1) == "+11.5% [+6.4, +17.0]"


def test_rate_interval_brackets_the_pooled_rate_and_shrinks_with_more_utterances():
    rng = np.random.default_rng(1)
    tokens = rng.integers(5, 15, 2000)
    errors = rng.binomial(tokens, 0.2)
    rate, low, high = bootstrap_rate(errors, tokens)
    assert rate == errors.sum() / tokens.sum() and low < rate < high and high - low < 0.03
    _, low_small, high_small = bootstrap_rate(errors[:50], tokens[:50])
    assert high_small - low_small > 3 * (high - low)
    assert bootstrap_rate([2, 4], [10, 20]) == (0.2, 0.2, 0.2)  # every utterance at 20%: no spread
    assert np.isnan(bootstrap_rate([0], [0])[0])


def test_a_paired_change_is_the_formatted_bootstrap_of_the_paired_errors():
    a = {"u1": {"lang": "hi", "word_errors": 3}, "u2": {"lang": "te", "word_errors": 1}, "u3": {"lang": "hi", "word_errors": 1}}
    b = {"u1": {"lang": "hi", "word_errors": 2}, "u2": {"lang": "te", "word_errors": 2}, "u3": {"lang": "hi", "word_errors": 2}}
    assert paired_change(a, b, "hi", digits=1).startswith("+0.0% [")  # 4 errors against 4
    assert paired_change(a, b).startswith("-17% [")  # 5 against 6
    assert paired_change(a, b, among={"u2"}) == "-50% [-50, -50]"  # one utterance: every resample the same
