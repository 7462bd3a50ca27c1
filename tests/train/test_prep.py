"""Targets (the decoding prompt inside every target) and the ESPnet data files made from a Kaldi dir."""
import numpy as np
import pytest
import soundfile as sf

from espnet_ext.data.kaldi import Segment, Utterance, read_entries, write_data_dir
from espnet_ext.models.registry import load_model
from espnet_ext.train import targets as training_targets
from espnet_ext.train.prep import prepare_set

from train_helpers import chirp, make_corpus

LANGS = ["hi", "pa", "te", "it"]


@pytest.fixture(scope="module")
def whisper():
    return load_model("whisper_tiny_random")


def read_map(path):
    return {e.key: e.value for e in read_entries(path)}


def test_whisper_target_is_the_decoding_prompt_then_the_spaced_transcript(whisper):
    tok = whisper.tokenizer
    ids = training_targets.for_model(whisper).encode("पानी दो", "hi")["text"]
    assert ids[:3] == [tok.encode("<|hi|>", allowed_special="all")[0], tok.transcribe, tok.no_timestamps]
    assert tok.decode(ids[3:]) == " पानी दो"
    # ESPnetASRModel adds sos/eos itself: they must be <|startoftranscript|> and <|endoftext|>.
    assert (whisper.asr_model.sos, whisper.asr_model.eos) == (tok.sot, tok.eot)


def test_owsm_targets_prompt_previous_text_and_ctc():
    owsm = load_model("owsm_tiny_random")
    tok = owsm.tokenizer
    ids = training_targets.for_model(owsm).encode("ciao amico", "it")
    assert ids["text"][:3] == [tok.token_id("<ita>"), tok.asr, tok.notimestamps]
    assert ids["text"][3:] == ids["text_ctc"] == tok.encode("ciao amico")
    assert ids["text_prev"] == [tok.na]


def test_prepare_set_writes_aligned_espnet_files(whisper, tmp_path):
    data_dir = make_corpus(tmp_path)
    prepared = prepare_set(data_dir, tmp_path / "out", training_targets.for_model(whisper), LANGS)
    wav, lang, text = (read_map(tmp_path / "out" / n) for n in ("wav.scp", "lang", "text"))
    speech_shape, text_shape = (read_map(tmp_path / "out" / n) for n in ("speech_shape", "text_shape"))
    assert set(wav) == set(lang) == set(text) == set(speech_shape) == set(text_shape) and len(wav) == 8
    assert lang["te-s1-00"] == "2" and lang["it-s1-01"] == "3"
    assert int(speech_shape["hi-s1-01"]) == sf.info(wav["hi-s1-01"]).frames
    assert int(text_shape["pa-s1-00"]) == len(text["pa-s1-00"].split())
    assert prepared.per_language == {"hi": 2, "it": 2, "pa": 2, "te": 2}
    args = prepared.espnet_args("train")
    assert f"{tmp_path / 'out' / 'lang'},lang,text_int" in args and args.count("--train_shape_file") == 2


def one_utterance_dir(tmp_path, wave, rate=16000, lang="it", segment=None):
    wav = tmp_path / "a.wav"
    sf.write(str(wav), wave, rate)
    utt = Utterance("it-s-1", "it-s", "ciao", lang, str(wav), len(wave) / rate, segment)
    write_data_dir(tmp_path / "data", [utt])
    return tmp_path / "data"


def test_wrong_sample_rate_is_refused_naming_the_file(whisper, tmp_path):
    data_dir = one_utterance_dir(tmp_path, chirp(0.5, 0), rate=8000)
    with pytest.raises(ValueError, match=r"a\.wav \(utterance it-s-1\) is 8000 Hz.*sox"):
        prepare_set(data_dir, tmp_path / "out", training_targets.for_model(whisper), LANGS)


def test_language_without_adapter_is_refused(whisper, tmp_path):
    data_dir = one_utterance_dir(tmp_path, chirp(0.5, 0))
    with pytest.raises(ValueError, match=r"utt2lang: languages \['it'\].*lora_conf.languages"):
        prepare_set(data_dir, tmp_path / "out", training_targets.for_model(whisper), ["hi"])


def test_audio_longer_than_the_window_is_dropped_and_listed(whisper, tmp_path):
    long_wave = np.zeros(31 * 16000, dtype=np.float32)
    data_dir = one_utterance_dir(tmp_path, long_wave)
    with pytest.raises(ValueError, match="every utterance was too long"):
        prepare_set(data_dir, tmp_path / "out", training_targets.for_model(whisper), LANGS)
    assert "31.0 s > 30 s" in read_map(tmp_path / "out" / "dropped")["it-s-1"]


def test_segments_are_cut_into_files_of_their_own(whisper, tmp_path):
    wave = chirp(2.0, 3)
    data_dir = one_utterance_dir(tmp_path, wave, segment=Segment("rec", 0.5, 1.25))
    prepare_set(data_dir, tmp_path / "out", training_targets.for_model(whisper), LANGS)
    cut, rate = sf.read(read_map(tmp_path / "out" / "wav.scp")["it-s-1"], dtype="float32")
    np.testing.assert_allclose(cut, wave[8000:20000], atol=1e-4)
    assert read_map(tmp_path / "out" / "speech_shape")["it-s-1"] == "12000"
