"""Kaldi data dir reading and writing: order, derived files, NFC, and no half-written dirs."""
import os
import subprocess
import unicodedata

import pytest

from espnet_ext.data.kaldi import (
    DataDirError, Segment, Utterance, combine_data_dirs, read_data_dir, read_entries, write_data_dir,
)


def utt(utt_id, speaker, text="ciao", lang="it", wav="/a.wav", duration=1.0, segment=None):
    return Utterance(utt_id, speaker, text, lang, wav, duration, segment)


def test_round_trip(data_dir):
    utterances = read_data_dir(data_dir)
    assert [u.utt_id for u in utterances] == ["hi-a-0001", "hi-a-0002", "te-b-0001"]
    assert utterances[2].lang == "te" and utterances[2].speaker == "te-b"
    assert utterances[0].text == "नमस्ते दुनिया"
    assert utterances[1].duration == pytest.approx(0.5)
    assert (data_dir / "spk2utt").read_text() == "hi-a hi-a-0001 hi-a-0002\nte-b te-b-0001\n"


def test_lists_are_sorted_like_c_locale_sort(tmp_path):
    # Upper case, '-', '_' and non-ASCII ids order differently under locale-aware and byte-wise sorts.
    speakers = ["it-B", "it-a", "it-_x", "it-Z", "it-é", "it-0"]
    utterances = [utt(f"{spk}-{i}", spk) for spk in speakers for i in ("2", "10")]
    write_data_dir(tmp_path / "d", reversed(utterances))
    text = (tmp_path / "d" / "text").read_bytes()
    c_sorted = subprocess.run(["sort", "-k1,1"], input=text, capture_output=True, check=True,
                              env={**os.environ, "LC_ALL": "C"}).stdout
    assert text == c_sorted
    keys = [e.key for e in read_entries(tmp_path / "d" / "spk2utt")]
    assert keys == sorted(speakers, key=lambda s: s.encode("utf-8"))


def test_text_is_written_nfc_with_single_spaces(tmp_path):
    decomposed = "perch" + "e\u0301" + "  no\tsi"
    write_data_dir(tmp_path / "d", [utt("s-1", "s", text=decomposed)])
    written = read_entries(tmp_path / "d" / "text")[0].value
    assert written == "perché no si"
    assert unicodedata.is_normalized("NFC", written)


