"""Multilingual LibriSpeech: a tiny mls_italian in the real layout (transcripts.txt + FLAC/Opus)."""
from pathlib import Path

import pytest
import soundfile as sf
from prepare_mls import main, prepare_mls
from wavegen import tone

from espnet_ext.data.kaldi import DataDirError, read_data_dir

ROWS = {  # split -> [(speaker, book, utterance, text)]
    "train": [("1595", "1205", "000000", "nel mezzo del cammin di nostra vita"),
              ("4974", "3478", "000012", "mi ritrovai per una selva oscura")],
    "dev": [("280", "529", "000003", "ché la diritta via era smarrita")],
    "test": [("6348", "1330", "000007", "ahi quanto a dir qual era è cosa dura")],
}


def write_mls(root, opus=False):
    """The layout of OpenSLR 94: <split>/transcripts.txt and <split>/audio/<spk>/<book>/<id>.flac|.opus."""
    folder = root / ("mls_italian_opus" if opus else "mls_italian")
    for split, rows in ROWS.items():
        lines = []
        for spk, book, utt, text in rows:
            utt_id = f"{spk}_{book}_{utt}"
            audio = folder / split / "audio" / spk / book / f"{utt_id}.{'opus' if opus else 'flac'}"
            audio.parent.mkdir(parents=True, exist_ok=True)
            if opus:
                sf.write(str(audio), tone(0.5, 48000), 48000, format="OGG", subtype="OPUS")
            else:
                sf.write(str(audio), tone(0.5), 16000, format="FLAC")
            lines.append(f"{utt_id}\t{text}\n")
        (folder / split / "transcripts.txt").write_text("".join(lines), encoding="utf-8")
    return folder


@pytest.mark.parametrize("opus", [False, True])
def test_mls_becomes_valid_data_dirs(tmp_path, opus, check_splits):
    write_mls(tmp_path / "mls", opus=opus)
    out = tmp_path / "data"
    main(["--corpus_dir", str(tmp_path / "mls"), "--out_dir", str(out), "--nj", "1"])
    train = read_data_dir(out / "train_it")
    assert [u.utt_id for u in train] == ["it-mls-1595-1205-000000", "it-mls-4974-3478-000012"]
    assert [u.speaker for u in train] == ["it-mls-1595", "it-mls-4974"]
    assert read_data_dir(out / "dev_it")[0].text == "ché la diritta via era smarrita"
    assert [u.utt_id for u in read_data_dir(out / "test_all")] == ["it-mls-6348-1330-000007"]
    assert sf.info(train[0].wav).samplerate == 16000
    check_splits(out, "it", 0.5)


def test_corpus_dir_may_be_the_language_folder(tmp_path):
    folder = write_mls(tmp_path)
    prepare_mls(folder, tmp_path / "data", langs=["it"], nj=1)
    assert len(read_data_dir(tmp_path / "data" / "train_it")) == 2


def _write_dev(lines):
    return lambda folder: (folder / "dev" / "transcripts.txt").write_text(lines)


TRAIN_FLAC = Path("train") / "audio" / "1595" / "1205" / "1595_1205_000000.flac"


def _write_train(lines):
    return lambda folder: (folder / "train" / "transcripts.txt").write_text(lines, encoding="utf-8")


@pytest.mark.parametrize("damage, message", [
    pytest.param(lambda f: (f / TRAIN_FLAC).unlink(), r"train/transcripts\.txt:1: audio file .* not found",
                 id="missing audio"),
    pytest.param(lambda f: (f / TRAIN_FLAC).write_bytes(b"fLaC" + b"\x00" * 40),
                 r"train/transcripts\.txt:1: .*cannot decode", id="wrong codec"),
    pytest.param(_write_train("1595_1205_000000\n4974_3478_000012\tmi ritrovai per una selva oscura\n"),
                 r"train/transcripts\.txt:1: empty transcript", id="empty"),
    pytest.param(_write_train("4974_3478_000012\tmi ritrovai\n4974_3478_000012\tmi ritrovai\n"),
                 r"train/transcripts\.txt:2: duplicate utterance id", id="duplicate id"),
])
def test_a_bad_row_is_reported_and_skipped(tmp_path, caplog, prepared_without, damage, message):
    damage(write_mls(tmp_path / "mls"))
    out = tmp_path / "data"
    prepared_without(lambda: prepare_mls(tmp_path / "mls", out, nj=1), caplog, out / "train_it",
                     "it-mls-1595-1205-000000", ["it-mls-4974-3478-000012"], message)


@pytest.mark.parametrize("damage, message", [
    pytest.param(_write_dev("280-529-000003 testo\n"), r"dev/transcripts\.txt:1: unexpected id", id="bad id"),
    pytest.param(lambda f: (f / "train" / "transcripts.txt").unlink(),
                 r"train/transcripts\.txt: transcripts file not found", id="no transcripts"),
    pytest.param(lambda f: (f / "test" / "audio" / "6348" / "1330" / "6348_1330_000007.flac").unlink(),
                 r"test/transcripts\.txt: 1 of 1 rows of test_it are unusable", id="whole split lost"),
])
def test_bad_corpus_writes_no_data_dir(tmp_path, damage, message):
    damage(write_mls(tmp_path / "mls"))
    out = tmp_path / "data"
    with pytest.raises(DataDirError, match=message):
        prepare_mls(tmp_path / "mls", out, nj=1)
    assert not out.exists()


def test_no_mls_language_found(tmp_path):
    with pytest.raises(DataDirError, match="no folder for any of"):
        prepare_mls(tmp_path, tmp_path / "data")


def test_cli_reports_bad_input_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"^\S+: error: \S+: no folder for any of hi, pa, te, it"):
        main(["--corpus_dir", str(tmp_path), "--out_dir", str(tmp_path / "data")])
