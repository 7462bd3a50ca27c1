"""The noisy copy of a data dir: the SNR asked for, the same transcripts, reproducible per utterance."""
import numpy as np
import pytest
from make_noisy_set import main, make_noisy_set
from wavegen import write_tone

from espnet_ext.data.audio import read_audio
from espnet_ext.data.kaldi import Utterance, read_data_dir, write_data_dir


def clean_dir(root, n=3):
    utts = [Utterance(f"hi-s1-{i}", "hi-s1", f"वाक्य {i}", "hi", str(write_tone(root / f"{i}.wav", 1.0)), 1.0)
            for i in range(n)]
    write_data_dir(root / "clean", utts)
    return root / "clean"


def measured_snr(clean_wav, noisy_wav):
    clean, noisy = read_audio(clean_wav)[0], read_audio(noisy_wav)[0]
    return 10 * np.log10(np.mean(clean ** 2) / np.mean((noisy - clean) ** 2))


def test_noise_at_the_recorded_snr_and_same_transcripts(tmp_path):
    src = clean_dir(tmp_path)
    make_noisy_set(src, tmp_path / "noisy", (0.0, 10.0), seed=1)
    clean, noisy = read_data_dir(src), read_data_dir(tmp_path / "noisy")
    assert [(u.utt_id, u.text, u.lang, u.speaker) for u in noisy] == [(u.utt_id, u.text, u.lang, u.speaker)
                                                                       for u in clean]
    snrs = dict(line.split() for line in (tmp_path / "noisy" / "utt2snr").read_text().splitlines())
    for c, n in zip(clean, noisy):
        assert 0.0 <= float(snrs[n.utt_id]) <= 10.0
        assert measured_snr(c.wav, n.wav) == pytest.approx(float(snrs[n.utt_id]), abs=0.3)
    assert len(set(snrs.values())) == 3  # each utterance draws its own SNR


def test_same_seed_same_audio_whatever_the_subset(tmp_path):
    src = clean_dir(tmp_path)
    make_noisy_set(src, tmp_path / "a", (5.0, 5.0), seed=0)
    write_data_dir(tmp_path / "one", read_data_dir(src)[1:2])
    make_noisy_set(tmp_path / "one", tmp_path / "b", (5.0, 5.0), seed=0)
    make_noisy_set(tmp_path / "one", tmp_path / "c", (5.0, 5.0), seed=1)
    a, b, c = (read_audio(tmp_path / "local" / f"{d}_wav" / "hi-s1-1.wav")[0] for d in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_reversed_range_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match="--snr 10.0 0.0: give the lower SNR first"):
        main(["--src", str(clean_dir(tmp_path)), "--dst", str(tmp_path / "noisy"), "--snr", "10", "0"])
