"""decode.py encodes the input length the loaded adapters or fine-tuned model were trained on."""
import logging

import pytest

from espnet_ext.bin.decode import input_window

REAL, WINDOW = {"pad_to_30s": False}, {"pad_to_30s": True}


def test_default_follows_the_training_record():
    assert input_window(None, [REAL, REAL]) is False
    assert input_window(None, [WINDOW]) is True


def test_base_model_alone_defaults_to_the_30s_window():
    assert input_window(None, []) is True


def test_an_explicit_choice_wins_and_a_mismatch_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="decode"):
        assert input_window(True, [REAL]) is True
    assert "trained with pad_to_30s False" in caplog.text
    caplog.clear()
    assert input_window(False, [REAL]) is False
    assert not caplog.text


def test_adapters_trained_on_different_lengths_are_refused():
    with pytest.raises(SystemExit, match="different input lengths"):
        input_window(None, [REAL, WINDOW])
