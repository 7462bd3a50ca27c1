"""Degraded test sets: each degradation does what it says (measured on the output), and the script
writes valid data dirs, reproducibly."""
import shutil

import numpy as np
import pytest
from make_degraded import main, make_degraded
from scipy.signal import chirp, lfilter, welch
from wavegen import tone, write_tone

from espnet_ext.data import degrade
from espnet_ext.data.audio import read_audio
from espnet_ext.data.corpus import write_validated
from espnet_ext.data.kaldi import Utterance, read_data_dir

SR = 16000


def rng(seed=0):
    return np.random.default_rng(seed)


def speechlike(seconds=1.0, seed=0):
    """Noise through a formant-like resonance, modulated at a syllable rate: broadband like speech."""
    t = np.arange(int(seconds * SR)) / SR
    wave = lfilter([1.0], [1.0, -1.3, 0.8], rng(seed).standard_normal(len(t))) * (1.2 + np.sin(2 * np.pi * 4 * t))
    return (0.1 * wave / np.sqrt(np.mean(wave ** 2))).astype(np.float32)


def band_level_db(wave, reference, low, high):
    """Output over input power in [low, high) Hz, on a Welch spectrum."""
    freqs, out = welch(wave, SR, nperseg=2048)
    _, ref = welch(reference, SR, nperseg=2048)
    band = (freqs >= low) & (freqs < high)
    return 10 * np.log10(out[band].sum() / ref[band].sum())


def test_telephone_band_passes_300_to_3400_hz_only():
    t = np.arange(3 * SR) / SR
    sweep = (0.3 * chirp(t, 20, t[-1], 7900)).astype(np.float32)
    out = degrade.telephone_band(sweep)
    assert len(out) == len(sweep) and out.dtype == np.float32
    assert abs(band_level_db(out, sweep, 500, 3000)) < 1.0
    assert band_level_db(out, sweep, 20, 250) < -20 and band_level_db(out, sweep, 3600, 8000) < -20


