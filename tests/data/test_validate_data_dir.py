"""The data dir validator: each kind of bad input gives an error naming the file, the line and the fix."""
import os
import unicodedata
from pathlib import Path

import pytest
from wavegen import write_tone

from espnet_ext.bin.validate_data_dir import main as validate_cli
from espnet_ext.data.kaldi import Segment, Utterance, write_data_dir
from espnet_ext.data.validate import InvalidDataDir, find_problems, validate_data_dir


def edit(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def wav_of(data_dir, utt_id):
    return next(line.split()[1] for line in (data_dir / "wav.scp").read_text().splitlines()
                if line.startswith(utt_id + " "))


def only_problem(data_dir):
    problems = find_problems(data_dir)
    assert len(problems) == 1, [str(p) for p in problems]
    return str(problems[0])


def test_valid_dir_passes_with_summary(data_dir):
    summary = validate_data_dir(data_dir)
    assert (summary.utterances, summary.speakers, summary.languages) == (3, 2, ["hi", "te"])
    assert summary.hours * 3600 == pytest.approx(2.25)


def test_missing_wav(data_dir):
    wav = wav_of(data_dir, "hi-a-0002")
    os.remove(wav)
    message = only_problem(data_dir)
    assert message.startswith(f"{data_dir / 'wav.scp'}:2: {wav}: audio file not found")
    assert "fix: restore the file or rerun the preparer" in message


def test_corrupt_wav(data_dir):
    with open(wav_of(data_dir, "te-b-0001"), "wb") as f:
        f.write(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    assert "wav.scp:3:" in only_problem(data_dir) and "corrupt" in only_problem(data_dir)


def test_truncated_wav_is_caught_by_its_duration(data_dir):
    wav = wav_of(data_dir, "hi-a-0001")
    data = open(wav, "rb").read()
    open(wav, "wb").write(data[: len(data) // 2])
    message = only_problem(data_dir)
    assert "utt2dur:1:" in message and "says 1.000 s but the audio is 0.49" in message


def test_8khz_audio_names_the_resampling_fix(data_dir):
    write_tone(Path(wav_of(data_dir, "hi-a-0002")), 0.5, sample_rate=8000)
    message = only_problem(data_dir)
    assert "wav.scp:2:" in message and "is 8000 Hz, not 16000" in message
    assert "sox IN -r 16000" in message


def test_stereo_audio(data_dir):
    write_tone(Path(wav_of(data_dir, "hi-a-0002")), 0.5, channels=2)
    assert "has 2 channels, not 1" in only_problem(data_dir)


def test_empty_transcript(data_dir):
    edit(data_dir / "text", "hi-a-0002 आज बारिश है", "hi-a-0002")
    message = only_problem(data_dir)
    assert "text:2: empty transcript for 'hi-a-0002'" in message and "fix:" in message


def test_non_nfc_transcript(data_dir):
    edit(data_dir / "text", "नमस्ते", unicodedata.normalize("NFD", "\u0929"))
    assert "text:1: transcript of 'hi-a-0001' is not NFC" in only_problem(data_dir)


def test_unknown_language(data_dir):
    edit(data_dir / "utt2lang", "te-b-0001 te", "te-b-0001 tel")
    message = only_problem(data_dir)
    assert "utt2lang:3: 'te-b-0001': unknown language code 'tel'" in message
    assert "espnet_ext/languages.py" in message


def test_duplicate_utterance_id(data_dir):
    edit(data_dir / "utt2lang", "hi-a-0002 hi\n", "hi-a-0002 hi\nhi-a-0002 hi\n")
    assert "utt2lang:3: duplicate id 'hi-a-0002' (first on line 2)" in only_problem(data_dir)


def test_unsorted_list(data_dir):
    edit(data_dir / "utt2spk", "hi-a-0001 hi-a\nhi-a-0002 hi-a\n", "hi-a-0002 hi-a\nhi-a-0001 hi-a\n")
    message = only_problem(data_dir)
    assert "utt2spk:2: not sorted: 'hi-a-0001' comes after 'hi-a-0002'" in message
    assert "LC_ALL=C sort" in message


def test_inconsistent_lists(data_dir):
    edit(data_dir / "utt2dur", "te-b-0001 0.750\n", "")
    edit(data_dir / "text", "te-b-0001 నమస్కారం\n", "te-b-0001 నమస్కారం\nte-b-0002 ఇది\n")
    messages = [str(p) for p in find_problems(data_dir)]
    assert any("utt2dur: utterance 'te-b-0001' of text is missing here" in m for m in messages)
    assert any("utt2spk: utterance 'te-b-0002' of text is missing here" in m for m in messages)
    assert all("fix:" in m for m in messages)


def test_spk2utt_must_match_utt2spk(data_dir):
    edit(data_dir / "spk2utt", "hi-a hi-a-0001 hi-a-0002", "hi-a hi-a-0001")
    assert "spk2utt:1: speaker 'hi-a' does not match utt2spk" in only_problem(data_dir)


def test_utterance_ids_must_follow_speaker_order(data_dir):
    edit(data_dir / "utt2spk", "hi-a-0002 hi-a", "hi-a-0002 zz")
    edit(data_dir / "spk2utt", "hi-a hi-a-0001 hi-a-0002\nte-b te-b-0001\n",
         "hi-a hi-a-0001\nte-b te-b-0001\nzz hi-a-0002\n")
    assert "prefix every utterance id with its speaker id" in only_problem(data_dir)


def test_missing_file_and_missing_dir(data_dir, tmp_path):
    (data_dir / "utt2lang").unlink()
    assert only_problem(data_dir).startswith(f"{data_dir / 'utt2lang'}: missing")
    assert "does not exist" in str(find_problems(tmp_path / "nowhere")[0])


def test_all_problems_are_reported_at_once(data_dir):
    edit(data_dir / "utt2lang", "te-b-0001 te", "te-b-0001 xx")
    edit(data_dir / "text", "hi-a-0002 आज बारिश है", "hi-a-0002")
    with pytest.raises(InvalidDataDir) as err:
        validate_data_dir(data_dir)
    assert len(err.value.problems) == 2
    assert "2 problem(s)" in str(err.value)


def test_cli_exit_codes_and_messages(data_dir, capsys):
    assert validate_cli([str(data_dir)]) == 0
    edit(data_dir / "utt2lang", "te-b-0001 te", "te-b-0001 xx")
    assert validate_cli([str(data_dir), "--no_audio"]) == 1
    assert "utt2lang:3:" in capsys.readouterr().err


def test_segments_are_checked_against_their_recording(tmp_path):
    wav = str(write_tone(tmp_path / "rec.wav", 2.0))
    utterances = [Utterance(f"it-s-{i}", "it-s", "ciao", "it", wav, 0.5, Segment("rec", start, start + 0.5))
                  for i, start in enumerate((0.0, 1.0))]
    write_data_dir(tmp_path / "d", utterances)
    assert validate_data_dir(tmp_path / "d").utterances == 2
    edit(tmp_path / "d" / "segments", "it-s-1 rec 1.000 1.500", "it-s-1 rec 2.000 2.500")
    assert "segments:2: segment ends at 2.5 s, after the end of 'rec'" in only_problem(tmp_path / "d")


def test_long_reports_are_capped_but_complete(tmp_path):
    wav = str(write_tone(tmp_path / "a.wav", 0.5))
    write_data_dir(tmp_path / "d", [Utterance(f"it-s-{i:03d}", "it-s", "ciao", "it", wav, 0.5) for i in range(40)])
    lines = (tmp_path / "d" / "utt2lang").read_text().replace(" it\n", " xx\n").splitlines()
    (tmp_path / "d" / "utt2lang").write_text("\n".join(reversed(lines)) + "\n")
    with pytest.raises(InvalidDataDir) as err:
        validate_data_dir(tmp_path / "d", check_audio=False)
    assert len(err.value.problems) == 41  # 40 unknown languages + one (not 39) sorting problem
    assert "... and 11 more" in str(err.value)
