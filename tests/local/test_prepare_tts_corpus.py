"""The espeak-ng corpus: valid dirs, unseen-voice and unseen-sentence splits, determinism, resumption."""
import os

import pytest
import soundfile as sf
from prepare_tts_corpus import (
    OUT_OF_SET_FRACTION, OUT_OF_SET_UNION, TRAIN_UTTS_FACTOR, VARIANTS, pair_up, prepare_tts_corpus, voices_for,
)

from espnet_ext.data.kaldi import DataDirError, read_data_dir
from espnet_ext.data.validate import validate_data_dir

SENTENCES = {  # 12 short sentences each, one duplicate and one blank line to be dropped
    "hi": [f"यह वाक्य संख्या {w} है" for w in "एक दो तीन चार पाँच छह सात आठ नौ दस ग्यारह बारह".split()],
    "pa": [f"ਇਹ ਵਾਕ ਨੰਬਰ {w} ਹੈ" for w in "ਇੱਕ ਦੋ ਤਿੰਨ ਚਾਰ ਪੰਜ ਛੇ ਸੱਤ ਅੱਠ ਨੌਂ ਦਸ ਗਿਆਰਾਂ ਬਾਰਾਂ".split()],
    "te": [f"ఇది వాక్యం సంఖ్య {w}"
           for w in "ఒకటి రెండు మూడు నాలుగు ఐదు ఆరు ఏడు ఎనిమిది తొమ్మిది పది పదకొండు పన్నెండు".split()],
    "it": [f"questa è la frase numero {w}"
           for w in "uno due tre quattro cinque sei sette otto nove dieci undici dodici".split()],
}
ADAPTER_LANGS = list(SENTENCES)
SENTENCES.update({  # a LID-only language and an out-of-set one
    "en": [f"this is sentence number {w}"
           for w in "one two three four five six seven eight nine ten eleven twelve".split()],
    "es": [f"esta es la frase número {w}"
           for w in "uno dos tres cuatro cinco seis siete ocho nueve diez once doce".split()],
})
UTTS = 5


