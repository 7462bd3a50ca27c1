"""Whisper from a transformers directory: the name mapping, the conversion against transformers' own
forward, the registry's model_path route, its errors, and the refusal of large-v3 on every route."""
import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

from espnet_ext.errors import UserError
from espnet_ext.models import hf_whisper, registry
from espnet_ext.models import whisper as whisper_models
from espnet_ext.models.family import WINDOW_SAMPLES
from model_helpers import write_ct2_whisper

BENCH = Path(__file__).resolve().parents[2] / "bench" / "train_throughput.py"
TOKENS = torch.tensor([[50258, 50259, 50359, 50363, 1012, 345, 6789]])  # sot, en, transcribe, notimestamps, text


def save_tiny_hf(out: Path, seed: int = 0, **config) -> torch.nn.Module:
    """A seeded random 2-layer, 64-wide WhisperForConditionalGeneration written with save_pretrained."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    dims = dict(vocab_size=51865, num_mel_bins=80, d_model=64, encoder_layers=2, encoder_attention_heads=4,
                decoder_layers=2, decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=256)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WhisperForConditionalGeneration(WhisperConfig(**{**dims, **config}))
    model.save_pretrained(out)
    return model.eval()


@pytest.fixture(scope="module")
def hf_tiny(tmp_path_factory):
    """(directory, model) of the tiny transformers Whisper."""
    root = tmp_path_factory.mktemp("hf_tiny")
    return root, save_tiny_hf(root)


def test_names_round_trip_and_cover_transformers(tiny_whisper_checkpoint, hf_tiny):
    openai_names = list(tiny_whisper_checkpoint[1]["model_state_dict"])
    assert [hf_whisper.openai_name(hf_whisper.hf_name(n)) for n in openai_names] == openai_names
    _, model = hf_tiny
    assert {hf_whisper.hf_name(n) for n in openai_names} | {hf_whisper.HEAD} == set(model.state_dict())
    assert hf_whisper.openai_name("encoder.layers.0.self_attn.k_proj.weight") == "encoder.blocks.0.attn.key.weight"


@torch.no_grad()
def test_converted_weights_give_transformers_logits(hf_tiny):
    """(a) openai-whisper's own model on the converted weights computes what transformers computes."""
    from whisper.model import ModelDimensions, Whisper

    root, model = hf_tiny
    checkpoint = hf_whisper.read_checkpoint(root)
    openai = Whisper(ModelDimensions(**checkpoint["dims"])).eval()
    openai.load_state_dict(checkpoint["model_state_dict"])
    mel = torch.randn(1, 80, 3000)
    expected = model(input_features=mel, decoder_input_ids=TOKENS).logits
    assert torch.allclose(openai(mel, TOKENS), expected, atol=1e-5)
    rebuilt = hf_whisper.build_hf_whisper(checkpoint)  # and back: the weights transformers started from
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in model.state_dict().items())


@torch.no_grad()
def test_model_path_route_gives_transformers_outputs(hf_tiny):
    """(b) the registry's model_path route (conversion into the cache, ESPnet model) matches transformers.

    The width check is skipped: no real name is 64 wide. The rest is what load_model does."""
    root, model = hf_tiny
    checkpoint = registry._from_model_path(root)
    assert checkpoint.parent.parent == registry.cache_dir() / "converted"
    stamp = checkpoint.stat().st_mtime_ns
    assert registry._from_model_path(root).stat().st_mtime_ns == stamp  # converted once
    asr = whisper_models.build_whisper_asr_model(checkpoint).eval()
    speech = torch.randn(1, WINDOW_SAMPLES) * 0.1
    encoded, lengths = asr.encode(speech, torch.tensor([WINDOW_SAMPLES]))
    mel = asr.encoder.log_mel_spectrogram(speech)[0][..., :3000]
    assert torch.allclose(encoded, model.model.encoder(mel).last_hidden_state, atol=1e-5)
    logits, _ = asr.decoder(encoded, lengths, TOKENS, torch.tensor([TOKENS.size(1)]))
    expected = model(input_features=mel, decoder_input_ids=TOKENS).logits
    assert torch.allclose(logits, expected, atol=1e-5)


