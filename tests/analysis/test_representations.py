"""Representation space: linear CKA's known answers, the cross-validated probes and their control, and
the analysis end to end on the tiny random Whisper with a shared_below bank."""
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from espnet_ext.analysis.representations import (
    CONTROL_SEEDS,
    TooFewProbeUtterances,
    cka_by_layer,
    linear_cka,
    plot_cka,
    plot_probes,
    probe_with_control,
    representation_analysis,
    state_features,
    stratified_folds,
)
from espnet_ext.lora.inject import language_banks, shared_banks
from espnet_ext.models.registry import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "decode"))
from analysis_helpers import random_bank, shared_below  # noqa: E402
from decode_helpers import noise_data_dir  # noqa: E402

ADAPTERS = ["hi", "pa", "te"]  # pa's lora_B is all zeros: its state is the shared adapter alone
PROBE_LANGS = ["hi"] * 3 + ["te"] * 3  # two families, so both probe tasks run
TAP = 1
torch.set_num_threads(1)  # the machine is shared; the probes are tiny


def correlated(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 5.0


def orthogonal(d: int, seed: int) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))[0]


@pytest.mark.parametrize("n, d", [(200, 16), (12, 64)])  # feature-space and example-space forms
def test_cka_of_identical_representations_is_one(n, d):
    x = correlated(n, d, 0)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("n, d", [(200, 16), (12, 64)])
