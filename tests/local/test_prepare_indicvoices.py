"""IndicVoices: a tiny raw release in its published layout (<Language>/v1/{train,valid}/<uuid>_<n>.json +
.wav, long 48 kHz recordings) becomes valid 16 kHz data dirs of the recordings' segments.

The metadata keys and their nesting are those AI4Bharat/IndicVoices' `TGZ/create_indicvoices.py` reads
(verbatim/normalized index-aligned segment lists with start, end, text, and the in-recording speaker_id;
the participant's speaker_id and gender at the top); the first segment is the example that script's
cleaning describes (a `[noise]` tag in the verbatim text, none in the normalised one).
"""
import json

import pytest
import soundfile as sf
from prepare_indicvoices import DEV_FRACTION, carve_dev, main, prepare_indicvoices
from wavegen import tone

from espnet_ext.data.kaldi import DataDirError, read_data_dir

RATE = 48000  # raw IndicVoices audio is not 16 kHz (its README resamples with ffmpeg)
RECORDINGS = {  # (split, file stem) -> (participant, [(start, end, normalized text, in-recording speaker)])
    ("train", "0a1b8a86-11ca-432d-96e3-8fc1e1873bdc_0"): ("S_100001", [
        (0.52, 2.91, "मैं आज बाज़ार गया था", 0), (3.10, 4.40, "ठीक है", 1), (4.60, 5.80, "[noise]", 0)]),
    ("train", "1c2d3e4f-0000-4000-8000-000000000001_0"): ("S_100002", [
        (0.20, 1.70, "कल बारिश होगी", 0), (2.00, 3.10, "हाँ", 0)]),
    ("train", "2d3e4f5a-0000-4000-8000-000000000002_1"): ("S_100003", [(0.30, 1.50, "नमस्ते", 0)]),
    ("train", "3e4f5a6b-0000-4000-8000-000000000003_0"): ("S_100009", [(0.10, 1.30, "फिर से", 0)]),
    ("valid", "4f5a6b7c-0000-4000-8000-000000000004_0"): ("S_200001", [
        (0.40, 2.40, "मेरा phone खो गया", 0), (2.50, 3.60, "धन्यवाद", 0)]),
    ("valid", "5a6b7c8d-0000-4000-8000-000000000005_0"): ("S_100009", [(0.20, 1.40, "अच्छा", 0)]),
}


