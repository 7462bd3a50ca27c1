"""Code-switched sets: boundaries exact to the sample, the three kinds as specified, determinism."""
import numpy as np
import pytest
import soundfile as sf
from make_codeswitch import (
    GAP_SECONDS, KINDS, RAPID_MAX_SECONDS, build_utterance, language_pairs, make_codeswitch, read_split_sentences,
)
from prepare_tts_corpus import Voice, prepare_tts_corpus, speak

from espnet_ext.data.kaldi import read_data_dir, read_segments_lang
from espnet_ext.languages import LID_LANGUAGES

SENTENCES = {
    "hi": ["आज बहुत तेज़ बारिश हो रही है", "मेरी माँ खाना बना रही हैं", "क्या तुम कल बाज़ार चलोगे", "यह किताब बहुत अच्छी है"],
    "pa": ["ਅੱਜ ਬਹੁਤ ਮੀਂਹ ਪੈ ਰਿਹਾ ਹੈ", "ਮੇਰੀ ਮਾਂ ਰੋਟੀ ਬਣਾ ਰਹੀ ਹੈ", "ਕੀ ਤੁਸੀਂ ਕੱਲ੍ਹ ਆਓਗੇ", "ਇਹ ਕਿਤਾਬ ਬਹੁਤ ਚੰਗੀ ਹੈ"],
    "te": ["ఈ రోజు చాలా వర్షం పడుతోంది", "మా అమ్మ వంట చేస్తోంది", "నువ్వు రేపు వస్తావా", "ఈ పుస్తకం చాలా బాగుంది"],
    "it": ["oggi piove molto forte", "mia madre prepara la cena", "vieni domani al mercato", "questo libro è molto bello"],
    "en": ["it is raining very hard today", "my mother is cooking dinner", "will you come to the market",
           "this book is very good"],
}
PER_KIND = 4


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cs")
    folder = root / "sentences"
    folder.mkdir()
    for lang, lines in SENTENCES.items():
        (folder / f"{lang}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    prepare_tts_corpus(root / "data", langs=list(SENTENCES), sentences_dir=folder, utts_per_split=1, nj=1)
    make_codeswitch(root / "data", "test", per_kind=PER_KIND)
    return root / "data"


def test_pairs_cover_every_adapter_language_with_every_other_class():
    pairs = language_pairs()
    assert ("hi", "en") in pairs and ("te", "en") in pairs and ("hi", "pa") in pairs
    assert all(a != b and a != "en" for a, b in pairs) and len(pairs) == 4 * 4


def test_segments_tile_the_audio_and_each_holds_its_piece_to_the_sample(data):
    for kind in KINDS:
        segments = read_segments_lang(data / f"test_cs_{kind}")
        sentences = read_split_sentences(data, "test", LID_LANGUAGES)
        for utt in read_data_dir(data / f"test_cs_{kind}"):
            index = int(utt.utt_id.split("-")[4][len(kind):])  # <speaker>-<kind><index>-<a>-<b>
            audio, rate = sf.read(utt.wav, dtype="float32")
            parts = segments[utt.utt_id]
            samples = [(round(s.start * rate), round(s.end * rate)) for s in parts]
            assert all(abs(s.start * rate - a) < 1e-3 and abs(s.end * rate - b) < 1e-3  # written exactly
                       for s, (a, b) in zip(parts, samples))
            assert samples[0][0] == 0 and samples[-1][1] == len(audio)
            assert all(prev[1] == nxt[0] for prev, nxt in zip(samples, samples[1:]))  # tiled, no overlap
            assert all(x.lang != y.lang for x, y in zip(parts, parts[1:])) and len(parts) >= 2
            built = build_utterance(kind, index, "test", sentences, 0)  # as written: same id, same pieces
            assert built.utt_id == utt.utt_id and " ".join(t for _, t in built.pieces) == utt.text
            variant, speed, pitch = utt.speaker.split("-")[1], int(utt.speaker.split("-")[2][1:]), int(utt.speaker.split("-")[3][1:])
            for (start, end), (lang, text) in zip(samples, built.pieces):
                piece = speak(Voice(lang, variant, speed, pitch), text, utt.utt_id)
                np.testing.assert_allclose(audio[start:start + len(piece)], np.clip(piece, -1, 1), atol=1.5 / 32768)
                gap = (end - start - len(piece)) / rate  # the pause after the piece is silence
                assert np.all(audio[start + len(piece):end] == 0)
                assert gap == 0 or GAP_SECONDS[0] - 1e-3 <= gap <= GAP_SECONDS[1]
                if kind == "rapid":
                    assert len(piece) < RAPID_MAX_SECONDS * rate or " " not in text


def test_kinds_switch_as_specified_and_utt2lang_is_the_longest_language(data):
    for kind, counts in (("inter", {2, 3}), ("intra", {3}), ("rapid", {4, 6})):
        segments = read_segments_lang(data / f"test_cs_{kind}")
        assert {len(s) for s in segments.values()} <= counts
        for utt in read_data_dir(data / f"test_cs_{kind}"):
            spoken = {}
            for s in segments[utt.utt_id]:
                spoken[s.lang] = spoken.get(s.lang, 0) + s.end - s.start
            assert utt.lang == max(spoken, key=spoken.get) and len(spoken) == 2


def test_rebuild_is_identical(data, tmp_path):
    before = {k: (data / f"test_cs_{k}" / "segments_lang").read_text() for k in KINDS}
    make_codeswitch(data, "test", per_kind=PER_KIND)
    assert {k: (data / f"test_cs_{k}" / "segments_lang").read_text() for k in KINDS} == before


def test_missing_split_names_the_dir(tmp_path):
    with pytest.raises(Exception, match="test_hi.*not found.*stop_stage 1"):
        make_codeswitch(tmp_path, "test", per_kind=1)


def test_a_language_dir_holding_another_language_is_refused(data, tmp_path):
    """The pieces' languages come from the dirs' names: a dir with another language inside would label
    Italian speech as Hindi, silently."""
    import shutil

    for lang in SENTENCES:
        shutil.copytree(data / f"test_{lang}", tmp_path / f"test_{lang}")
    italian = (tmp_path / "test_it" / "utt2lang").read_text(encoding="utf-8")
    (tmp_path / "test_it" / "utt2lang").write_text(italian.replace(" it\n", " hi\n", 1), encoding="utf-8")
    with pytest.raises(Exception, match=r"test_it/utt2lang: utterance .* is in 'hi', not 'it'"):
        read_split_sentences(tmp_path, "test", list(SENTENCES))
