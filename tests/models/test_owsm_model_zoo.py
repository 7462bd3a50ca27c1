"""OWSM v4 as espnet_model_zoo caches it: a tiny random OWSM packed as espnet/owsm_v4_small_370M loads
through ESPnet's own `Speech2Text.from_pretrained` (offline, from the zoo's cache) and through the registry
to the same logits; the registry's copy LoRA-trains and decodes with its language token forced.

The zoo's ModelDownloader keeps snapshots in its own cache (its package directory, or
~/.cache/espnet_model_zoo where that is read-only), not in HF_HUB_CACHE, and takes no option for it from
`from_pretrained`: the tests point HOME at a temporary directory and the downloader at HOME's cache, the
place a user without write access to site-packages has it.
"""
import functools
import shutil

import pytest
import torch
import yaml

from espnet_ext.bin import train_lora
from espnet_ext.decode.search import SearchConfig
from espnet_ext.decode.transcribe import make_backend, transcribe_batch
from espnet_ext.lora.adapter_files import load_adapter_bank
from espnet_ext.lora.inject import banks
from espnet_ext.models.espnet_import import import_espnet_module
from espnet_ext.models.registry import ModelNotAvailable, load_model

from model_helpers import OWSM_V4_FILES, OWSM_V4_SMALL, write_owsm_v4_snapshot
from train_helpers import SENTENCES, chirp, make_corpus, owsm_train_config, train_command

LANGS = list(SENTENCES)


def _offline_caches(patch, home):
    """HOME (and so the zoo's fallback cache) at `home`, an empty Hugging Face cache, no network."""
    import huggingface_hub.constants

    patch.setenv("HOME", str(home))
    patch.setenv("HF_HUB_CACHE", str(home / "hf_empty"))
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once, when imported


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """The tiny OWSM's snapshot in the zoo's cache ~/.cache/espnet_model_zoo, the zoo's downloader on it."""
    from espnet_model_zoo import downloader

    home = tmp_path_factory.mktemp("home")
    cache = home / ".cache" / "espnet_model_zoo"
    snapshot = write_owsm_v4_snapshot(cache, [text for texts in SENTENCES.values() for text in texts])
    with pytest.MonkeyPatch.context() as patch:
        _offline_caches(patch, home)
        patch.setattr(downloader, "ModelDownloader", functools.partial(downloader.ModelDownloader, cache))
        yield snapshot


def decoder_logits(model, tokenizer, speech):
    """Decoder logits of `model` on `speech` after OWSM's Italian ASR prompt and a short text."""
    prompt = [model.sos, tokenizer.token_id("<ita>"), tokenizer.asr, tokenizer.notimestamps]
    prefix = torch.tensor([prompt + tokenizer.encode("ciao amico")])
    with torch.no_grad():
        encoded, lengths = model.eval().encode(speech, torch.tensor([speech.size(1)]))
        return model.decoder(encoded, lengths, prefix, torch.tensor([prefix.size(1)]))[0]


def test_speech2text_from_pretrained_and_the_registry_give_equal_logits(zoo):
    published = load_model("owsm_v4_small")  # the snapshot as downloaded: paths relative to it
    s2t_inference = import_espnet_module("espnet2.bin.s2t_inference")
    speech2text = s2t_inference.Speech2Text.from_pretrained(OWSM_V4_SMALL)
    config = yaml.safe_load((zoo / OWSM_V4_FILES["config"]).read_text())
    assert config["bpemodel"] == str(zoo / OWSM_V4_FILES["bpemodel"])  # the zoo rewrote it, in place
    rewritten = load_model("owsm_v4_small")
    assert published.checkpoint_path == rewritten.checkpoint_path == zoo / OWSM_V4_FILES["model"]
    assert published.fingerprint == rewritten.fingerprint
    assert "batch_bins" not in published.config  # OWSM's own training run is not a LoRA run's config

    speech = torch.from_numpy(chirp(1.0, seed=3)).unsqueeze(0)
    reference = decoder_logits(speech2text.s2t_model, published.tokenizer, speech)
    for loaded in (published, rewritten):
        assert torch.allclose(decoder_logits(loaded.asr_model, loaded.tokenizer, speech), reference, atol=1e-5)
    text = "ciao amico"
    tokens = speech2text.converter.tokens2ids(speech2text.tokenizer.text2tokens(text))
    assert published.tokenizer.encode(text) == tokens and published.tokenizer.decode(tokens) == text


