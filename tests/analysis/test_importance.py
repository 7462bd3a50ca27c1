"""Layer importance (espnet_ext.analysis.importance) on the tiny random models, with known answers."""
import copy
import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from espnet_ext.analysis import gather, importance
from espnet_ext.data.audio import pad_batch, utterance_audio
from espnet_ext.data.kaldi import read_data_dir
from espnet_ext.decode.search import SearchConfig
from espnet_ext.decode.transcribe import make_backend, transcribe_batch
from espnet_ext.lora.inject import BankLayout, banks, language_banks
from espnet_ext.models.registry import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "decode"))
from analysis_helpers import LANGS, random_bank  # noqa: E402
from decode_helpers import noise_data_dir  # noqa: E402
from train_helpers import make_corpus  # noqa: E402
BLOCKS = ["enc 1", "enc 2", "dec 1", "dec 2"]  # whisper_tiny_random: 2 + 2 blocks
SEARCH = SearchConfig(max_tokens=12)  # the random model writes until its budget: keep the searches short


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    """Two utterances per language, real transcripts of different lengths."""
    return make_corpus(tmp_path_factory.mktemp("probe"), "probe")


@pytest.fixture(scope="module")
def base():
    return load_model("whisper_tiny_random")


def banked(base, targets=("whisper_all",), scale=0.1, layout=BankLayout(), dropout=0.0):
    """analysis_helpers.random_bank on `base`, layout per_language unless given."""
    return random_bank(LANGS, targets, layout, scale, dropout=dropout, base=base)


def unit_modules(model, name):
    return next(u.modules for u in importance.importance_units(model.asr_model) if u.name == name)


@torch.no_grad()
def stepwise(loaded, utt):
    """(summed nll, errors, tokens) of `utt` on the bare base through the decoding API, one token at a time:
    the prompt fed, then each reference token after scoring it; the end token scored last."""
    backend = loaded.family.backend(loaded, pad_to_30s=False)
    speech, lengths = pad_batch([utterance_audio(utt)])
    prompt = backend.prompt(utt.lang)
    target = loaded.family.training_targets(loaded.tokenizer, utt.text, utt.lang)["text"]
    assert target[: len(prompt) - 1] == prompt[1:]
    nll, errors, expected = 0.0, 0, target[len(prompt) - 1 :] + [backend.eot]
    with backend.state(backend.encode(speech, lengths)) as state:
        logp = state.step(torch.tensor([prompt]))[0]
        for token in expected:
            nll -= float(logp[token])
            errors += int(int(logp.argmax()) != token)
            logp = state.step(torch.tensor([[token]]))[0]
    return nll / len(expected), errors, len(expected)


def test_units_in_network_order_partition_the_bank(base):
    """Blocks above the tap only (shared_below keeps language banks off block 1), and the blocks, like
    attention + MLP, partition the language banks."""
    lower = ("encoder.encoders.blocks.0",)
    model = banked(base, layout=BankLayout("shared_below", 1, lower))
    units = importance.importance_units(model.asr_model)
    assert [u.name for u in units] == ["enc 2", "dec 1", "dec 2", "encoder", "decoder", "attention", "mlp", "all"]
    by_name = {u.name: set(u.modules) for u in units}
    everything = set(language_banks(model.asr_model))
    assert by_name["all"] == everything
    assert set().union(*(by_name[b] for b in ["enc 2", "dec 1", "dec 2"])) == everything
    assert by_name["attention"] | by_name["mlp"] == everything and not by_name["attention"] & by_name["mlp"]
    assert all(m.rsplit(".", 2)[-2] == "mlp" for m in by_name["mlp"])


