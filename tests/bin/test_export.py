"""espnet_ext.bin.export: a bank's language served by faster-whisper (merged CTranslate2 model) and by transformers
(PEFT adapter) computes what our decoding with that language's adapters computes, and differs from the base."""
import copy
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from espnet_ext.bin import export as export_cli
from espnet_ext.lora.adapter_files import CONFIG_NAME, save_adapter
from espnet_ext.lora.inject import (SHARED, BankLayout, banks, inject, merge_adapter, one_hot_weights,
                                    set_routing_weights, unmerge_all)
from espnet_ext.models.family import WHISPER
from espnet_ext.models.registry import load_model
from espnet_ext.models.whisper_forward import log_mel

LANGS = ["hi", "te"]
MAX_TOKENS = 8


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """(adapters dir, the model holding that bank): whisper_tiny_random, layout shared_below (tap after block 1),
    random non-zero adapters on every linear."""
    root = tmp_path_factory.mktemp("exp") / "adapters"
    base = load_model("whisper_tiny_random")
    model = dataclasses.replace(base, asr_model=copy.deepcopy(base.asr_model).eval())
    lower = tuple(WHISPER.encoder_block_names(model.asr_model)[:1])
    inject(model.asr_model, ["whisper_all"], rank=4, alpha=8, languages=LANGS,
           layout=BankLayout("shared_below", 1, lower))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in banks(model.asr_model).values():
            layer.lora_A.copy_(torch.randn(layer.lora_A.shape, generator=gen) * 0.3)
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=gen) * 0.3)
    meta = {"base_model": base.name, "base_fingerprint": base.fingerprint, "pad_to_30s": True}
    for name in LANGS + [SHARED]:
        save_adapter(model.asr_model, name, root / name, meta)
    return root, model


@pytest.fixture(scope="module")
def window():
    """Two noise clips (1.5 s, 2.5 s) padded to the 30 s window: (speech, lengths)."""
    gen = torch.Generator().manual_seed(1)
    speech = torch.zeros(2, WHISPER.window_samples)
    for row, seconds in enumerate((1.5, 2.5)):
        speech[row, : int(16000 * seconds)] = torch.randn(int(16000 * seconds), generator=gen) * 0.1
    return speech, torch.full((2,), WHISPER.window_samples)


@torch.no_grad()
def ours_greedy(model, speech, lengths, lang):
    """(encoder output, tokens, backend) of our greedy decoding on the 30 s window, language forced, MAX_TOKENS
    tokens (no budget, no loop guard)."""
    from espnet_ext.decode.search import SearchConfig, beam_search
    from espnet_ext.decode.transcribe import make_backend

    backend = make_backend(model, pad_to_30s=True)
    config = SearchConfig(max_tokens=MAX_TOKENS, repeat_min_copies=10 ** 6)
    encoded = backend.encode(speech, lengths)
    prompts = [backend.prompt(lang)] * len(speech)
    tokens = beam_search(backend.state(encoded), prompts, backend.eot, backend.suppress, [MAX_TOKENS] * len(speech),
                         config)
    return encoded.features, tokens, backend


def test_ct2_export_decodes_like_our_merged_adapter(bank, window, tmp_path):
    import ctranslate2
    from faster_whisper import WhisperModel

    adapters, model = bank
    out = tmp_path / "te_ct2"
    export_cli.main(["--adapter_dir", str(adapters), "--lang", "te", "--format", "ct2", "--out_dir", str(out)])
    assert {"model.bin", "config.json", "tokenizer.json", "README.md"} <= {p.name for p in out.iterdir()}
    assert "30 s window" in (out / "README.md").read_text()
    config = json.loads((out / "config.json").read_text())
    assert len(config["lang_ids"]) == 99 and config["suppress_ids_begin"] == [220, 50257]

    speech, lengths = window
    _, base_tokens, backend = ours_greedy(model, speech, lengths, "te")
    merge_adapter(model.asr_model, "te")
    try:
        encoded, expected, _ = ours_greedy(model, speech, lengths, "te")
    finally:
        unmerge_all(model.asr_model)
    served = WhisperModel(str(out), device="cpu", compute_type="float32", cpu_threads=1)
    feats, _ = log_mel(model.asr_model.encoder, speech, lengths)
    feats = ctranslate2.StorageView.from_array(feats.numpy())
    assert torch.allclose(torch.as_tensor(np.asarray(served.model.encode(feats, to_cpu=True))), encoded, atol=1e-4)
    prompt = backend.prompt("te")
    suppress = backend.suppress.nonzero().flatten().tolist()  # ours (its EOT ban at the first step aside)
    # greedy: the first MAX_TOKENS tokens are the same whatever the limit (ctranslate2 4.8.5 stops at about
    # max_length / 2 new tokens here, not max_length - prompt as faster-whisper assumes)
    results = served.model.generate(feats, [prompt] * 2, beam_size=1, max_length=4 * (len(prompt) + MAX_TOKENS),
                                    suppress_blank=False, suppress_tokens=suppress)
    assert [r.sequences_ids[0][:MAX_TOKENS] for r in results] == expected
    assert expected != base_tokens
    segments, info = served.transcribe(speech[0, :24000].numpy(), language="te", without_timestamps=True,
                                       max_new_tokens=4, temperature=0.0)
    assert info.language == "te" and isinstance(" ".join(s.text for s in segments), str)


