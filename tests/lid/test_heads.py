"""The five LID heads: they learn a separable problem, stay at chance on shuffled labels, round-trip."""
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from espnet_ext.lid.features import FrameFeatures
from espnet_ext.lid.heads import HEADS, WEIGHTS_NAME, LIDFileError, load_head, make_head
from espnet_ext.lid.train import (
    HeadTraining, crop, dev_tau, epoch_order, evaluate, expected_calibration_error, fit_head, length_batches,
    predict, set_statistics, train_batches,
)

LANGS = ("hi", "pa", "te", "it")


def toy(n: int, seed: int, shuffle: bool = False) -> FrameFeatures:
    """Utterances of 20-60 frames in 16 dimensions: each has its own random "voice" offset, and, unless
    `shuffle`, its language's centre (noisy, separable); with `shuffle` the labels are random, so nothing
    but the training utterances themselves can be learnt."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    centres = np.eye(4, 16) * (0 if shuffle else 5)
    frames = [(centres[y] + rng.normal(0, 0.5, 16) + rng.normal(0, 1, (rng.integers(20, 61), 16))).astype(np.float32)
              for y in labels]
    langs = [LANGS[y] for y in labels]
    return FrameFeatures([f"u{i}" for i in range(n)], langs, np.array([len(f) / 50 for f in frames]), frames)


FAST = HeadTraining(epochs=6, batch_size=16, lr=1e-2, crop=(0.3, 0.8))


@pytest.mark.parametrize("kind", list(HEADS))
def test_each_head_learns_a_separable_problem_and_stays_at_chance_on_shuffled_labels(kind):
    train, dev, test = toy(120, 0), toy(40, 1), toy(200, 2)
    head = make_head(kind, 3, LANGS, 16)
    fit_head(head, train, dev, FAST)
    assert evaluate(predict(head, test), test, LANGS)["accuracy"] > 0.95
    shuffled, held_out = make_head(kind, 3, LANGS, 16), toy(400, 3, shuffle=True)
    fit_head(shuffled, toy(120, 0, shuffle=True), toy(40, 1, shuffle=True), FAST)
    assert evaluate(predict(shuffled, held_out), held_out, LANGS)["accuracy"] < 0.36  # chance 0.25, sd 0.02


@pytest.mark.parametrize("kind", list(HEADS))
def test_heads_ignore_padding_and_round_trip_their_files(kind, tmp_path):
    head = make_head(kind, 2, LANGS, 16).eval()
    x = torch.randn(1, 30, 16)
    padded = torch.cat([x, torch.full((1, 20, 16), 1e3)], dim=1)
    torch.testing.assert_close(head(padded, torch.tensor([30])), head(x, torch.tensor([30])), atol=1e-5, rtol=1e-4)
    head.save(tmp_path / kind, {"base_model": "whisper_tiny_random", "base_fingerprint": "abc"})
    loaded = load_head(tmp_path / kind, "whisper_tiny_random", "abc")
    assert (loaded.kind, loaded.layer, loaded.languages) == (kind, 2, LANGS)
    torch.testing.assert_close(loaded(x, torch.tensor([30])), head(x, torch.tensor([30])))
    with pytest.raises(LIDFileError, match="trained on whisper_tiny_random .*, not whisper_base"):
        load_head(tmp_path / kind, "whisper_base", "abc")


def test_asp_pools_the_attention_weighted_mean_and_deviation_of_its_frames():
    head = make_head("asp", 2, LANGS, 16).eval()
    head.mean.normal_()
    head.std.uniform_(0.5, 2.0)
    x, lengths = torch.randn(3, 40, 16) * 3 + 1, torch.tensor([40, 25, 7])
    rows = []
    for i, n in enumerate(lengths.tolist()):
        z = head.standardise(x[i, :n])
        alpha = torch.softmax(head.score(z).squeeze(-1), dim=0)[:, None]
        mean = (alpha * z).sum(0)
        rows.append(torch.cat([mean, (alpha * (z - mean) ** 2).sum(0).sqrt()]))
    torch.testing.assert_close(head.logits(x, lengths), head.out(torch.stack(rows)), atol=1e-5, rtol=1e-4)


def test_training_steps_its_learning_rate_schedule_once_per_batch():
    train = toy(40, 0)
    head = make_head("linear", 2, LANGS, 16)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=8)
    batches = length_batches([len(f) for f in train.frames], 10, np.random.default_rng(0))
    losses = train_batches(head, train.frames, np.arange(40) % 4, batches, optimizer, schedule)
    assert len(losses) == 4 and optimizer.param_groups[0]["lr"] == pytest.approx(5e-3)  # half way down the cosine


def test_standardisation_is_every_training_frames_mean_and_deviation():
    train = toy(50, 0)
    head = make_head("mlp", 2, LANGS, 16)
    set_statistics(head, train)
    frames = np.concatenate(train.frames)
    np.testing.assert_allclose(head.mean.numpy(), frames.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head.std.numpy(), frames.std(0), rtol=1e-5)


def test_balanced_epochs_draw_languages_equally_whatever_their_shares():
    langs = ["hi"] * 900 + ["te"] * 100
    order = epoch_order(langs, True, np.random.default_rng(0))
    share_te = np.mean([langs[i] == "te" for i in order])
    assert len(order) == 1000 and 0.45 < share_te < 0.55
    assert sorted(epoch_order(langs, False, np.random.default_rng(0))) == list(range(1000))


def test_length_batches_hold_every_item_once_and_pad_little():
    rng = np.random.default_rng(0)
    lengths = rng.integers(25, 250, 1000)  # 0.5-5 s of 50 frames per second
    batches = length_batches(lengths, 32, rng)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    assert [len(b) for b in batches].count(32) == 31 and sum(len(b) < 32 for b in batches) == 1
    padded = sum(len(b) * lengths[b].max() for b in batches)
    mixed = sum(32 * lengths[i : i + 32].max() for i in range(0, 1000, 32))  # the same items in drawn order
    assert padded < 1.05 * lengths.sum() < 0.7 * mixed
    starts = [int(lengths[b].min()) for b in batches]
    assert starts != sorted(starts)  # batches in random order, not shortest first


@pytest.mark.parametrize("kind", ["asp", "cnn"])
def test_predict_gives_each_utterance_what_it_gets_alone_whatever_its_batch(kind):
    head, feats = make_head(kind, 3, LANGS, 16).eval(), toy(70, 5)
    alone = np.stack([head(torch.from_numpy(f)[None], torch.tensor([len(f)]))[0].numpy() for f in feats.frames])
    np.testing.assert_allclose(predict(head, feats, batch_size=16), alone, atol=1e-5)


def test_crops_stay_inside_the_utterance_and_within_the_asked_seconds():
    frames, rng = np.arange(500)[:, None].astype(np.float32), np.random.default_rng(0)
    for _ in range(50):
        piece = crop(frames, 10.0, (1.0, 5.0), rng)  # 50 frames per second
        assert 50 <= len(piece) <= 250 and np.all(np.diff(piece[:, 0]) == 1)
    assert len(crop(frames[:40], 0.8, (1.0, 5.0), rng)) == 40  # shorter than the crop: whole


def test_evaluation_counts_short_utterances_and_calibration():
    feats = FrameFeatures(["a", "b", "c"], ["hi", "pa", "te"], np.array([1.5, 3.0, 1.0]),
                          [np.zeros((2, 1), np.float32)] * 3)
    posteriors = np.array([[0.9, 0.1, 0, 0], [0.6, 0.4, 0, 0], [0, 0, 1.0, 0]])
    report = evaluate(posteriors, feats, LANGS)
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["under_2s"] == {"accuracy": 1.0, "n": 2} and report["over_2s"] == {"accuracy": 0.0, "n": 1}
    assert report["confusion"][1][0] == 1  # pa heard as hi
    assert expected_calibration_error(np.eye(4)[[0, 1]], np.array([0, 1])) == 0.0
    assert expected_calibration_error(np.full((2, 4), 0.25), np.array([0, 1])) == pytest.approx(0.25)


def test_training_is_reproducible_whatever_ran_before():
    train, dev = toy(60, 0), toy(20, 1)
    first = make_head("mlp", 3, LANGS, 16)
    fit_head(first, train, dev, FAST)
    torch.randn(1000)  # other work in between moves the global generator
    second = make_head("mlp", 3, LANGS, 16)
    fit_head(second, train, dev, FAST)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_dev_tau_is_the_lowest_confidence_above_which_dev_is_right_often_enough():
    languages = ["hi", "pa"]
    top = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    posteriors = np.stack([top, 1 - top], 1)
    truth = ["hi", "hi", "hi", "pa", "hi", "pa"]  # wrong at 0.8 and at 0.6
    assert dev_tau(posteriors, truth, languages, precision=1.0) == 0.81  # above the highest error
    assert dev_tau(posteriors, truth, languages, precision=0.75) == 0.61  # 0.7 and up: 4 of 5 right
    assert dev_tau(posteriors, truth, languages, precision=0.6) == 0.0  # 4 of 6 right overall
    assert dev_tau(posteriors[:1], ["pa"], languages, precision=0.9) == 1.0  # never right enough: always hedge


def test_a_seed_ensemble_is_its_members_trained_alone_from_seed_plus_i_and_averages_them(tmp_path):
    train, dev, x, lengths = toy(60, 0), toy(20, 1), torch.randn(3, 30, 16), torch.tensor([30, 20, 10])
    ensemble = make_head("mlp", 3, LANGS, 16, members=3)
    history = fit_head(ensemble, train, dev, FAST)
    assert [row["member"] for row in history] == [0] * 6 + [1] * 6 + [2] * 6
    for i, member in enumerate(ensemble.members):
        alone = make_head("mlp", 3, LANGS, 16)
        fit_head(alone, train, dev, HeadTraining(**{**vars(FAST), "seed": FAST.seed + i}))
        torch.testing.assert_close(member(x, lengths), alone(x, lengths))
    members = torch.stack([m(x, lengths) for m in ensemble.members])
    assert not torch.allclose(members[0], members[1])  # different seeds, different heads
    torch.testing.assert_close(ensemble(x, lengths), members.mean(0))
    ensemble.save(tmp_path / "mlp", {"base_model": "whisper_tiny_random", "base_fingerprint": "abc"})
    loaded = load_head(tmp_path / "mlp", "whisper_tiny_random", "abc")
    assert loaded.kind == "mlp" and len(loaded.members) == 3
    torch.testing.assert_close(loaded(x, lengths), ensemble(x, lengths))
    weights = load_file(tmp_path / "mlp" / WEIGHTS_NAME)
    assert "mean" not in weights and "members.2.mean" in weights  # each member standardises, the ensemble not
    save_file({**weights, "mean": torch.zeros(16), "std": torch.ones(16)}, tmp_path / "mlp" / WEIGHTS_NAME)
    torch.testing.assert_close(load_head(tmp_path / "mlp", "whisper_tiny_random", "abc")(x, lengths),
                               ensemble(x, lengths))  # a file saved before 7 Dec 2026, with the unused pair
