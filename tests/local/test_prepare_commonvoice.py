"""Common Voice: a tiny release in the real layout (TSV + MP3 clips) becomes valid data dirs."""
import csv

import pytest
import soundfile as sf
from prepare_commonvoice import main, prepare_commonvoice
from wavegen import tone

from espnet_ext.data.corpus import code_mixed
from espnet_ext.data.kaldi import DataDirError, read_data_dir

HEADER = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
          "age", "gender", "accents", "variant", "locale", "segment"]
CLIENTS = ["a" * 128, "b" * 128, "c" * 128, "d" * 128]


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
        "test": [(2, "common_voice_hi_4.mp3", "धन्यवाद"),
                 (3, "common_voice_hi_5.mp3", "मेरा phone खो गया")],  # Hindi-English code-mixing
    })
    write_release(root, "pa-IN", {
        "train": [(0, "common_voice_pa-IN_1.mp3", "ਸਤ ਸ੍ਰੀ ਅਕਾਲ")],
        "dev": [(1, "common_voice_pa-IN_2.mp3", "ਧੰਨਵਾਦ")],
        "test": [(2, "common_voice_pa-IN_3.mp3", "ਫਿਰ ਮਿਲਾਂਗੇ")],
    })
    return root


def test_release_becomes_valid_data_dirs(release, tmp_path, check_splits):
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
    check_splits(out, "hi", 0.6)


def test_code_mixed_utterances_are_kept_tagged_and_gathered(release, tmp_path):
    out = tmp_path / "data"
    prepare_commonvoice(release, out, nj=1)
    mixed = f"hi-cv-{'d' * 16}-common_voice_hi_5"
    assert len(read_data_dir(out / "test_hi")) == 2  # kept in its language's test set ...
    assert (out / "test_hi" / "utt2cs").read_text() == f"{mixed} hi-en\n"  # ... tagged ...
    assert [u.utt_id for u in read_data_dir(out / "test_cs_commonvoice")] == [mixed]  # ... and gathered
    assert not (out / "train_hi" / "utt2cs").exists()


def test_speakers_of_the_test_set_are_held_out_of_train_and_dev(tmp_path, caplog):
    root = tmp_path / "cv"
    write_release(root, "hi", {"train": [(0, "a.mp3", "एक"), (2, "b.mp3", "दो")], "dev": [(1, "c.mp3", "तीन")],
                               "test": [(2, "d.mp3", "चार")]})
    with caplog.at_level("INFO"):
        prepare_commonvoice(root, tmp_path / "data", nj=1)
    assert [u.speaker for u in read_data_dir(tmp_path / "data" / "train_hi")] == [f"hi-cv-{'a' * 16}"]
    assert "train_hi: dropped 1 utterances of speakers who are in test_hi" in caplog.text


@pytest.mark.parametrize("text, lang, tag", [
    ("मेरा phone खो गया", "hi", "hi-en"), ("ਮੈਂ office ਜਾ ਰਿਹਾ ਹਾਂ", "pa", "pa-en"),
    ("धन्यवाद 2024 !", "hi", None), ("ciao phone", "it", None), ("నమస్కారం", "te", None),
])
def test_code_mixed_needs_latin_words_in_an_indic_transcript(text, lang, tag):
    assert code_mixed(text, lang) == tag


def _unlink_clip(root):
    (root / "hi" / "clips" / "common_voice_hi_1.mp3").unlink()


def _corrupt_clip(root):
    (root / "hi" / "clips" / "common_voice_hi_1.mp3").write_bytes(b"not an mp3")


FIRST = f"hi-cv-{'a' * 16}-common_voice_hi_1"
SECOND = f"hi-cv-{'b' * 16}-common_voice_hi_2"


@pytest.mark.parametrize("damage, message", [
    pytest.param(_unlink_clip, r"train\.tsv:2: audio file .* not found", id="missing clip"),
    pytest.param(_corrupt_clip, r"train\.tsv:2: .*cannot decode", id="wrong codec"),
    pytest.param(lambda root: _replace(root / "hi" / "train.tsv", "मैं घर   जा रहा हूँ", " "),
                 r"train\.tsv:2: empty transcript", id="empty sentence"),
])
def test_a_bad_row_is_reported_and_skipped(release, tmp_path, caplog, prepared_without, damage, message):
    damage(release)
    out = tmp_path / "data"
    prepared_without(lambda: prepare_commonvoice(release, out, nj=1), caplog, out / "train_hi", FIRST, [SECOND],
                     message)
    assert len(read_data_dir(out / "test_pa")) == 1  # every other dir as usual


@pytest.mark.parametrize("damage, message", [
    pytest.param(lambda root: _replace(root / "hi" / "train.tsv", "client_id", "client"),
                 r"train\.tsv:1: header lacks column\(s\) client_id", id="bad header"),
    pytest.param(lambda root: _replace(root / "hi" / "dev.tsv", "कल मिलेंगे", "कल\tमिलेंगे"),
                 r"dev\.tsv:2: wrong number of tab", id="tab in sentence"),
    pytest.param(lambda root: (root / "hi" / "clips" / "common_voice_hi_3.mp3").unlink(),
                 r"dev\.tsv: 1 of 1 rows of dev_hi are unusable \(first: line 2, audio file", id="whole split lost"),
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