def test_shards_pytorch_bin_and_a_stored_head(tmp_path, hf_tiny):
    root, model = hf_tiny
    reference = hf_whisper.read_checkpoint(root)["model_state_dict"]
    model.save_pretrained(tmp_path / "sharded", max_shard_size="300KB")
    assert len(hf_whisper.weight_files(tmp_path / "sharded")) > 1
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    shutil.copy(root / "config.json", legacy)
    state = model.state_dict()  # with proj_out.weight, as older files store it
    torch.save(state, legacy / "pytorch_model.bin")
    for directory in (tmp_path / "sharded", legacy):
        converted = hf_whisper.read_checkpoint(directory)["model_state_dict"]
        assert converted.keys() == reference.keys()
        assert all(torch.equal(converted[k], reference[k]) for k in reference)
    torch.save({**state, "proj_out.weight": state["proj_out.weight"] + 1}, legacy / "pytorch_model.bin")
    with pytest.raises(hf_whisper.HfFormatError, match="proj_out.weight differs from the token embeddings"):
        hf_whisper.read_checkpoint(legacy)


def test_missing_weights_name_the_file_and_how_to_get_it(tmp_path, hf_tiny):
    root, _ = hf_tiny
    shutil.copy(root / "config.json", tmp_path)
    with pytest.raises(hf_whisper.HfFileMissing) as error:
        registry.load_model("whisper_small", model_path=str(tmp_path))
    message = str(error.value)
    assert isinstance(error.value, UserError) and "\n" not in message
    assert message.startswith(f"{tmp_path / 'model.safetensors'} does not exist")
    assert "huggingface-cli download openai/whisper-small --local-dir DIR" in message and "save_pretrained" in message


def test_large_v3_is_refused_on_every_route(tmp_path):
    """A 128-bin, 51866-token Whisper as a transformers dir, an openai .pt and a CTranslate2 dir."""
    hf_dir = tmp_path / "hf_v3"
    save_tiny_hf(hf_dir, num_mel_bins=128, vocab_size=51866)
    checkpoint = hf_whisper.read_checkpoint(hf_dir)  # the converter itself is neutral
    torch.save(checkpoint, tmp_path / "v3.pt")
    ct2_dir = write_ct2_whisper(checkpoint, tmp_path / "ct2_v3", [[0, 0]])
    converted = registry.cache_dir() / "converted"
    before = set(converted.glob("*")) if converted.is_dir() else set()
    for model_path, named in ((hf_dir, hf_dir / "config.json"), (tmp_path / "v3.pt", None), (ct2_dir, None)):
        with pytest.raises(whisper_models.UnsupportedWhisper) as error:
            registry.load_model("whisper_large", model_path=str(model_path))
        message = str(error.value)
        assert message.startswith(f"{named or model_path}: a Whisper with 128 mel bins and 51866 tokens")
        assert "large-v2 instead" in message and "\n" not in message
    after = set(converted.glob("*"))
    assert len(after - before) == 1  # the CTranslate2 one; the transformers dir was refused before converting


def test_bench_builds_hf_whisper_through_the_shared_mapping(hf_tiny, tmp_path):
    spec = importlib.util.spec_from_file_location("train_throughput", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    root, model = hf_tiny
    path = hf_whisper.convert_dir(root, tmp_path / "tiny.pt")
    rebuilt = bench.build_hf_whisper(path, sos=50258, eos=50257)
    assert (rebuilt.config.decoder_start_token_id, rebuilt.config.pad_token_id) == (50258, 50257)
    assert torch.equal(rebuilt.proj_out.weight, model.model.decoder.embed_tokens.weight)
    assert not hasattr(bench, "_OPENAI_TO_HF")
