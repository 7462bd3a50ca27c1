"""Audio reading, conditioning and writing shared by all preparers."""
import numpy as np
import pytest
import soundfile as sf
from wavegen import tone, write_tone

from espnet_ext.data.audio import (
    AudioError, condition, convert_audio, existing_wav_duration, normalize_level, probe_audio, read_audio,
    resample, to_mono, trim_silence, write_wav,
)


def dominant_freq(wave: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return np.fft.rfftfreq(len(wave), 1 / sample_rate)[spectrum.argmax()]


def test_resample_keeps_length_and_pitch():
    out = resample(tone(1.0, 22050, freq=1000.0), 22050, 16000)
    assert len(out) == 16000
    assert dominant_freq(out, 16000) == pytest.approx(1000.0, abs=2)
    same = tone(0.1)
    assert np.array_equal(resample(same, 16000, 16000), same)


def test_to_mono_averages_channels():
    stereo = np.stack([np.ones(4), -np.ones(4) * 0.5], axis=1)
    assert np.allclose(to_mono(stereo), 0.25)


def test_trim_silence_cuts_edges_but_keeps_a_margin():
    sr = 16000
    wave = np.concatenate([np.zeros(sr), tone(1.0), np.zeros(sr)])
    trimmed = trim_silence(wave, sr, margin_s=0.1)
    assert len(trimmed) / sr == pytest.approx(1.2, abs=0.03)
    assert np.abs(trimmed[: int(0.05 * sr)]).max() == 0  # the margin is the original silence


def test_normalize_level_hits_target_rms_without_clipping():
    quiet = tone(1.0) * 0.01
    out = normalize_level(quiet, target_rms_db=-20.0)
    assert np.sqrt(np.mean(out ** 2)) == pytest.approx(0.1, rel=1e-3)
    spiky = quiet.copy()
    spiky[100] = 0.9  # a click: reaching -20 dB RMS would clip it, so the peak limit wins
    out = normalize_level(spiky, peak_limit=0.95)
    assert np.abs(out).max() == pytest.approx(0.95, rel=1e-4)


def test_silence_is_refused():
    with pytest.raises(AudioError, match="silent"):
        condition(np.zeros(16000, dtype=np.float32), 16000)


def test_write_wav_is_16k_16bit_and_refuses_other_rates(tmp_path):
    write_wav(tmp_path / "a.wav", tone(0.5))
    info = sf.info(str(tmp_path / "a.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    with pytest.raises(AudioError, match="8000 Hz"):
        write_wav(tmp_path / "b.wav", tone(0.5, 8000), 8000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


def test_convert_48k_stereo_mp3_to_conditioned_16k_wav(tmp_path):
    sf.write(str(tmp_path / "in.mp3"), tone(1.0, 48000, channels=2), 48000, format="MP3")
    duration = convert_audio(tmp_path / "in.mp3", tmp_path / "out.wav")
    info = probe_audio(tmp_path / "out.wav")
    assert (info.sample_rate, info.channels) == (16000, 1)
    assert info.duration == pytest.approx(duration)
    assert 0.9 < duration < 1.15  # mp3 encoder padding is trimmed as silence
    assert existing_wav_duration(tmp_path / "out.wav") == pytest.approx(duration)


def test_opus_and_m4a_are_readable(tmp_path):
    av = pytest.importorskip("av")
    sf.write(str(tmp_path / "a.opus"), tone(0.5, 48000), 48000, format="OGG", subtype="OPUS")
    assert read_audio(tmp_path / "a.opus")[1] == 48000
    with av.open(str(tmp_path / "a.m4a"), "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone(0.5)[None, :], format="flt", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    wave, sample_rate = read_audio(tmp_path / "a.m4a")
    assert sample_rate == 16000 and wave.shape[1] == 1
    assert len(wave) / sample_rate == pytest.approx(0.5, abs=0.1)
    assert dominant_freq(wave[:, 0], sample_rate) == pytest.approx(440, abs=10)


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: audio file not found"):
        read_audio(tmp_path / "nope.wav")
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 4)
    with pytest.raises(AudioError, match=r"bad\.wav: cannot decode audio .*corrupt"):
        read_audio(tmp_path / "bad.wav")
    (tmp_path / "bad.m4a").write_bytes(b"\x00" * 64)
    with pytest.raises(AudioError, match=r"bad\.m4a: cannot decode audio"):
        read_audio(tmp_path / "bad.m4a")


def test_existing_wav_duration_rejects_unusable_files(tmp_path):
    write_tone(tmp_path / "8k.wav", 0.5, sample_rate=8000)
    write_tone(tmp_path / "stereo.wav", 0.5, channels=2)
    (tmp_path / "bad.wav").write_bytes(b"junk")
    for name in ("8k.wav", "stereo.wav", "bad.wav", "missing.wav"):
        assert existing_wav_duration(tmp_path / name) is None


def test_a_decode_set_file_at_another_rate_is_resampled_and_said(tmp_path, caplog):
    import logging

    from espnet_ext.data.audio import utterance_audio
    from espnet_ext.data.kaldi import Utterance

    path = write_tone(tmp_path / "phone.wav", 1.0, sample_rate=8000)
    with caplog.at_level(logging.INFO, logger="espnet_ext.data.audio"):
        wave = utterance_audio(Utterance("u", "s", "x", "hi", str(path), 1.0))
    assert len(wave) == 16000 and abs(dominant_freq(wave, 16000) - dominant_freq(tone(1.0, 8000), 8000)) < 5
    assert "8000 Hz audio, resampled to 16000 Hz" in caplog.text and "phone.wav" in caplog.text
