"""Lexical probe: words read from the training text, and a multi-label probe whose score is known."""
import numpy as np

from espnet_ext.analysis import lexical
from espnet_ext.data.kaldi import Utterance, write_data_dir
from espnet_ext.lid.features import PooledFeatures


def test_top_words_are_each_languages_most_frequent_after_normalising(tmp_path):
    utts = [Utterance("s-1", "s", "Ciao ciao, mondo", "it", "/x.wav", 1.0),
            Utterance("s-2", "s", "mondo bello", "it", "/x.wav", 1.0), Utterance("t-1", "t", "पानी दो", "hi", "/x.wav", 1.0)]
    write_data_dir(tmp_path / "train", utts)
    assert lexical.top_words(tmp_path / "train", k=2) == {"it": ["ciao", "mondo"], "hi": ["पानी", "दो"]}


def test_only_words_held_and_missed_by_enough_utterances_are_probed():
    texts = ["a b", "a c", "a b", "a", "b", "a b c", "c"]  # a: held by 5, missed by 2; b: 4 and 3; c: 3 and 4
    words, y = lexical.word_labels(texts, ["a", "b", "c"])
    assert lexical.MIN_EACH == 3
    assert words == ["b", "c"] and y[:, 0].tolist() == [1, 0, 1, 0, 1, 1, 0]


def test_a_layer_that_encodes_the_words_scores_high_and_its_control_and_noise_score_chance():
    rng = np.random.default_rng(0)
    y = (rng.random((60, 4)) < 0.4).astype(np.float32)
    encoded = np.hstack([y * 3 + rng.normal(0, 0.3, y.shape), rng.normal(size=(60, 12))])
    noise = rng.normal(size=(60, 16))
    states = {"base": PooledFeatures([str(i) for i in range(60)], ["hi"] * 60, {0: noise, 1: encoded})}
    probes = lexical.probe_layers(states, y)["base"]
    assert probes["accuracy"][1] > 0.8 and abs(probes["control"][1] - 0.5) < 0.12
    assert abs(probes["accuracy"][0] - 0.5) < 0.12
    assert probes["selectivity"][1] > 0.25 and abs(probes["selectivity"][0]) < 0.15