@torch.no_grad()
def test_peft_export_gives_our_logits_per_sample(bank, window, tmp_path):
    from peft import PeftModel

    from espnet_ext.models.hf_whisper import build_hf_whisper

    adapters, model = bank
    out = tmp_path / "peft"
    export_cli.main(["--adapter_dir", str(adapters), "--lang", "all", "--format", "peft", "--out_dir", str(out)])
    assert {p.name for p in (out / "te").iterdir()} == {"adapter_config.json", "adapter_model.safetensors", "README.md"}

    speech, lengths = window
    tokens = torch.tensor([WHISPER.prompt(model.tokenizer, lang) + [440, 1012, 345] for lang in LANGS])
    asr = model.asr_model
    set_routing_weights(asr, one_hot_weights(asr, LANGS))
    try:
        encoded = WHISPER.encode(asr, speech, lengths, pad_to_30s=True)
        ours, _ = asr.decoder(encoded.features, encoded.lengths, tokens, torch.full((2,), tokens.size(1)))
    finally:
        set_routing_weights(asr, None)

    hf = build_hf_whisper(torch.load(model.checkpoint_path, weights_only=True)).eval()
    served = PeftModel.from_pretrained(hf, str(out / "hi"), adapter_name="hi")
    served.load_adapter(str(out / "te"), adapter_name="te")
    feats, _ = log_mel(asr.encoder, speech, lengths)
    theirs = served(input_features=feats, decoder_input_ids=tokens, adapter_names=LANGS).logits
    base = served(input_features=feats, decoder_input_ids=tokens, adapter_names=["__base__"] * 2).logits
    assert torch.allclose(theirs, ours, atol=1e-4)
    assert (base - ours).abs().max() > 1e-2


def test_owsm_adapter_is_refused_in_one_line(bank, tmp_path, capsys):
    adapters, _ = bank
    owsm = tmp_path / "adapters"
    shutil.copytree(adapters / "te", owsm / "te")
    config = json.loads((owsm / "te" / CONFIG_NAME).read_text())
    (owsm / "te" / CONFIG_NAME).write_text(json.dumps({**config, "base_model": "owsm_tiny_random"}))
    with pytest.raises(SystemExit) as err:
        export_cli.main(["--adapter_dir", str(owsm), "--lang", "te", "--format", "ct2",
                         "--out_dir", str(tmp_path / "o")])
    message = str(err.value)
    assert message.startswith("export.py: ") and "\n" not in message and "owsm_tiny_random" in message
    assert "only Whisper adapters export" in message and not (tmp_path / "o").exists()


@pytest.mark.parametrize("adapter_dir, lang, expected", [
    ("missing", "te", "does not exist"),
    ("bank", "xx", "holds no adapter 'xx'; its languages are hi, te"),
])
def test_a_missing_adapter_is_one_line_naming_the_dir(bank, tmp_path, adapter_dir, lang, expected):
    root = bank[0] if adapter_dir == "bank" else tmp_path / "missing"
    with pytest.raises(SystemExit) as err:
        export_cli.main(["--adapter_dir", str(root), "--lang", lang, "--format", "peft",
                         "--out_dir", str(tmp_path / "o")])
    assert str(err.value).startswith("export.py: ") and str(root) in str(err.value) and expected in str(err.value)


def test_an_adapter_trained_on_the_real_length_warns(bank, caplog):
    from espnet_ext.lora.adapter_files import read_adapter_config
    from espnet_ext.lora.serving_export import check_exportable

    config = {**read_adapter_config(bank[0] / "te"), "pad_to_30s": False}
    check_exportable(config, bank[0] / "te")
    assert "trained on the real length" in caplog.text and "30 s window only" in caplog.text
