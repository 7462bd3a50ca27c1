"""Kathbath: a tiny release in the real layout (transcription_n2w.txt + AAC .m4a) becomes valid dirs."""
from pathlib import Path

import pytest
import soundfile as sf
from prepare_kathbath import TRANSCRIPT, main, prepare_kathbath
from wavegen import tone

from espnet_ext.data.kaldi import DataDirError, read_data_dir

av = pytest.importorskip("av")

ROWS = {  # split -> [(file name, transcript)]; names are <utterance>-<speaker>-<gender>.m4a
    "train": [("844424931537866-594-f.m4a", "नमस्ते\u00a0दोस्तों"),
              ("844424931029859-973-m.m4a", "एक सौ बीस रुपये")],
    "valid": [("844424930000001-594-f.m4a", "कल मिलते हैं")],
    "test_known": [("844424930000002-973-m.m4a", "धन्यवाद")],
    "test_unknown": [("844424930000003-12-f.m4a", "फिर मिलेंगे")],
}


def write_m4a(path, seconds=0.5, sample_rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=sample_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone(seconds, sample_rate)[None, :], format="flt", layout="mono")
        frame.sample_rate = sample_rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def write_kathbath(root, speaker_folders=False):
    """kb_data_clean_m4a/hindi/<split>/{transcription_n2w.txt, audio/[<speaker>/]<name>.m4a}."""
    folder = root / "kb_data_clean_m4a" / "hindi"
    for split, rows in ROWS.items():
        for name, _ in rows:
            sub = name.split("-")[1] if speaker_folders else ""
            write_m4a(folder / split / "audio" / sub / name)
        lines = "".join(f"{name}\t{text}\n" for name, text in rows)
        (folder / split / TRANSCRIPT).write_text(lines, encoding="utf-8")
    return folder


@pytest.mark.parametrize("speaker_folders", [False, True])
def test_kathbath_becomes_valid_data_dirs(tmp_path, speaker_folders, check_splits):
    write_kathbath(tmp_path / "kathbath", speaker_folders)
    out = tmp_path / "data"
    main(["--corpus_dir", str(tmp_path / "kathbath"), "--out_dir", str(out), "--nj", "2"])
    train = read_data_dir(out / "train_hi")
    assert [u.utt_id for u in train] == ["hi-kb-594-844424931537866", "hi-kb-973-844424931029859"]
    assert train[0].text == "नमस्ते दोस्तों"  # no-break space normalised
    assert read_data_dir(out / "dev_hi")[0].speaker == "hi-kb-594"
    assert read_data_dir(out / "test_hi")[0].utt_id == "hi-kb-12-844424930000003"  # test_unknown
    assert len(read_data_dir(out / "test_known_hi")) == 1
    assert sorted(p.name for p in out.glob("*_all")) == ["dev_all", "test_all", "test_known_all", "train_all"]
    assert sf.info(train[0].wav).samplerate == 16000
    # AAC adds its encoder's priming and padding frames (1024 samples each at 16 kHz): up to 0.13 s more
    check_splits(out, "hi", 0.5, ("train", "dev", "test", "test_known"), tolerance=0.13)
    assert not {u.speaker for u in read_data_dir(out / "test_hi")} & {u.speaker for u in train}  # test_unknown


TRAIN_CLIP = Path("train") / "audio" / "844424931537866-594-f.m4a"
VALID_CLIP = Path("valid") / "audio" / "844424930000001-594-f.m4a"


@pytest.mark.parametrize("damage, message", [
    pytest.param(lambda f: (f / TRAIN_CLIP).unlink(),
                 r"train/transcription_n2w\.txt:1: audio file .* not found", id="missing audio"),
    pytest.param(lambda f: (f / TRAIN_CLIP).write_bytes(b"\x00" * 50),
                 r"train/transcription_n2w\.txt:1: .*cannot decode", id="wrong codec"),
    pytest.param(lambda f: (f / "train" / TRANSCRIPT).write_text(
        "844424931537866-594-f.m4a\n844424931029859-973-m.m4a एक सौ बीस रुपये\n", encoding="utf-8"),
                 r"train/transcription_n2w\.txt:1: empty transcript", id="empty transcript"),
])
def test_a_bad_row_is_reported_and_skipped(tmp_path, caplog, prepared_without, damage, message):
    damage(write_kathbath(tmp_path / "kathbath"))
    out = tmp_path / "data"
    prepared_without(lambda: prepare_kathbath(tmp_path / "kathbath", out, nj=1), caplog, out / "train_hi",
                     "hi-kb-594-844424931537866", ["hi-kb-973-844424931029859"], message)


@pytest.mark.parametrize("damage, message", [
    pytest.param(lambda f: (f / "train" / TRANSCRIPT).write_text("clip1.m4a ciao\n"),
                 r"train/transcription_n2w\.txt:1: unexpected file name", id="bad file name"),
    pytest.param(lambda f: (f / VALID_CLIP).unlink(),
                 r"valid/transcription_n2w\.txt: 1 of 1 rows of dev_hi are unusable", id="whole split lost"),
])
def test_bad_release_writes_no_data_dir(tmp_path, damage, message):
    damage(write_kathbath(tmp_path / "kathbath"))
    out = tmp_path / "data"
    with pytest.raises(ValueError, match=message):
        prepare_kathbath(tmp_path / "kathbath", out, nj=1)
    assert not list(out.glob("*_*"))


def test_italian_is_not_in_kathbath(tmp_path):
    write_kathbath(tmp_path / "kathbath")
    with pytest.raises(DataDirError, match="no folder for it"):
        prepare_kathbath(tmp_path / "kathbath", tmp_path / "data", langs=["it"])
