"""Common Voice: a tiny release in the real layout (TSV + MP3 clips) becomes valid data dirs."""
import csv

import pytest
import soundfile as sf
from prepare_commonvoice import main, prepare_commonvoice
from wavegen import tone

from espnet_ext.data.kaldi import DataDirError, read_data_dir

HEADER = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
          "age", "gender", "accents", "variant", "locale", "segment"]
CLIENTS = ["a" * 128, "b" * 128]


def write_release(root, locale, rows_by_split):
    """`rows_by_split`: split -> [(client index, clip name, sentence)]; clips are 48 kHz MP3 tones."""
    folder = root / locale
    (folder / "clips").mkdir(parents=True)
    for split, rows in rows_by_split.items():
        with open(folder / f"{split}.tsv", "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, lineterminator="\n")
            writer.writerow(HEADER)
            for client, clip, sentence in rows:
                extra = ["", "2", "0", "", "", "", "", locale, ""]
                writer.writerow([CLIENTS[client], clip, "x", sentence, *extra])
                sf.write(str(folder / "clips" / clip), tone(0.6, 48000), 48000, format="MP3")
    return folder


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "cv-corpus-17.0"
    write_release(root, "hi", {
        "train": [(0, "common_voice_hi_1.mp3", "मैं घर   जा रहा हूँ"),
                  (1, "common_voice_hi_2.mp3", 'उसने कहा "ठीक है"')],
        "dev": [(1, "common_voice_hi_3.mp3", "कल मिलेंगे")],
        "test": [(0, "common_voice_hi_4.mp3", "धन्यवाद")],
    })
    write_release(root, "pa-IN", {
        "train": [(0, "common_voice_pa-IN_1.mp3", "ਸਤ ਸ੍ਰੀ ਅਕਾਲ")],
        "dev": [(1, "common_voice_pa-IN_2.mp3", "ਧੰਨਵਾਦ")],
        "test": [(1, "common_voice_pa-IN_3.mp3", "ਫਿਰ ਮਿਲਾਂਗੇ")],
    })
    return root


def test_release_becomes_valid_data_dirs(release, tmp_path):
    out = tmp_path / "data"
    main(["--corpus_dir", str(release), "--out_dir", str(out), "--nj", "2"])
    train = read_data_dir(out / "train_hi")
    assert [u.utt_id for u in train] == [f"hi-cv-{'a' * 16}-common_voice_hi_1",
                                         f"hi-cv-{'b' * 16}-common_voice_hi_2"]
    assert train[0].text == "मैं घर जा रहा हूँ" and train[1].text == 'उसने कहा "ठीक है"'
    assert read_data_dir(out / "test_pa")[0].lang == "pa"
    assert len(read_data_dir(out / "dev_all")) == 2
    assert sf.info(train[0].wav).samplerate == 16000
    assert not (out / "train_te").exists()


def _unlink_clip(root):
    (root / "hi" / "clips" / "common_voice_hi_3.mp3").unlink()


def _corrupt_clip(root):
    (root / "pa-IN" / "clips" / "common_voice_pa-IN_1.mp3").write_bytes(b"not an mp3")


@pytest.mark.parametrize("damage, message", [
    pytest.param(_unlink_clip, r"dev\.tsv:2: audio file .* not found", id="missing clip"),
    pytest.param(_corrupt_clip, r"train\.tsv:2: .*cannot decode", id="corrupt clip"),
    pytest.param(lambda root: _replace(root / "hi" / "test.tsv", "धन्यवाद", " "),
                 r"test\.tsv:2: empty transcript", id="empty sentence"),
    pytest.param(lambda root: _replace(root / "hi" / "train.tsv", "client_id", "client"),
                 r"train\.tsv:1: header lacks column\(s\) client_id", id="bad header"),
    pytest.param(lambda root: _replace(root / "hi" / "dev.tsv", "कल मिलेंगे", "कल\tमिलेंगे"),
                 r"dev\.tsv:2: wrong number of tab", id="tab in sentence"),
])
def test_bad_release_writes_no_data_dir(release, tmp_path, damage, message):
    damage(release)
    out = tmp_path / "data"
    with pytest.raises(ValueError, match=message):
        prepare_commonvoice(release, out, nj=1)
    assert not list(out.glob("*_*"))


def _replace(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_requested_language_must_exist(release, tmp_path):
    with pytest.raises(DataDirError, match=r"no folder for te"):
        prepare_commonvoice(release, tmp_path / "data", langs=["te"])
    with pytest.raises(ValueError, match="unknown language code 'xx'"):
        prepare_commonvoice(release, tmp_path / "data", langs=["xx"])
    assert not (tmp_path / "data").exists()
