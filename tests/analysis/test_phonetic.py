"""Phonetic probes: the labels come from the consonant table; the probes run end to end on the tiny model."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from analysis_helpers import random_bank

from espnet_ext.analysis import phonetic
from espnet_ext.data.kaldi import Utterance, write_data_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "decode"))
from decode_helpers import random_audio  # noqa: E402


def test_labels_come_from_the_consonant_table():
    texts = ["ba", "ki", "su", "a", "mu"]
    tasks = phonetic.syllable_tasks(texts, Path("x"))
    classes, labels, rows = tasks["onset"]
    assert [classes[i] for i in labels] == ["consonant-vowel"] * 3 + ["vowel", "consonant-vowel"]
    assert list(rows) == [0, 1, 2, 3, 4]
    for feature, expected in (("voicing", ["voiced", "voiceless", "voiceless", "voiced"]),
                              ("place", ["bilabial", "velar", "alveolar", "bilabial"]),
                              ("manner", ["plosive", "plosive", "fricative", "nasal"])):
        classes, labels, rows = tasks[feature]
        assert list(rows) == [0, 1, 2, 4] and [classes[i] for i in labels] == expected  # the vowel clip is left out
    assert len(phonetic.syllables()) == len(phonetic.CONSONANTS) * len(phonetic.VOWELS) + len(phonetic.VOWELS)


def test_a_dir_of_other_transcripts_is_refused():
    with pytest.raises(phonetic.NotASyllableSet, match="make_syllable_set"):
        phonetic.syllable_tasks(["ka", "hello"], Path("data/dev_all"))


def test_probes_run_on_every_task_state_and_layer(tmp_path):
    torch.set_num_threads(1)
    chosen = ["ba", "pa", "da", "ta", "ma", "na", "sa", "za", "a", "i"]
    utterances = []
    for voice in range(2):
        for k, syllable in enumerate(chosen):
            wav = tmp_path / "wav" / f"{voice}-{syllable}.wav"
            wav.parent.mkdir(exist_ok=True)
            import soundfile as sf

            sf.write(str(wav), random_audio(0.3, 10 * voice + k), 16000)
            utterances.append(Utterance(f"hi-v{voice}-{syllable}", f"hi-v{voice}", syllable, "hi", str(wav), 0.3))
    write_data_dir(tmp_path / "syllables", utterances)
    model = random_bank(["hi", "te"])
    result = phonetic.phonetic_probes(model, tmp_path / "syllables", folds=2)
    assert result["utterances"] == 20 and result["states"] == ["base", "hi", "te"] and result["layers"] == [0, 1, 2]
    assert list(result["probes"]) == ["onset", "voicing", "place", "manner"]
    for by_state in result["probes"].values():
        for scores in by_state.values():
            assert len(scores["accuracy"]) == 3 and all(0 <= a <= 1 for a in scores["accuracy"] + scores["control"])
    assert set(phonetic.best_layers(result)) == set(result["probes"])
    assert np.allclose(result["probes"]["place"]["base"]["selectivity"],
                       np.subtract(result["probes"]["place"]["base"]["accuracy"], result["probes"]["place"]["base"]["control"]))