def test_zero_adapters_change_nothing_and_norms_are_exact(base, probe, tmp_path):
    """A unit whose adapters are all zero (B = 0, every language) changes the loss by exactly 0; the proxy
    is the sum of ||(alpha/r) B A||_F over the unit's modules."""
    model = banked(base)
    zeroed = ["enc 2", "dec 1"]
    with torch.no_grad():
        for name in zeroed:
            for m in unit_modules(model, name):
                model.asr_model.get_submodule(m).lora_B.zero_()
    result = importance.layer_importance(model, probe, batch_size=3, search=SEARCH)
    for lang in LANGS:
        for name in zeroed:
            assert result["loss_change"][lang][name] == 0.0
            assert result["token_error_change"][lang][name] == 0.0
            assert result["cer_change"][lang][name] == 0.0
            assert result["proxy"][lang][name] == 0.0
        assert abs(result["loss_change"][lang]["dec 2"]) > 1e-3  # the others do matter
    k = LANGS.index("te")
    expected = sum(float(torch.linalg.matrix_norm(bank.scaling * bank.lora_B[k].detach() @ bank.lora_A[k].detach()))
                   for bank in (model.asr_model.get_submodule(m) for m in unit_modules(model, "dec 2")))
    assert result["proxy"]["te"]["dec 2"] == pytest.approx(expected, rel=1e-5)
    # the report's section: the decoded side's figure beside the loss's, its numbers read from the result
    section = gather.importance_section(result, tmp_path, "importance.json")
    assert [f.png.name for f in section.figures] == ["layer_importance.png", "layer_importance_proxy.png",
                                                     "layer_importance_cer.png"]
    assert all(f.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in section.figures)
    decoded = next(p for p in section.paragraphs if p.startswith("Decoded (beam 1"))
    assert f"te {result['cer_baseline']['te']:.1f}%" in decoded
    assert f"decoder: hi {result['cer_change']['hi']['decoder']:+.1f}" in decoded
    hidden = dict(result, loss_change={**result["loss_change"], "it": {**result["loss_change"]["it"], "dec 2": -0.5}},
                  cer_change={**result["cer_change"], "it": {**result["cer_change"]["it"], "dec 2": 7.0}})
    said = gather.importance_section(hidden, tmp_path, "importance.json").paragraphs
    assert "it dec 2 (loss -0.50, CER +7.0)" in said[-1] and "(loss -0.50, CER +7.0)" not in " ".join(section.paragraphs)
    assert said[-1].startswith("Adapters the teacher-forced loss calls useless that decoding needs")


def test_all_adapters_off_is_the_bare_base(base, probe):
    """With every language adapter off (layout per_language: no shared adapter), the loss and token errors
    equal the bare base's, computed token by token through the decoding API."""
    model = banked(base)
    result = importance.layer_importance(model, probe, batch_size=8)
    bare = dataclasses.replace(base, asr_model=copy.deepcopy(base.asr_model).eval())
    utterances = read_data_dir(probe)
    assert result["utterances"] == {lang: 2 for lang in LANGS}
    for lang in LANGS:
        scores = [stepwise(bare, u) for u in utterances if u.lang == lang]
        loss = sum(s[0] for s in scores) / len(scores)
        assert result["baseline"][lang]["loss"] + result["loss_change"][lang]["all"] == pytest.approx(loss, abs=1e-4)
        assert result["baseline"][lang]["tokens"] == sum(s[2] for s in scores)
        errors = result["baseline"][lang]["token_error"] + result["token_error_change"][lang]["all"]
        assert errors * result["baseline"][lang]["tokens"] == pytest.approx(sum(s[1] for s in scores), abs=1e-6)
        assert abs(result["loss_change"][lang]["all"]) > 1e-2  # the adapters change the model


def test_decoding_with_every_adapter_off_is_the_bare_base_and_the_bank_is_restored(base, probe):
    """The searches with all language adapters off (layout per_language) write the bare base's transcripts,
    decoded one utterance at a time; with every adapter on, they differ; the bank is as it was after."""
    model = banked(base, scale=0.5)
    before = {m: b.lora_B.detach().clone() for m, b in language_banks(model.asr_model).items()}
    utterances = read_data_dir(probe)
    units = [u for u in importance.importance_units(model.asr_model) if u.name in ("dec 2", "all")]
    hyps = importance.decoded_hypotheses(model, utterances, units, SEARCH, batch_size=3)
    bare = make_backend(dataclasses.replace(base, asr_model=copy.deepcopy(base.asr_model).eval()), pad_to_30s=False)
    alone = {u.utt_id: transcribe_batch(bare, [utterance_audio(u)], [u.lang], SEARCH)[0].text for u in utterances}
    assert hyps["all"] == alone
    assert hyps[None] != alone and hyps["dec 2"] != hyps[None]
    assert all(torch.equal(b.lora_B, before[m]) for m, b in language_banks(model.asr_model).items())


