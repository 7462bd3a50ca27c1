"""Transcribing users' files (espnet_ext.decode.service, espnet-lora-transcribe) on a tiny trained system
(conftest.py's tiny_exp): per-segment decoding consistent with routed decoding, long recordings cut at
quiet points, silence and unreadable files said plainly."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet_ext.bin import transcribe as transcribe_cli
from espnet_ext.decode.search import SearchConfig
from espnet_ext.data.audio import cut_points
from espnet_ext.decode.service import UNKNOWN, Transcriber, load_user_audio, segment_head
from espnet_ext.decode.transcribe import transcribe_batch
from decode_helpers import random_audio

LANGS = ["hi", "pa", "te", "it"]


def test_cuts_fall_at_the_quietest_point_before_each_window_limit():
    audio = np.random.default_rng(0).normal(0, 0.1, 70 * 16000).astype(np.float32)
    for quiet_s in (27.0, 54.0):
        audio[int(quiet_s * 16000):int((quiet_s + 0.3) * 16000)] = 0.0
    cuts = cut_points(audio, 30.0)
    assert len(cuts) == 2 and abs(cuts[0] / 16000 - 27.15) < 0.15 and abs(cuts[1] / 16000 - 54.15) < 0.15
    assert cut_points(audio[: 29 * 16000], 30.0) == []


def test_user_audio_is_mixed_and_resampled(tmp_path):
    stereo = np.stack([np.sin(np.arange(44100) / 10), np.zeros(44100)], 1).astype(np.float32)
    sf.write(str(tmp_path / "a.flac"), stereo, 44100)
    audio = load_user_audio(tmp_path / "a.flac")
    assert audio.ndim == 1 and abs(len(audio) - 16000) <= 1 and 0.3 < np.abs(audio).max() < 0.6


@torch.no_grad()
def test_each_segment_is_decoded_with_its_language_and_they_tile_the_file(transcriber):
    audio = np.concatenate([random_audio(1.5, 1), 3 * random_audio(1.5, 2)])
    result = transcriber.transcribe(audio, "x.wav")
    assert result.segments[0].start == 0 and result.segments[-1].end == pytest.approx(3.0)
    assert all(a.end == pytest.approx(b.start) and a.lang != b.lang for a, b in zip(result.segments, result.segments[1:]))
    assert sum(result.posteriors.values()) == pytest.approx(1.0, abs=1e-4)
    for seg in result.segments:
        piece = audio[round(seg.start * 16000):round(seg.end * 16000)]
        backend = transcriber.backend if seg.lang in LANGS else transcriber.base_backend
        alone = transcribe_batch(backend, [piece], [seg.lang], transcriber.search)[0].text
        assert seg.text == alone
    assert result.text == " ".join(s.text for s in result.segments if s.text)
    assert result.lang in LANGS + [UNKNOWN] and "per segment" in result.routing


@torch.no_grad()
def test_a_long_recording_is_cut_into_windows_and_covered_whole(transcriber):
    audio = random_audio(65.0, 3)
    audio[int(28.0 * 16000):int(28.4 * 16000)] = 0.0
    result = transcriber.transcribe(audio, "long.wav")
    assert result.segments[0].start == 0 and result.segments[-1].end == pytest.approx(65.0)
    assert all(a.end == pytest.approx(b.start) for a, b in zip(result.segments, result.segments[1:]))


def test_silence_and_too_little_speech_say_unknown(transcriber):
    silent = transcriber.transcribe(np.zeros(32000, np.float32), "silence.wav")
    assert silent.lang == UNKNOWN and silent.segments == [] and silent.text == "" and "silence" in silent.routing
    short = transcriber.transcribe(random_audio(0.3, 4), "short.wav")
    assert len(short.segments) == 1 and short.segments[0].low_confidence and short.lang == UNKNOWN


def test_cli_prints_each_file_and_names_an_unreadable_one(tiny_exp, tmp_path, capsys, monkeypatch):
    sf.write(str(tmp_path / "ok.wav"), random_audio(1.0, 5), 16000)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    monkeypatch.setattr(transcribe_cli, "Transcriber",
                        lambda *a: Transcriber(*a, search=SearchConfig(max_tokens=6)))
    with pytest.raises(SystemExit) as exit_info:
        transcribe_cli.main(["--exp", str(tiny_exp), "--lid_head", "linear", "--json", str(tmp_path / "bad.wav"),
                             str(tmp_path / "ok.wav")])
    assert exit_info.value.code == 1
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "bad.wav" in err and "Traceback" not in err
    record = json.loads(out.strip())
    assert record["file"].endswith("ok.wav") and record["segments"] and set(record["posteriors"]) == set(LANGS)


@torch.no_grad()
def test_the_frame_tagger_finds_the_segments_where_stage_4_trained_one(tiny_exp, tmp_path):
    import shutil

    from espnet_ext.lid.heads import make_head
    from espnet_ext.lid.segments import TAGGER_TRACK
    from espnet_ext.models.registry import load_model

    exp = tmp_path / "exp"
    shutil.copytree(tiny_exp, exp)
    assert segment_head(exp) == "asp"  # no tagger: the routing head's windows
    base = load_model("whisper_tiny_random")
    width = json.loads((exp / "lid" / "linear" / "lid_config.json").read_text())["width"]
    tagger = make_head("tagger", 1, LANGS, width)
    meta = {"base_model": base.name, "base_fingerprint": base.fingerprint}
    tagger.save(exp / "lid" / "tagger", meta)
    make_head("asp", 1, LANGS, width).save(exp / "lid" / "asp", meta)  # stage 4's routing head, beside it
    assert segment_head(exp) == "tagger"
    system = Transcriber(exp, search=SearchConfig(max_tokens=4))
    assert system.head.kind == "tagger" and system.switch_penalty == TAGGER_TRACK.switch_penalty and system.settings == TAGGER_TRACK
    audio = random_audio(2.0, 5)
    track = system.language_track(audio)  # (in the tap's routing state, which it sets)
    expected = tagger.frame_posteriors(system.encode_to_tap(torch.from_numpy(audio)[None]), torch.tensor([100]))[0]
    torch.testing.assert_close(track, expected)  # one pass, every frame its own posteriors
    result = system.transcribe(audio, "t.wav")
    assert result.segments[0].start == 0 and result.segments[-1].end == pytest.approx(2.0)
    assert "tagger head on encoder layer 1" in result.routing
    # each segment's confidence: the routing head's posterior of its language on the segment encoded alone
    seg = result.segments[0]
    states = system.encode_to_tap(torch.from_numpy(audio[: round(seg.end * 16000)])[None])
    judged = system.judge(states, torch.tensor([states.size(1)]))[0, LANGS.index(seg.lang)]
    assert system.judge.kind == "asp" and seg.confidence == pytest.approx(float(judged), abs=1e-5)