@pytest.fixture
def sentences_dir(tmp_path):
    folder = tmp_path / "sentences"
    folder.mkdir()
    for lang, lines in SENTENCES.items():
        (folder / f"{lang}.txt").write_text("\n".join(lines + ["", lines[0]]) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def corpus(tmp_path, sentences_dir):
    out = tmp_path / "data"
    written = prepare_tts_corpus(out, langs=list(SENTENCES), sentences_dir=sentences_dir, utts_per_split=UTTS, nj=2)
    return out, written


def test_writes_valid_dirs_for_every_language_and_the_union(corpus):
    out, written = corpus
    assert sorted(written) == sorted([f"{s}_{lang}" for s in ("train", "dev", "test")
                                      for lang in ADAPTER_LANGS + ["en", "all"]] + ["test_es", OUT_OF_SET_UNION])
    for lang in ADAPTER_LANGS + ["en"]:
        utterances = read_data_dir(out / f"test_{lang}")
        assert len(utterances) == UTTS
        assert all(u.lang == lang and u.utt_id.startswith(f"{u.speaker}-") for u in utterances)
        assert all(u.speaker.startswith(f"{lang}-") for u in utterances)
    assert validate_data_dir(out / "train_all").languages == sorted(ADAPTER_LANGS)  # no LID-only English
    assert len(read_data_dir(out / "dev_all")) == UTTS * len(ADAPTER_LANGS)
    assert len(read_data_dir(out / "train_it")) == TRAIN_UTTS_FACTOR * UTTS  # the default training size
    info = sf.info(read_data_dir(out / "train_hi")[0].wav)
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")


def test_out_of_set_language_gets_a_test_set_only_from_every_sentence(corpus):
    out, written = corpus
    test = read_data_dir(out / "test_es")
    assert len(test) == int(OUT_OF_SET_FRACTION * UTTS) and {u.lang for u in test} == {"es"}
    assert {u.speaker.split("-")[1] for u in test} <= set(VARIANTS["test"])  # the test voices
    assert not any((out / f"{split}_es").exists() for split in ("train", "dev"))
    assert [u.utt_id for u in read_data_dir(out / OUT_OF_SET_UNION)] == [u.utt_id for u in test]
    assert "es" not in validate_data_dir(out / "test_all").languages


def test_splits_are_disjoint_in_speakers_voices_and_sentences(corpus):
    out, _ = corpus
    for lang in ADAPTER_LANGS + ["en"]:
        sets = {s: read_data_dir(out / f"{s}_{lang}") for s in ("train", "dev", "test")}
        variants = {s: {u.speaker.split("-")[1] for u in utts} for s, utts in sets.items()}
        texts = {s: {u.text for u in utts} for s, utts in sets.items()}
        assert variants["train"] <= set(VARIANTS["train"])
        for held_out in ("dev", "test"):
            assert not variants[held_out] & variants["train"]  # unseen voices
            assert not texts[held_out] & texts["train"]  # unseen sentences
        assert not texts["dev"] & texts["test"]


def test_rerun_is_deterministic_and_skips_existing_audio(corpus, sentences_dir, tmp_path):
    out, written = corpus
    wavs = [u.wav for u in written["train_all"]]
    before = {w: os.stat(w).st_mtime_ns for w in wavs}
    texts = (out / "train_all" / "text").read_text()
    with open(wavs[0], "wb") as f:  # a damaged file must be made again, not reused
        f.write(b"junk")
    prepare_tts_corpus(out, langs=list(SENTENCES), sentences_dir=sentences_dir, utts_per_split=UTTS, nj=1)
    assert (out / "train_all" / "text").read_text() == texts
    after = {w: os.stat(w).st_mtime_ns for w in wavs}
    assert [w for w in wavs if after[w] != before[w]] == [wavs[0]]
    other = tmp_path / "other"
    prepare_tts_corpus(other, langs=["te"], sentences_dir=sentences_dir, utts_per_split=UTTS, nj=1)
    assert (other / "test_te" / "text").read_text() == (out / "test_te" / "text").read_text()
    first = read_data_dir(other / "test_te")[0]
    assert open(first.wav, "rb").read() == open(next(u.wav for u in written["test_te"]
                                                     if u.utt_id == first.utt_id), "rb").read()


def test_pairs_are_distinct_and_balanced():
    voices = voices_for("it", "dev")
    sentences = [(i, f"s{i}") for i in range(5)]
    pairs = pair_up(sentences, voices, 12, "it dev")
    assert len({(v, n) for v, n, _ in pairs}) == 12
    counts = [sum(n == i for _, n, _ in pairs) for i in range(5)]
    assert max(counts) - min(counts) <= 1
    with pytest.raises(ValueError, match="lower --utts_per_split"):
        pair_up(sentences, voices, len(sentences) * len(voices) + 1, "it dev")


@pytest.mark.parametrize("lines, message", [
    (None, r"it\.txt: sentence list for 'it' not found"),
    (["ciao a tutti", "नमस्ते दुनिया"], r"it\.txt:2: only 0% of the letters are Latin"),
    (["uno", "", "due"], "too few for three disjoint splits"),
])
def test_bad_sentence_lists_stop_before_writing(tmp_path, sentences_dir, lines, message):
    path = sentences_dir / "it.txt"
    path.unlink()
    if lines is not None:
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataDirError, match=message):
        prepare_tts_corpus(tmp_path / "data", langs=["hi", "it"], sentences_dir=sentences_dir, utts_per_split=2)
    assert not (tmp_path / "data").exists()


def test_unknown_language_is_refused(tmp_path, sentences_dir):
    with pytest.raises(ValueError, match="unknown language code 'xx'"):
        prepare_tts_corpus(tmp_path / "data", langs=["xx"], sentences_dir=sentences_dir)
    assert not (tmp_path / "data").exists()


def test_more_training_utterances_extend_train_and_leave_dev_test_alone(corpus, sentences_dir, tmp_path):
    out, written = corpus
    bigger = tmp_path / "bigger"
    prepare_tts_corpus(bigger, langs=["hi"], sentences_dir=sentences_dir, utts_per_split=UTTS, nj=1,
                       train_utts=TRAIN_UTTS_FACTOR * UTTS + 3)
    train = read_data_dir(bigger / "train_hi")
    assert len(train) == TRAIN_UTTS_FACTOR * UTTS + 3
    assert {u.utt_id for u in written["train_hi"]} < {u.utt_id for u in train}
    for split in ("dev", "test"):
        assert (bigger / f"{split}_hi" / "text").read_text() == (out / f"{split}_hi" / "text").read_text()