def test_an_utterances_score_does_not_depend_on_its_batch(base, probe):
    """Alone (a single-adapter routing plan) vs in a mixed-language, mixed-length batch (per-row plan); the
    adapters' dropout is off while scoring."""
    model = banked(base, dropout=0.3)
    utterances = read_data_dir(probe)
    units = [u for u in importance.importance_units(model.asr_model) if u.name in ("enc 1", "dec 2", "all")]
    alone, _ = importance.teacher_forced_scores(model, utterances, units, batch_size=1)
    mixed, _ = importance.teacher_forced_scores(model, utterances, units, batch_size=len(utterances))
    for key in [None, "enc 1", "dec 2", "all"]:
        for utt in utterances:
            assert mixed[key][utt.utt_id].loss == pytest.approx(alone[key][utt.utt_id].loss, abs=1e-4)
            assert mixed[key][utt.utt_id].tokens == alone[key][utt.utt_id].tokens


@pytest.mark.parametrize("loud", ["enc 1", "dec 2"])
def test_large_adapter_is_the_most_important_block(base, probe, tmp_path, loud):
    """Small adapters everywhere, large random ones in one block: that block has the largest loss change
    (in size: switching a harmful adapter off lowers the loss) and the largest proxy, for every language."""
    model = banked(base, scale=0.05)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in unit_modules(model, loud):
            bank = model.asr_model.get_submodule(m)
            bank.lora_A.copy_(torch.randn(bank.lora_A.shape, generator=gen))
            bank.lora_B.copy_(torch.randn(bank.lora_B.shape, generator=gen))
    result = importance.layer_importance(model, probe, batch_size=4)
    assert result["units"][:4] == BLOCKS
    for lang in LANGS:
        assert max(BLOCKS, key=lambda b: abs(result["loss_change"][lang][b])) == loud
        assert max(BLOCKS, key=lambda b: result["proxy"][lang][b]) == loud
        assert result["spearman"][lang] is None or -1 <= result["spearman"][lang] <= 1
    for plot in (importance.plot_importance, importance.plot_proxy):
        paths = plot(result, tmp_path / plot.__name__)
        assert [p.suffix for p in paths] == [".png", ".pdf"]
        assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"


def test_owsm_all_adapters_off_is_the_bare_base(probe):
    """The family API makes OWSM free (its 30 s window, prompt and decoder): checked as for Whisper, on one
    language (the bare base's stepwise pass over a 30 s window is the slow part)."""
    owsm = load_model("owsm_tiny_random")
    model = banked(owsm, targets=("owsm_attn_ffn",))
    result = importance.layer_importance(model, probe, batch_size=8)
    assert result["unit_modules"]["mlp"] == 12  # feed_forward and the e-branchformer's feed_forward_macaron
    bare = dataclasses.replace(owsm, asr_model=copy.deepcopy(owsm.asr_model).eval())
    scores = [stepwise(bare, u) for u in read_data_dir(probe) if u.lang == "te"]
    loss = sum(s[0] for s in scores) / len(scores)
    assert result["baseline"]["te"]["loss"] + result["loss_change"]["te"]["all"] == pytest.approx(loss, abs=1e-4)


def test_a_probe_dir_without_adapter_languages_is_refused(base, tmp_path):
    model = banked(base)
    data = noise_data_dir(tmp_path, ["en", "en"], 0.5)
    with pytest.raises(importance.ProbeSetError, match="no utterance in an adapter's language"):
        importance.layer_importance(model, data)