@pytest.mark.parametrize("name", ["pink", "brown", "babble"])
@pytest.mark.parametrize("snr_db", [20.0, 10.0, 5.0])
def test_noise_at_the_asked_snr(name, snr_db):
    clean = speechlike()
    talkers = [speechlike(0.7, seed) for seed in (1, 2, 3)]
    noise = (degrade.babble(talkers, len(clean), rng()) if name == "babble"
             else degrade.coloured_noise(len(clean), degrade.NOISE_EXPONENTS[name], rng()))
    out = degrade.mix_at_snr(clean, noise, snr_db)
    measured = 10 * np.log10(np.mean(clean ** 2) / np.mean((out - clean) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.5)


def octave_drop_db(noise, low):
    """Mean power density in [low, 2 low) over that in [2 low, 4 low), in dB."""
    freqs, psd = welch(noise, SR, nperseg=1024)
    density = [psd[(freqs >= f) & (freqs < 2 * f)].mean() for f in (low, 2 * low)]
    return 10 * np.log10(density[0] / density[1])


def test_coloured_noise_falls_by_its_exponent_and_babble_is_the_talkers():
    pink, brown = (degrade.coloured_noise(2 * SR, degrade.NOISE_EXPONENTS[k], rng()) for k in ("pink", "brown"))
    assert octave_drop_db(pink, 500) == pytest.approx(3.0, abs=1.0)  # 1/f: half the density an octave up
    assert octave_drop_db(brown, 500) == pytest.approx(6.0, abs=1.0)  # 1/f^2: a quarter
    crowd = degrade.babble([tone(0.5, freq=300.0), tone(0.3, freq=700.0)], SR, rng())
    assert np.mean(crowd ** 2) == pytest.approx(1.0, rel=1e-3)
    freqs, psd = welch(crowd, SR, nperseg=1024)
    talking = ((freqs > 250) & (freqs < 350)) | ((freqs > 650) & (freqs < 750))
    assert psd[talking].sum() > 0.9 * psd.sum()  # nothing but the two talkers


@pytest.mark.parametrize("name", ["mp3", "opus"])
def test_codec_output_decodes_aligned_and_changed(name):
    clean = speechlike(1.5)
    out = degrade.codec(clean, name)
    assert len(out) == len(clean) and np.isfinite(out).all()
    assert not np.allclose(out, clean, atol=1e-3)
    lags = np.arange(-200, 201)
    xcorr = [np.dot(np.roll(out, -lag)[1000:-1000], clean[1000:-1000]) for lag in lags]
    assert abs(lags[int(np.argmax(xcorr))]) <= 2  # the encoder delay is removed
    assert np.corrcoef(out, clean)[0, 1] > 0.5  # the same signal, coarsely coded


def measured_rt60(response, lowest_db):
    """RT60 by a least-squares line through the Schroeder curve from -5 dB to `lowest_db`."""
    curve = np.cumsum(response[::-1].astype(float) ** 2)[::-1]
    level = 10 * np.log10(curve / curve[0])
    span = (level <= -5) & (level >= lowest_db)
    slope = np.polyfit(np.flatnonzero(span) / SR, level[span], 1)[0]
    return -60 / slope


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_room_response_starts_with_the_direct_sound_and_decays_in_rt60(seed):
    room = degrade.random_room(rng(seed))
    assert degrade.RT60_RANGE[0] <= room.rt60 <= degrade.RT60_RANGE[1]
    response = degrade.room_impulse_response(room)
    assert len(response) == int(room.rt60 * SR)
    assert np.argmax(np.abs(response)) == 0 and response[0] == pytest.approx(1.0, abs=0.02)
    assert measured_rt60(response, -25) == pytest.approx(room.rt60, rel=0.05)  # T20, what the walls are tuned on
    assert measured_rt60(response, -35) == pytest.approx(room.rt60, rel=0.25)  # T30: the tail decays alike
    wave = speechlike()
    out = degrade.reverberate(wave, response)
    assert len(out) == len(wave) and np.mean(out ** 2) == pytest.approx(np.mean(wave ** 2), rel=1e-3)


def fundamental(wave):
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.fft.rfftfreq(len(wave), 1 / SR)[np.argmax(spectrum)]


@pytest.mark.parametrize("semitones", [-4.0, 3.0])
def test_voice_shift_moves_the_pitch_by_the_semitones(semitones):
    out = degrade.shift_voice(tone(1.0, freq=200.0), semitones)
    assert len(out) == SR
    assert fundamental(out[2000:-2000]) == pytest.approx(200.0 * 2 ** (semitones / 12), rel=0.02)


def tiny_dir(root, n=3):
    wavs = [write_tone(root / "wav" / f"{i}.wav", 0.6) for i in range(n)]
    utts = [Utterance(f"hi-s1-{i}", "hi-s1", f"वाक्य {i}", "hi", str(wav), 0.6) for i, wav in enumerate(wavs)]
    write_validated(root / "test", utts)
    return root / "test"


def wav_bytes(data_dir):
    return {u.utt_id: open(u.wav, "rb").read() for u in read_data_dir(data_dir)}


def test_cli_writes_each_condition_as_a_valid_copy_reproducibly(tmp_path):
    src = tiny_dir(tmp_path)
    main(["--src", str(src), "--seed", "3", "--nj", "1"])
    clean = [(u.utt_id, u.speaker, u.text, u.lang, u.duration) for u in read_data_dir(src)]
    tone_samples = read_audio(read_data_dir(src)[0].wav)[0][:, 0]
    for name in degrade.DEFAULT_CONDITIONS:
        copy = read_data_dir(tmp_path / f"test_{name}")
        assert [(u.utt_id, u.speaker, u.text, u.lang, u.duration) for u in copy] == clean
        for utt in copy:
            samples, rate = read_audio(utt.wav)
            assert rate == SR and samples.shape == (len(tone_samples), 1)
            assert not np.allclose(samples[:, 0], tone_samples, atol=1e-2)
            if name == "snr10":
                snr = 10 * np.log10(np.mean(tone_samples ** 2) / np.mean((samples[:, 0] - tone_samples) ** 2))
                assert snr == pytest.approx(10, abs=0.5)
    assert set((tmp_path / "test_snr5" / "utt2noise").read_text().split()[1::2]) <= set(degrade.NOISE_KINDS)
    assert len((tmp_path / "test_reverb" / "utt2rt60").read_text().splitlines()) == 3
    first = {name: wav_bytes(tmp_path / f"test_{name}") for name in ("snr10", "reverb", "voice")}
    shutil.rmtree(tmp_path / "local")
    make_degraded(src, ["snr10", "reverb", "voice"], seed=3, nj=2)
    assert {name: wav_bytes(tmp_path / f"test_{name}") for name in first} == first
    make_degraded(src, ["snr10", "reverb", "voice"], seed=4)
    again = {name: wav_bytes(tmp_path / f"test_{name}") for name in first}
    assert all(again[name][utt] != first[name][utt] for name in first for utt in first[name])


def test_a_copys_name_splits_back_into_its_clean_set_and_condition():
    for condition in (*degrade.DEFAULT_CONDITIONS, "snr-3", "snr7.5"):
        assert degrade.split_condition(degrade.degraded_name("test_q_hi", condition)) == ("test_q_hi", condition)
    for name in ("test_all", "test_q", "dev_te", "test_cs_rapid", "snr10", "test_snr"):  # not copies
        assert degrade.split_condition(name) == (name, None)
    names = ["voice", "snr5", "x_new", "tel", "snr20", "snr10"]
    assert sorted(names, key=degrade.condition_order) == ["tel", "snr20", "snr10", "snr5", "voice", "x_new"]


def test_bad_input_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match=r"unknown condition 'snow' \(fix: choose from tel mp3 opus"):
        main(["--src", str(tiny_dir(tmp_path)), "--conditions", "tel", "snow"])
    assert not (tmp_path / "test_tel").exists()  # refused before anything is written
    with pytest.raises(SystemExit, match="nowhere: data dir does not exist"):
        main(["--src", str(tmp_path / "nowhere")])