def test_a_zoo_cache_moved_elsewhere_still_loads(zoo, tmp_path, monkeypatch):
    """The zoo's unpacking (from_pretrained's first step) leaves absolute paths into the cache in the
    config; a cache moved or copied to another machine keeps them, and they are re-anchored."""
    from espnet_model_zoo.downloader import ModelDownloader

    ModelDownloader().download_and_unpack(OWSM_V4_SMALL)
    original = load_model("owsm_v4_small")
    tokens = original.tokenizer.encode("dammi acqua")  # now: its BPE model is read on first use
    cache, moved = zoo.parents[2], tmp_path / ".cache" / "espnet_model_zoo"
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.move(cache, moved)
    try:
        relocated = load_model("owsm_v4_small")
        assert relocated.checkpoint_path == moved / zoo.relative_to(cache) / OWSM_V4_FILES["model"]
        assert relocated.fingerprint == original.fingerprint
        assert relocated.tokenizer.encode("dammi acqua") == tokens
    finally:
        shutil.move(moved, cache)


def test_missing_files_name_the_path_and_how_to_get_them(zoo, tmp_path, monkeypatch):
    _offline_caches(monkeypatch, tmp_path)
    with pytest.raises(ModelNotAvailable) as no_snapshot:
        load_model("owsm_v4_small")
    expected = tmp_path / ".cache" / "espnet_model_zoo" / "models--espnet--owsm_v4_small_370M" / "snapshots"
    assert f"{expected}/<commit>/meta.yaml" in str(no_snapshot.value)
    hub_copy = tmp_path / "hf_empty" / zoo.relative_to(zoo.parents[2])
    shutil.copytree(zoo, hub_copy)  # as `hf download` leaves it, in the Hugging Face cache
    (hub_copy / OWSM_V4_FILES["model"]).unlink()
    with pytest.raises(ModelNotAvailable) as no_weights:
        load_model("owsm_v4_small")
    message = str(no_weights.value)
    assert f"{hub_copy / OWSM_V4_FILES['model']} is missing" in message and "\n" not in message
    assert f"`espnet_model_zoo_download {OWSM_V4_SMALL}`" in message and f"`hf download {OWSM_V4_SMALL}`" in message


def test_the_registry_copy_lora_trains_and_decodes_with_the_language_forced(zoo, tmp_path):
    exp = tmp_path / "exp"
    command = train_command(make_corpus(tmp_path), exp)
    command[1], command[command.index("--config") + 1] = "owsm_v4_small", str(owsm_train_config(tmp_path))
    train_lora.main(command)

    base = load_model("owsm_v4_small")
    configs = load_adapter_bank(base.asr_model, exp / "adapters", LANGS, base.name, base.fingerprint)
    assert configs["it"]["base_model"] == "owsm_v4_small"
    assert all(bank.lora_B.abs().sum() > 0 for bank in banks(base.asr_model).values())  # B starts at zero

    base.asr_model.eval()
    backend = make_backend(base, pad_to_30s=True)
    states, make_state = [], backend.state
    backend.state = lambda encoded: states.append(make_state(encoded)) or states[-1]
    (hypothesis,) = transcribe_batch(backend, [chirp(1.0, seed=7)], ["it"], SearchConfig(max_tokens=5))
    assert hypothesis.lang == "it"
    prompt = states[-1].prefix[0, :2].tolist()  # the search's decoder prefix starts with the forced prompt
    assert prompt == [base.asr_model.sos, base.tokenizer.token_id("<ita>")]