def test_cka_is_invariant_to_orthogonal_transforms_isotropic_scaling_and_offsets(n, d):
    x = correlated(n, d, 1)
    y = np.tanh(x @ np.random.default_rng(2).normal(size=(d, d // 2)) / 10)  # related, not linearly
    reference = linear_cka(x, y)
    assert reference < 0.99
    assert linear_cka(3.7 * x @ orthogonal(d, 3) - 2.0, y) == pytest.approx(reference, abs=1e-10)
    assert linear_cka(x, 0.01 * y @ orthogonal(d // 2, 4)) == pytest.approx(reference, abs=1e-10)


def test_cka_is_not_invariant_to_an_anisotropic_scaling():
    """Centred orthonormal columns X ([n, d]) and X D with D = diag(s, 1, ..., 1): X^T X = I, so
    CKA = (s^2 + d - 1) / (sqrt(d) sqrt(s^4 + d - 1)) exactly, 1 only for s = 1."""
    n, d, s = 100, 8, 10.0
    raw = np.random.default_rng(5).normal(size=(n, d))
    x = np.linalg.qr(raw - raw.mean(0))[0]  # columns in the span of centred columns: centred
    scaled = x * np.array([s] + [1.0] * (d - 1))
    expected = (s**2 + d - 1) / (math.sqrt(d) * math.sqrt(s**4 + d - 1))
    assert linear_cka(x, scaled) == pytest.approx(expected, abs=1e-12)
    assert expected < 0.5


def test_cka_of_independent_data_is_near_zero():
    """E[CKA] of independent Gaussians is about sqrt(d1 d2) / n = 0.002 here."""
    rng = np.random.default_rng(6)
    assert linear_cka(rng.normal(size=(4000, 8)), rng.normal(size=(4000, 8))) < 0.01


def test_cka_forms_agree_zero_features_change_nothing():
    """Zero columns add nothing to either form; enough of them switch to the example-space form."""
    x, y = correlated(30, 5, 7), correlated(30, 5, 8)
    wide = np.hstack([x, np.zeros((30, 100))])
    assert linear_cka(wide, y) == pytest.approx(linear_cka(x, y), abs=1e-12)


def test_stratified_folds_hold_each_class_in_proportion():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 4)
    folds = stratified_folds(labels, 3)
    for label, count in ((0, 6), (1, 3), (2, 4)):
        assert sorted(np.bincount(folds[labels == label], minlength=3)) in ([count // 3] * 3, [1, 1, 2])
    assert sorted(np.bincount(folds)) == [4, 4, 5]
    assert folds.tolist() == stratified_folds(labels, 3).tolist()


def test_probe_reads_separable_data_and_its_shuffled_control_stays_at_chance():
    rng = np.random.default_rng(9)
    labels = np.repeat(np.arange(4), 20)
    x = (np.eye(4, 16)[labels] * 6 + rng.normal(size=(80, 16))).astype(np.float32)
    accuracy, control = probe_with_control(x, labels, ["hi", "pa", "te", "it"], folds=5)
    assert accuracy >= 0.95
    assert control < 0.45  # chance is 0.25


@pytest.fixture(scope="module")
def tiny():
    """Tiny random Whisper with a shared_below bank (tap after block 1): random hi, te and shared
    adapters, pa with lora_B all zeros; adapter dropout, and in train mode as a registry model loads,
    so only an analysis in eval mode reads the same states twice."""
    model = random_bank(ADAPTERS, dropout=0.3, layout=shared_below(load_model("whisper_tiny_random"), TAP))
    with torch.no_grad():
        for bank in language_banks(model.asr_model).values():
            bank.lora_B[bank.index("pa")] = 0
    return model


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory):
    return noise_data_dir(tmp_path_factory.mktemp("probe"), PROBE_LANGS, seconds=1.0)


@pytest.fixture(scope="module")
def result(tiny, probe_dir):
    return representation_analysis(tiny, probe_dir, batch_size=4)


def test_result_has_every_state_pair_layer_and_task(result):
    assert json.loads(json.dumps(result)) == result
    assert (result["utterances"], result["languages"], result["tap_layer"], result["folds"]) == (6, ["hi", "te"], TAP, 3)
    assert result["layers"] == [0, 1, 2]  # the front end's output and the 2 blocks
    assert result["states"] == ["base", *ADAPTERS]
    assert sorted(result["cka"]) == ["base~hi", "base~pa", "base~te", "hi~pa", "hi~te", "pa~te"]
    assert all(len(v) == 3 and all(-1e-9 <= c <= 1 + 1e-9 for c in v) for v in result["cka"].values())
    assert sorted(result["probes"]) == ["family", "language"]
    for task in result["probes"].values():
        assert list(task) == result["states"]
        for scores in task.values():
            assert all(len(scores[k]) == 3 for k in ("accuracy", "control", "selectivity"))
            assert np.allclose(scores["selectivity"], np.subtract(scores["accuracy"], scores["control"]))
            # each utterance predicted once: accuracy in sixths, the control a mean over its permutations
            right = np.array(scores["accuracy"]) * 6
            control_right = np.array(scores["control"]) * 6 * len(CONTROL_SEEDS)  # summed over the permutations
            for counts, most in ((right, 6), (control_right, 6 * len(CONTROL_SEEDS))):
                assert np.allclose(counts, np.round(counts)) and (counts >= 0).all() and (counts <= most).all()


def test_adapter_states_share_the_layers_up_to_the_tap_and_part_above(result, tiny):
    assert tiny.asr_model.training  # the mode it had, restored
    for pair in ("hi~pa", "hi~te", "pa~te"):
        assert result["cka"][pair][: TAP + 1] == pytest.approx([1.0] * (TAP + 1), abs=1e-6)
    assert result["cka"]["hi~te"][TAP + 1] < 1 - 1e-4
    assert result["cka"]["base~hi"][0] == pytest.approx(1.0, abs=1e-6)  # the front end holds no adapter
    assert result["cka"]["base~hi"][TAP] < 1 - 1e-4  # the shared adapter is on below the tap


def test_an_adapter_of_zeros_keeps_the_base_representations(tiny, probe_dir):
    with torch.no_grad():
        saved = {name: bank.lora_B.clone() for name, bank in shared_banks(tiny.asr_model).items()}
        for bank in shared_banks(tiny.asr_model).values():
            bank.lora_B.zero_()
    try:
        cka = cka_by_layer(state_features(tiny, probe_dir, batch_size=4))
    finally:
        with torch.no_grad():
            for name, bank in shared_banks(tiny.asr_model).items():
                bank.lora_B.copy_(saved[name])
    assert cka["base~pa"] == pytest.approx([1.0] * 3, abs=1e-6)
    assert cka["base~hi"][TAP] == pytest.approx(1.0, abs=1e-6)
    assert cka["base~hi"][TAP + 1] < 1 - 1e-4


def test_a_language_with_one_probe_utterance_is_a_user_error(tiny, tmp_path):
    data = noise_data_dir(tmp_path, ["hi", "hi", "te"], seconds=0.5)
    with pytest.raises(TooFewProbeUtterances, match=re.escape(str(data)) + ".*'te'"):
        representation_analysis(tiny, data)


def test_figures_are_written_as_png_and_pdf(result, tmp_path):
    for plot, name in ((plot_cka, "cka"), (plot_probes, "probes")):
        paths = plot(result, tmp_path / name)
        assert sorted(p.name for p in paths) == [f"{name}.pdf", f"{name}.png"]
        assert (tmp_path / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert (tmp_path / f"{name}.pdf").read_bytes().startswith(b"%PDF")
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
