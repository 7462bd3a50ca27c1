"""FLEURS: a tiny google/fleurs data/ folder in the real layout (7-field TSVs without a header, WAVs under
audio/<split>/ as the archives extract)."""
import pytest
import soundfile as sf
from prepare_fleurs import main, prepare_fleurs
from wavegen import tone

from espnet_ext.data.kaldi import DataDirError, read_data_dir

ROWS = {  # (code, split) -> [(sentence id, file name, raw transcription)]
    ("it_it", "train"): [("1679", "10215367889716423151.wav", "Il 15 marzo, la città ha celebrato."),
                         ("1679", "2203958131009188561.wav", "Il 15 marzo, la città ha celebrato.")],
    ("it_it", "dev"): [("12", "8810225003398113711.wav", "Nel mezzo del cammin.")],
    ("it_it", "test"): [("40", "17301010109127367474.wav", "Mi ritrovai per una selva oscura.")],
    ("te_in", "train"): [("7", "1234.wav", "తెలుగు భాష")],
    ("te_in", "dev"): [("8", "1235.wav", "నమస్కారం")],
    ("te_in", "test"): [("9", "1236.wav", "ధన్యవాదాలు")],
}


def write_fleurs(root):
    for (code, split), rows in ROWS.items():
        folder = root / "data" / code
        lines = []
        for sentence, name, raw in rows:
            wav = folder / "audio" / split / name
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(wav), tone(0.5), 16000)
            chars = " ".join(raw.lower().replace(" ", "|"))
            lines.append("\t".join([sentence, name, raw, raw.lower().strip("."), chars, "8000", "FEMALE"]) + "\n")
        (folder / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
    return root


def test_fleurs_becomes_valid_data_dirs_one_speaker_per_recording(tmp_path, check_splits):
    write_fleurs(tmp_path / "fleurs")
    out = tmp_path / "data"
    main(["--corpus_dir", str(tmp_path / "fleurs"), "--out_dir", str(out), "--nj", "1"])
    train = read_data_dir(out / "train_it")
    assert [u.utt_id for u in train] == ["it-fleurs-10215367889716423151", "it-fleurs-2203958131009188561"]
    assert [u.speaker for u in train] == [u.utt_id for u in train]  # no speaker ids in FLEURS
    assert train[0].text == "Il 15 marzo, la città ha celebrato."  # the raw transcription
    assert read_data_dir(out / "test_te")[0].text == "ధన్యవాదాలు"
    assert {u.lang for u in read_data_dir(out / "dev_all")} == {"it", "te"}
    assert sf.info(train[0].wav).samplerate == 16000
    check_splits(out, "it", 0.5)
    check_splits(out, "te", 0.5)


def test_corpus_dir_may_be_one_language_folder(tmp_path):
    write_fleurs(tmp_path / "fleurs")
    prepare_fleurs(tmp_path / "fleurs" / "data" / "te_in", tmp_path / "data", langs=["te"], nj=1)
    assert len(read_data_dir(tmp_path / "data" / "train_te")) == 1


IT_TRAIN = ("data", "it_it", "audio", "train", "10215367889716423151.wav")


def _empty_first_train_sentence(root):
    tsv = root / "data" / "it_it" / "train.tsv"
    first, rest = tsv.read_text(encoding="utf-8").split("\n", 1)
    fields = first.split("\t")
    fields[2] = " "
    tsv.write_text("\t".join(fields) + "\n" + rest, encoding="utf-8")


@pytest.mark.parametrize("damage, message", [
    pytest.param(lambda r: r.joinpath(*IT_TRAIN).unlink(), r"train\.tsv:1: audio file .* not found",
                 id="missing audio"),
    pytest.param(lambda r: r.joinpath(*IT_TRAIN).write_bytes(b"RIFF" + b"\x00" * 40),
                 r"train\.tsv:1: .*cannot decode", id="wrong codec"),
    pytest.param(_empty_first_train_sentence, r"train\.tsv:1: empty transcript", id="empty sentence"),
])
def test_a_bad_row_is_reported_and_skipped(tmp_path, caplog, prepared_without, damage, message):
    damage(write_fleurs(tmp_path / "fleurs"))
    out = tmp_path / "data"
    prepared_without(lambda: prepare_fleurs(tmp_path / "fleurs", out, nj=1), caplog, out / "train_it",
                     "it-fleurs-10215367889716423151", ["it-fleurs-2203958131009188561"], message)


@pytest.mark.parametrize("damage, message", [
    pytest.param(lambda r: (r / "data" / "it_it" / "dev.tsv").write_text("12\tx.wav\tciao\n"),
                 r"dev\.tsv:1: expected 7 tab-separated fields", id="short line"),
    pytest.param(lambda r: (r / "data" / "te_in" / "test.tsv").unlink(), r"test\.tsv: split file not found",
                 id="no split"),
    pytest.param(lambda r: (r / "data" / "it_it" / "audio" / "dev" / "8810225003398113711.wav").unlink(),
                 r"dev\.tsv: 1 of 1 rows of dev_it are unusable", id="whole split lost"),
])
def test_bad_corpus_writes_no_data_dir(tmp_path, damage, message):
    damage(write_fleurs(tmp_path / "fleurs"))
    out = tmp_path / "data"
    with pytest.raises(DataDirError, match=message):
        prepare_fleurs(tmp_path / "fleurs", out, nj=1)
    assert not out.exists()


def test_cli_reports_bad_input_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"^\S+: error: \S+: no folder for any of hi, pa, te, it"):
        main(["--corpus_dir", str(tmp_path), "--out_dir", str(tmp_path / "data")])


def test_utterances_outside_the_duration_bounds_are_dropped_and_counted(tmp_path, caplog):
    root = write_fleurs(tmp_path / "fleurs")
    sf.write(str(root / "data" / "it_it" / "audio" / "train" / "10215367889716423151.wav"), tone(0.1), 16000)
    with caplog.at_level("INFO"):
        prepare_fleurs(root, tmp_path / "data", langs=["it"], nj=1)
    assert [u.utt_id for u in read_data_dir(tmp_path / "data" / "train_it")] == ["it-fleurs-2203958131009188561"]
    assert "train_it: dropped 1 of 2 utterances outside 0.3-30 s (1 shorter, 0 longer)" in caplog.text
    with pytest.raises(DataDirError, match=r"train_it: every utterance lies outside 0\.3-0\.4 s"):
        prepare_fleurs(root, tmp_path / "data2", langs=["it"], nj=1, max_seconds=0.4)
