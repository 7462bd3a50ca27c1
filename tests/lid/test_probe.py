"""The linear LID probe, its features and the layer scan that picks the tap layer."""
import json

import numpy as np
import pytest
import torch

from espnet_ext.bin import lid_probe
from espnet_ext.lid.features import label_indices, mean_pool, pooled_layer_features
from espnet_ext.lid.heads import load_head
from espnet_ext.lid.probe import choose_layer, fit_probe, probe_accuracy
from espnet_ext.models.registry import load_model
from train_helpers import make_corpus

LANGS = ("hi", "pa", "te", "it")


def test_mean_pool_ignores_padded_frames():
    hidden = torch.arange(12.0).view(1, 6, 2).repeat(2, 1, 1)
    hidden[1, 3:] = 1e6  # padding of the second row
    pooled = mean_pool(hidden, torch.tensor([6, 3]))
    torch.testing.assert_close(pooled, torch.tensor([[5.0, 6.0], [2.0, 3.0]]))


def toy(n: int, seed: int):
    """Four well-separated Gaussian clusters in 16 dimensions."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    centres = np.eye(4, 16) * 10
    x = (centres[labels] + rng.normal(0, 1, (n, 16))).astype(np.float32)
    return x, labels


def test_probe_learns_a_separable_problem_and_stays_at_chance_without_signal():
    x, y = toy(400, 0)
    held_x, held_y = toy(400, 1)
    assert probe_accuracy(fit_probe(1, LANGS, x, y), held_x, held_y) == 1.0
    noise = np.random.default_rng(3).normal(0, 1, (400, 16)).astype(np.float32)  # no signal at all
    random_labels = np.random.default_rng(4).integers(0, 4, 400)
    assert probe_accuracy(fit_probe(1, LANGS, noise[:200], random_labels[:200]), noise[200:], random_labels[200:]) < 0.36


def test_the_probe_is_a_tap_head_whose_posteriors_sum_to_one():
    x, y = toy(200, 2)
    probe = fit_probe(2, LANGS, x, y)
    hidden = torch.from_numpy(x[:3])[:, None, :].repeat(1, 5, 1)  # a pooled vector repeated over 5 frames
    posteriors = probe(hidden, torch.tensor([5, 5, 5]))
    torch.testing.assert_close(posteriors.sum(-1), torch.ones(3))
    assert posteriors.argmax(-1).tolist() == y[:3].tolist()


def test_choose_layer_takes_the_best_dev_layer_between_blocks_ties_low():
    results = {0: {"dev": 0.99}, 1: {"dev": 0.8}, 2: {"dev": 0.9}, 3: {"dev": 0.9}, 4: {"dev": 0.95}}
    assert choose_layer(results) == 2  # 0 and 4 (the front end, the top) cannot hold a tap between blocks
    assert choose_layer({3: {"dev": 0.5}}) == 3


def test_label_indices_names_an_unknown_language():
    assert label_indices(["te", "hi"], LANGS).tolist() == [2, 0]
    with pytest.raises(ValueError, match=r"\['xx'\]"):
        label_indices(["xx"], LANGS)


def test_pooled_features_do_not_depend_on_the_batch(tmp_path):
    data = make_corpus(tmp_path)
    loaded = load_model("whisper_tiny_random")
    loaded.asr_model.eval()
    alone = pooled_layer_features(loaded, data, batch_size=1)
    batched = pooled_layer_features(loaded, data, batch_size=8)
    assert alone.utt_ids == batched.utt_ids and sorted(alone.layers) == [0, 1, 2]
    for layer in alone.layers:
        np.testing.assert_allclose(batched.layers[layer], alone.layers[layer], atol=1e-4)


def test_lid_probe_cli_scans_every_layer_and_saves_the_chosen_probe(tmp_path):
    data = make_corpus(tmp_path)
    out = tmp_path / "probe"
    args = ["--model", "whisper_tiny_random", "--train_dir", str(data), "--dev_dir", str(data),
            "--test_dir", str(data), "--out_dir", str(out), "--steps", "50", "--threads", "1"]
    lid_probe.main(args)
    scan = json.loads((out / "scan.json").read_text())
    assert sorted(scan["accuracy"]) == ["0", "1", "2"] and scan["chosen_layer"] == 1
    assert scan["accuracy"]["1"]["train"] == 1.0  # 8 utterances, 64 dimensions: separable
    probe = load_head(out / "layer1", loaded_name := "whisper_tiny_random", load_model(loaded_name).fingerprint)
    assert probe.kind == "linear" and probe.layer == 1 and set(probe.languages) == set(LANGS)
    assert (out / "features_train.npz").is_file() and "(chosen)" in (out / "scan.md").read_text()
