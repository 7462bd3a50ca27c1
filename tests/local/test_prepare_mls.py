"""Multilingual LibriSpeech: a tiny mls_italian in the real layout (transcripts.txt + FLAC/Opus)."""
import pytest
import soundfile as sf
from prepare_mls import main, prepare_mls
from wavegen import tone

from espnet_ext.data.kaldi import DataDirError, read_data_dir

ROWS = {  # split -> [(speaker, book, utterance, text)]
    "train": [("1595", "1205", "000000", "nel mezzo del cammin di nostra vita"),
              ("4974", "3478", "000012", "mi ritrovai per una selva oscura")],
    "dev": [("280", "529", "000003", "ché la diritta via era smarrita")],
    "test": [("1595", "1330", "000007", "ahi quanto a dir qual era è cosa dura")],
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
def test_mls_becomes_valid_data_dirs(tmp_path, opus):
    write_mls(tmp_path / "mls", opus=opus)
    out = tmp_path / "data"
    main(["--corpus_dir", str(tmp_path / "mls"), "--out_dir", str(out), "--nj", "1"])
    train = read_data_dir(out / "train_it")
    assert [u.utt_id for u in train] == ["it-mls-1595-1205-000000", "it-mls-4974-3478-000012"]
    assert [u.speaker for u in train] == ["it-mls-1595", "it-mls-4974"]
    assert read_data_dir(out / "dev_it")[0].text == "ché la diritta via era smarrita"
    assert [u.utt_id for u in read_data_dir(out / "test_all")] == ["it-mls-1595-1330-000007"]
    assert sf.info(train[0].wav).samplerate == 16000


def test_corpus_dir_may_be_the_language_folder(tmp_path):
    folder = write_mls(tmp_path)
    prepare_mls(folder, tmp_path / "data", langs=["it"], nj=1)
    assert len(read_data_dir(tmp_path / "data" / "train_it")) == 2


def _write_dev(lines):
    return lambda folder: (folder / "dev" / "transcripts.txt").write_text(lines)


@pytest.mark.parametrize("damage, message", [
    pytest.param(lambda f: (f / "test" / "audio" / "1595" / "1330" / "1595_1330_000007.flac").unlink(),
                 r"test/transcripts\.txt:1: audio file .* not found", id="missing audio"),
    pytest.param(_write_dev("280_529_000003\n"), r"dev/transcripts\.txt:1: empty transcript", id="empty"),
    pytest.param(_write_dev("280-529-000003 testo\n"), r"dev/transcripts\.txt:1: unexpected id", id="bad id"),
    pytest.param(_write_dev("280_529_000003 a\n280_529_000003 a\n"),
                 r"dev/transcripts\.txt:2: duplicate utterance id", id="duplicate id"),
    pytest.param(lambda f: (f / "train" / "transcripts.txt").unlink(),
                 r"train/transcripts\.txt: transcripts file not found", id="no transcripts"),
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