def write_indicvoices(root, recordings=RECORDINGS):
    folder = root / "Hindi" / "v1"
    for (split, stem), (speaker, segments) in recordings.items():
        (folder / split).mkdir(parents=True, exist_ok=True)
        meta = {
            "verbatim": [{"start": s, "end": e, "text": t.replace("मैं ", "मैं [noise] "), "speaker_id": who}
                         for s, e, t, who in segments],
            "normalized": [{"start": s, "end": e, "text": t} for s, e, t, _ in segments],
            "speaker_id": speaker, "scenario": "Extempore", "task_name": "Digital Payment Commands",
            "gender": "Female", "age_group": "18-30", "area": "Rural", "district": "Varanasi",
            "state": "Uttar Pradesh", "verification_report": {"decision": "accept", "echo_present": False},
        }
        (folder / split / f"{stem}.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        sf.write(str(folder / split / f"{stem}.wav"), tone(segments[-1][1] + 0.5, RATE), RATE)
    return folder


def test_segments_become_16k_utterances_with_speakers_kept_apart(tmp_path, caplog):
    write_indicvoices(tmp_path / "iv")
    out = tmp_path / "data"
    with caplog.at_level("INFO"):
        main(["--corpus_dir", str(tmp_path / "iv"), "--out_dir", str(out), "--nj", "1"])
    dirs = {name: read_data_dir(out / f"{name}_hi") for name in ("train", "dev", "test")}
    ids = {name: [u.utt_id for u in utts] for name, utts in dirs.items()}
    everything = [u for utts in dirs.values() for u in utts]
    # the second voice (speaker 1) and the tag-only segment are out; S_100009 is in valid, so only test
    assert sorted(u.utt_id for u in everything) == sorted([
        "hi-iv-S_100001-0a1b8a86-11ca-432d-96e3-8fc1e1873bdc_0-001",
        "hi-iv-S_100002-1c2d3e4f-0000-4000-8000-000000000001_0-001",
        "hi-iv-S_100002-1c2d3e4f-0000-4000-8000-000000000001_0-002",
        "hi-iv-S_100003-2d3e4f5a-0000-4000-8000-000000000002_1-001",
        "hi-iv-S_200001-4f5a6b7c-0000-4000-8000-000000000004_0-001",
        "hi-iv-S_200001-4f5a6b7c-0000-4000-8000-000000000004_0-002",
        "hi-iv-S_100009-5a6b7c8d-0000-4000-8000-000000000005_0-001"])
    assert {u.speaker for u in dirs["test"]} == {"hi-iv-S_200001", "hi-iv-S_100009"}
    speakers = {name: {u.speaker for u in utts} for name, utts in dirs.items()}
    assert not (speakers["train"] & speakers["dev"]) and not (speakers["train"] | speakers["dev"]) & speakers["test"]
    assert len(speakers["dev"]) == 1 and speakers["train"]
    first = next(u for u in everything if u.utt_id.endswith("bdc_0-001"))
    assert first.text == "मैं आज बाज़ार गया था"
    for utt in everything:  # each segment cut to its own start-end and resampled
        stem, k = utt.utt_id.rsplit("-", 1)
        start, end = next(seg for (_, s), (_, segs) in RECORDINGS.items() if stem.endswith(s)
                          for seg in [segs[int(k) - 1]])[:2]
        assert sf.info(utt.wav).samplerate == 16000
        assert utt.duration == pytest.approx(end - start, abs=0.01)
    assert "0a1b8a86-11ca-432d-96e3-8fc1e1873bdc_0.json:3: empty transcript; skipped" in caplog.text
    assert "1 speakers are in both train and valid" in caplog.text
    assert [u.utt_id for u in read_data_dir(out / "test_cs_indicvoices")] == [
        "hi-iv-S_200001-4f5a6b7c-0000-4000-8000-000000000004_0-001"]


@pytest.mark.parametrize("damage, reason", [
    pytest.param(lambda wav: wav.write_bytes(b"RIFF" + b"\x00" * 40), "cannot decode", id="wrong codec"),
    pytest.param(lambda wav: wav.unlink(), "not found", id="missing recording"),
])
def test_a_bad_recording_is_reported_and_skipped(tmp_path, caplog, damage, reason):
    folder = write_indicvoices(tmp_path / "iv")
    damage(folder / "valid" / "5a6b7c8d-0000-4000-8000-000000000005_0.wav")
    with caplog.at_level("WARNING"):
        written = prepare_indicvoices(tmp_path / "iv", tmp_path / "data", nj=1)
    assert [u.speaker for u in written["test_hi"]] == ["hi-iv-S_200001"] * 2
    assert "5a6b7c8d-0000-4000-8000-000000000005_0.json:1: " in caplog.text and reason in caplog.text


@pytest.mark.parametrize("damage, message", [
    pytest.param(lambda f: (f / "valid" / "5a6b7c8d-0000-4000-8000-000000000005_0.json").write_text("{"),
                 r"5a6b7c8d-0000-4000-8000-000000000005_0\.json: not an IndicVoices metadata file", id="bad json"),
    pytest.param(lambda f: [p.unlink() for p in (f / "valid").glob("*.json")],
                 r"valid: no <uuid>_<n>\.json metadata files", id="empty split"),
    pytest.param(lambda f: (f.parent / "v2" / "train").mkdir(parents=True), r"Hindi: several releases: v1, v2",
                 id="two versions"),
])
def test_bad_release_stops_with_the_file_named(tmp_path, damage, message):
    damage(write_indicvoices(tmp_path / "iv"))
    with pytest.raises(DataDirError, match=message):
        prepare_indicvoices(tmp_path / "iv", tmp_path / "data", nj=1)
    assert not (tmp_path / "data").exists()


def test_dev_takes_whole_speakers_about_the_dev_fraction(tmp_path):
    from espnet_ext.data.corpus import SourceUtterance
    train = [SourceUtterance(f"s{i % 40}-{i}", f"s{i % 40}", "x", "hi", tmp_path, "m", i) for i in range(400)]
    split = carve_dev(train, [], "hi")
    dev_speakers = {s.speaker for s in split["dev_hi"]}
    assert not dev_speakers & {s.speaker for s in split["train_hi"]}
    assert DEV_FRACTION * 400 <= len(split["dev_hi"]) < DEV_FRACTION * 400 + 10  # whole speakers of 10
    assert carve_dev(train, [], "hi") == split  # the same on every run
