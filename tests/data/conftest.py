"""Small audio and data-dir builders for the data tests: everything is made in tmp_path, in milliseconds."""
from pathlib import Path

import pytest
from wavegen import write_tone

from espnet_ext.data.kaldi import Utterance, write_data_dir


UTTS = [  # (utt id, speaker, lang, text, seconds)
    ("hi-a-0001", "hi-a", "hi", "नमस्ते दुनिया", 1.0),
    ("hi-a-0002", "hi-a", "hi", "आज बारिश है", 0.5),
    ("te-b-0001", "te-b", "te", "నమస్కారం", 0.75),
]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A valid three-utterance, two-speaker, two-language data dir with real 16 kHz WAVs."""
    utterances = []
    for utt_id, speaker, lang, text, seconds in UTTS:
        wav = write_tone(tmp_path / "wav" / f"{utt_id}.wav", seconds)
        utterances.append(Utterance(utt_id, speaker, text, lang, str(wav), seconds))
    write_data_dir(tmp_path / "data" / "train", utterances)
    return tmp_path / "data" / "train"