@pytest.mark.parametrize("bad, message", [
    ([utt("s-1", "s"), utt("s-1", "s")], "duplicate utterance id"),
    ([utt("x-1", "s")], "does not start with its speaker"),
    ([utt("s-1", "s", text="  ")], "empty transcript"),
    ([utt("s-1", "s", lang="xx")], "unknown language code"),
    ([utt("s-1", "s", wav="/a b.wav")], "whitespace"),
    ([utt("s-1", "s", duration=0.0)], "non-positive duration"),
    ([utt("s-1", "s"), utt("s-2", "s", segment=Segment("r", 0.0, 1.0))], "segments and others not"),
])
def test_bad_utterances_write_nothing(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        write_data_dir(tmp_path / "d", bad)
    assert list(tmp_path.iterdir()) == []


def test_rewrite_replaces_the_whole_dir(tmp_path):
    seg = Segment("rec1", 0.5, 1.5)
    write_data_dir(tmp_path / "d", [utt("s-1", "s", wav="/rec1.wav", segment=seg)])
    assert (tmp_path / "d" / "segments").read_text() == "s-1 rec1 0.500 1.500\n"
    assert (tmp_path / "d" / "wav.scp").read_text() == "rec1 /rec1.wav\n"
    assert read_data_dir(tmp_path / "d")[0].segment == seg
    write_data_dir(tmp_path / "d", [utt("s-2", "s")])
    assert not (tmp_path / "d" / "segments").exists()
    assert [u.utt_id for u in read_data_dir(tmp_path / "d")] == ["s-2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no staging or old copies left


def test_read_names_the_list_missing_an_utterance(data_dir):
    lines = (data_dir / "utt2lang").read_text().splitlines()
    (data_dir / "utt2lang").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataDirError, match=r"utt2lang: no entry for 'te-b-0001'"):
        read_data_dir(data_dir)


def test_blank_line_is_an_error_with_its_line_number(data_dir):
    (data_dir / "text").write_text("hi-a-0001 a\n\nhi-a-0002 b\n")
    with pytest.raises(DataDirError, match=r"text:2: blank line"):
        read_entries(data_dir / "text")


def test_combine(tmp_path):
    write_data_dir(tmp_path / "a", [utt("it-s-1", "it-s")])
    write_data_dir(tmp_path / "b", [utt("hi-s-1", "hi-s", text="नमस्ते", lang="hi")])
    combine_data_dirs(tmp_path / "all", [tmp_path / "a", tmp_path / "b"])
    assert (tmp_path / "all" / "utt2lang").read_text() == "hi-s-1 hi\nit-s-1 it\n"


def test_segments_json_round_trips_and_names_a_bad_file(tmp_path):
    from espnet_ext.data.kaldi import LanguageSegment, read_segments_json, write_segments_json

    segments = {"u1": [LanguageSegment(0.0, 1.25, "hi"), LanguageSegment(1.25, 3.0, "en")]}
    write_segments_json(tmp_path / "s.json", segments)
    assert read_segments_json(tmp_path / "s.json") == segments
    (tmp_path / "bad.json").write_text('{"u1": [[0, 1]]}')
    with pytest.raises(ValueError, match=r"bad\.json: not a segments JSON"):
        read_segments_json(tmp_path / "bad.json")


def test_a_kaldi_dir_without_utt2dur_and_spk2utt_is_read_with_measured_durations(data_dir):
    (data_dir / "utt2dur").unlink()
    (data_dir / "spk2utt").unlink()
    durations = {u.utt_id: u.duration for u in read_data_dir(data_dir)}
    assert durations == {"hi-a-0001": 1.0, "hi-a-0002": 0.5, "te-b-0001": 0.75}  # measured from the WAVs
    assert (data_dir / "utt2dur").read_text().splitlines()[0] == "hi-a-0001 1.000"  # written for next time


def test_a_read_only_dir_without_utt2dur_is_measured_and_left_alone(data_dir, monkeypatch):
    (data_dir / "utt2dur").unlink()
    monkeypatch.setattr("espnet_ext.data.kaldi.os.access", lambda path, mode: False)  # as for a user, not root
    assert [u.duration for u in read_data_dir(data_dir)] == [1.0, 0.5, 0.75]
    assert not (data_dir / "utt2dur").exists()


def test_reading_refuses_an_unknown_language_and_a_path_that_is_no_dir(data_dir):
    from espnet_ext.languages import UnknownLanguage

    utt2lang = data_dir / "utt2lang"
    utt2lang.write_text(utt2lang.read_text().replace("hi-a-0002 hi", "hi-a-0002 xx"))
    with pytest.raises(UnknownLanguage, match=r"train/utt2lang: utterance hi-a-0002: unknown language code 'xx'"):
        read_data_dir(data_dir)
    with pytest.raises(DataDirError, match=r"utt2lang: is a file, not a data dir \(fix: give the directory"):
        read_data_dir(utt2lang)
    with pytest.raises(DataDirError, match=r"nowhere: data dir does not exist"):
        read_data_dir(data_dir / "nowhere")


def test_segments_are_checked_against_the_data_dir_they_cut(data_dir, tmp_path):
    from espnet_ext.data.kaldi import LanguageSegment, check_segments, read_segments_json

    utterances = read_data_dir(data_dir)  # 1.0, 0.5 and 0.75 s
    fits = {u.utt_id: [LanguageSegment(0.0, u.duration, u.lang)] for u in utterances}
    check_segments({**fits, "other-set-utt": [LanguageSegment(0, 9, "hi")]}, utterances, data_dir, "s.json")
    with pytest.raises(DataDirError, match=r"s.json: no segments for 1 of the 3 utterances of .* \(e.g. 'te-b-0001'\)"):
        check_segments({k: v for k, v in fits.items() if k != "te-b-0001"}, utterances, data_dir, "s.json")
    with pytest.raises(DataDirError, match=r"utterance 'hi-a-0002': a segment ends at 2 s, after the 0.5 s"):
        check_segments({**fits, "hi-a-0002": [LanguageSegment(0, 2, "hi")]}, utterances, data_dir, "s.json")
    for content, message in [("[1, 2]", "it holds a list, not an object"),
                             ('{"u": [[0.5, 0.5, "hi"]]}', "utterance 'u': segment 0.5-0.5 s is empty or negative"),
                             ('{"u": [[0, 1, "klingon"]]}', "utterance 'u' has .*unknown language code 'klingon'")]:
        (tmp_path / "s.json").write_text(content)
        with pytest.raises(DataDirError, match=message):
            read_segments_json(tmp_path / "s.json")
