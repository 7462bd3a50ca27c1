"""The phonetic probe set: every syllable in every dev voice of the languages asked for, audible, a valid dir
whose WAVs live outside it (writing the dir replaces it whole)."""
from make_syllable_set import main

from espnet_ext.analysis.phonetic import syllables
from espnet_ext.data.audio import read_audio
from espnet_ext.data.kaldi import read_data_dir


def test_every_syllable_in_each_dev_voice(tmp_path):
    main(["--out_dir", str(tmp_path / "data" / "syllables"), "--langs", "it"])
    utterances = read_data_dir(tmp_path / "data" / "syllables")
    assert len(utterances) == 2 * len(syllables())  # the two dev voices
    assert sorted({u.text for u in utterances}) == sorted(syllables()) and {u.lang for u in utterances} == {"it"}
    ka = next(u for u in utterances if u.text == "ka")
    audio = read_audio(ka.wav)[0]
    assert 0.1 < len(audio) / 16000 < 2 and abs(audio).max() > 0.05
    assert (tmp_path / "data" / "local" / "syllables_wav").is_dir()
