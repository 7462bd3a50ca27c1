"""Cross-lingual transfer: decode.py --adapter (adapter X, each utterance's own language token) gives the
oracle's transcripts for X = Y and X merged into the base otherwise; the zero-shot matrix read from scored
decode dirs, its diagonal the oracle's per-language scores; train_lora --init_adapter_dir starts the
trained language's adapter (and the shared one) from X's weights and records it, and refuses a bank of
another rank; the readers' known cells (None where missing) and the figures."""
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from espnet_ext.analysis import transfer
from espnet_ext.bin import decode, score, train_lora
from espnet_ext.data.kaldi import Utterance, read_data_dir, write_data_dir
from espnet_ext.decode.search import SearchConfig
from espnet_ext.decode.transcribe import make_backend, transcribe_batch
from espnet_ext.lora.adapter_files import WEIGHTS_NAME
from espnet_ext.lora.inject import SHARED, adapter_state_dict, merge_adapter, unmerge_all
from espnet_ext.train.trainer import LoRATrainer

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS / "decode"), str(TESTS / "train")]
from analysis_helpers import LANGS, random_bank, save_bank  # noqa: E402
from decode_helpers import noise_data_dir, random_audio  # noqa: E402
from train_helpers import TINY_CONFIG, make_corpus, train_command  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def eval_bank(languages, targets, seed=0):
    """analysis_helpers.random_bank in eval mode (decoding's)."""
    model = random_bank(languages, targets, seed=seed)
    model.asr_model.eval()
    return model


# --- zero-shot decoding -------------------------------------------------------------------------------

@torch.no_grad()
def test_transfer_routing_is_adapter_x_merged_with_each_utterances_own_token():
    """Every utterance through hi's adapter (and the shared one), decoded with its own language token:
    what hi's adapter folded into the base weights decodes with that token."""
    model = eval_bank(LANGS, ["whisper_all"])
    backend = make_backend(model, pad_to_30s=False)
    audios = [random_audio(s, i) for i, s in enumerate([0.8, 0.5, 1.1])]
    langs, config = ["te", "pa", "it"], SearchConfig(max_tokens=8)
    moved = transcribe_batch(backend, audios, langs, config, adapter="hi")
    own = transcribe_batch(backend, audios, langs, config)
    merge_adapter(model.asr_model, "hi")
    try:
        merged = transcribe_batch(backend, audios, langs, config)  # a merged bank ignores the routing
    finally:
        unmerge_all(model.asr_model)
    assert [h.text for h in moved] == [h.text for h in merged]
    assert [h.text for h in moved] != [h.text for h in own]  # the adapter changed what was decoded
    assert [h.lang for h in moved] == langs and all(h.weights["hi"] == 1.0 for h in moved)
    assert "through adapter hi" in moved[0].source


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    """A tiny bank, test_all (2 noise clips per language) and its per-language test_<Y>, decoded and scored:
    oracle and base (routing none) on test_all, every test_<Y> with --adapter Y, test_te with --adapter hi."""
    root = tmp_path_factory.mktemp("transfer")
    exp = root / "exp"
    save_bank(eval_bank(LANGS, ["whisper_all"]), exp / "adapters")
    (root / "data").mkdir()
    test_all = noise_data_dir(root / "data", LANGS + LANGS, 0.6, name="test_all")
    for lang in LANGS:
        write_data_dir(root / "data" / f"test_{lang}", [u for u in read_data_dir(test_all) if u.lang == lang])

    def decode_and_score(data_dir, out_dir, *extra):
        decode.main(["--model", "whisper_tiny_random", "--data_dir", str(data_dir), "--out_dir", str(out_dir),
                     "--adapter_dir", str(exp / "adapters"), "--max_tokens", "4", "--threads", "1",
                     "--pad_to_30s", "false", *extra])
        decode.main(["--merge", "--out_dir", str(out_dir)])
        score.main(["--decode_dir", str(out_dir), "--ref_text", str(data_dir / "text")])

    decode_and_score(test_all, exp / "decode_test_all_oracle", "--routing", "oracle")
    decode_and_score(test_all, root / "base" / "decode_test_all_none", "--routing", "none")
    for lang in LANGS:
        decode_and_score(root / "data" / f"test_{lang}", transfer.zero_shot_decode_dir(exp, f"test_{lang}", lang),
                         "--routing", "oracle", "--adapter", lang)
    decode_and_score(root / "data" / "test_te", transfer.zero_shot_decode_dir(exp, "test_te", "hi"),
                     "--routing", "oracle", "--adapter", "hi")
    return root


def read_text(decode_dir):
    return dict(line.split(" ", 1) if " " in line else (line, "") for line in
                (decode_dir / "text").read_text(encoding="utf-8").splitlines())


def test_the_matrix_diagonal_is_the_oracle_per_language(decoded):
    exp = decoded / "exp"
    oracle_dir = exp / "decode_test_all_oracle"
    result = transfer.zero_shot_matrix(exp, [f"test_{y}" for y in LANGS], decoded / "base" / "decode_test_all_none")
    assert result["adapters"] == LANGS + ["base"] and result["languages"] == LANGS
    oracle = json.loads((oracle_dir / "scores.json").read_text())["scores"]
    base = json.loads((decoded / "base" / "decode_test_all_none" / "scores.json").read_text())["scores"]
    oracle_text = read_text(oracle_dir)
    for y in LANGS:
        cell_dir = transfer.zero_shot_decode_dir(exp, f"test_{y}", y)
        assert result["sources"][y][y] == str(cell_dir / "scores.json")
        utts = {u.utt_id for u in read_data_dir(decoded / "data" / f"test_{y}")}
        assert read_text(cell_dir) == {u: t for u, t in oracle_text.items() if u in utts}
        for metric in ("wer", "cer"):
            assert result[metric][y][y] == oracle[y][metric]["rate"]
            assert result[metric]["base"][y] == base[y][metric]["rate"]
    decoded_cells = {(y, y) for y in LANGS} | {("hi", "te")} | {("base", y) for y in LANGS}
    assert sorted(map(tuple, result["missing"])) == sorted(
        (a, y) for a in result["adapters"] for y in LANGS if (a, y) not in decoded_cells)
    assert result["wer"]["pa"]["hi"] is None and result["sources"]["pa"]["hi"] is None


def test_lid_json_says_which_adapter_and_keeps_the_own_token(decoded):
    cell = transfer.zero_shot_decode_dir(decoded / "exp", "test_te", "hi")
    lid = json.loads((cell / "lid.json").read_text())
    assert len(lid) == 2
    for record in lid.values():
        assert record["lang"] == "te" and record["weights"]["hi"] == 1.0 and record["weights"]["te"] == 0.0
        assert "every utterance through adapter hi (zero-shot transfer)" in record["source"]
    scores = json.loads((cell / "scores.json").read_text())["scores"]["te"]
    result = transfer.zero_shot_matrix(decoded / "exp", ["test_te"])
    assert result["cer"]["hi"]["te"] == scores["cer"]["rate"]


@pytest.mark.parametrize("extra, words", [
    (["--routing", "oracle", "--adapter", "en"], ["--adapter en", "hi, it, pa, te", "adapters"]),
    (["--routing", "none", "--adapter", "hi"], ["--adapter hi", "--routing oracle", "--routing none"]),
])
def test_an_adapter_outside_the_bank_or_without_oracle_fails_with_one_line(decoded, tmp_path, extra, words):
    adapters = decoded / "exp" / "adapters"
    with pytest.raises(SystemExit) as stop:
        decode.main(["--model", "whisper_tiny_random", "--data_dir", str(decoded / "data" / "test_te"),
                     "--out_dir", str(tmp_path / "out"), "--adapter_dir", str(adapters), "--threads", "1", *extra])
    message = str(stop.value)
    assert message.startswith("decode.py: ") and "\n" not in message
    assert all(w in message for w in words), message
    if "en" in extra:
        assert str(adapters) in message
    assert not (tmp_path / "out").exists()


# --- few-shot initialisation ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def source_bank(tmp_path_factory):
    """X's bank as the tiny training config trains it (whisper_attn_qv, rank 4, alpha 8), shared_below."""
    return save_bank(eval_bank(["hi", "te"], ["whisper_attn_qv"], seed=1), tmp_path_factory.mktemp("x") / "adapters")


SHARED_BELOW = ("--lora_conf", "layout=shared_below", "--lora_conf", "tap_layer=1")


def test_init_adapter_dir_starts_the_language_adapter_from_x(source_bank, tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path, languages=("te",))
    before = {}
    original = LoRATrainer.run.__func__

    def capture(cls, model, *args, **kwargs):  # the model as ESPnet's trainer gets it, before the first step
        before.update({name: adapter_state_dict(model.model, name) for name in ("te", SHARED)})
        return original(cls, model, *args, **kwargs)

    monkeypatch.setattr(LoRATrainer, "run", classmethod(capture))
    exp = tmp_path / "exp"
    train_lora.main(train_command(corpus, exp, "--init_adapter_dir", str(source_bank / "hi"), *SHARED_BELOW,
                                  "--max_epoch", "1"))
    for slot, source in (("te", "hi"), (SHARED, SHARED)):
        x = load_file(source_bank / source / WEIGHTS_NAME)
        assert set(before[slot]) == set(x)
        assert all(torch.equal(before[slot][k], x[k]) for k in x), slot
    config = json.loads((exp / "adapters" / "te" / "adapter_config.json").read_text())
    assert config["init_from"] == {"adapter_dir": str(source_bank / "hi"), "language": "hi",
                                   "shared_dir": str(source_bank / SHARED)}
    trained = load_file(exp / "adapters" / "te" / WEIGHTS_NAME)
    hi = load_file(source_bank / "hi" / WEIGHTS_NAME)
    assert any(not torch.equal(trained[k], hi[k]) for k in hi)  # and training went on from there


@pytest.mark.parametrize("languages, extra, words", [
    (("te",), ["--lora_rank", "2"], ["rank 4 vs 2", "adapter_config.json", TINY_CONFIG.name]),
    (("hi", "te"), [], ["this run trains ['hi', 'te']"]),
])
def test_init_adapter_dir_refuses_another_rank_or_several_languages(source_bank, tmp_path, languages, extra, words):
    corpus = make_corpus(tmp_path, languages=languages)
    with pytest.raises(SystemExit) as stop:
        train_lora.main(train_command(corpus, tmp_path / "exp", "--init_adapter_dir", str(source_bank / "hi"),
                                      *SHARED_BELOW, *extra))
    message = str(stop.value)
    assert message.startswith("train_lora.py: ") and "\n" not in message
    assert all(w in message for w in words), message
    if extra:
        assert str(source_bank / "hi" / "adapter_config.json") in message and str(TINY_CONFIG) in message
    assert not (tmp_path / "exp" / "train_lora_args.yaml").exists()


# --- readers of hand-made scores.json, subsets, figures --------------------------------------------------

def write_scores(decode_dir: Path, rates, word_errors=()) -> None:
    """A scores.json as espnet_ext.bin.score writes it, reduced to what the readers use; `word_errors`: per
    utterance (te), as its "utterances" map holds them."""
    decode_dir.mkdir(parents=True)
    scores = {lang: {"wer": {"rate": wer}, "cer": {"rate": cer}} for lang, (wer, cer) in rates.items()}
    utterances = {f"te-u{k}": {"lang": "te", "word_errors": e, "char_errors": 2 * e} for k, e in enumerate(word_errors)}
    (decode_dir / "scores.json").write_text(json.dumps({"scores": scores, "utterances": utterances}))


@pytest.fixture
def hand_made_matrix(tmp_path):
    exp = tmp_path / "exp"
    for name in ("hi", "te", SHARED):
        (exp / "adapters" / name).mkdir(parents=True)
        (exp / "adapters" / name / "adapter_config.json").write_text("{}")
    write_scores(exp / "decode_test_hi_adapter_hi", {"hi": (10.0, 5.0), "all": (10.0, 5.0)})
    write_scores(exp / "decode_test_te_adapter_hi", {"te": (50.0, 20.0), "all": (50.0, 20.0)})
    write_scores(exp / "decode_test_all_oracle", {"hi": (99.0, 99.0), "te": (30.0, 8.0)})
    write_scores(tmp_path / "base", {"hi": (80.0, 40.0), "te": (90.0, 60.0)})
    return exp, transfer.zero_shot_matrix(exp, ["test_hi", "test_te"], tmp_path / "base",
                                          oracle_dir=exp / "decode_test_all_oracle")


def test_zero_shot_matrix_reads_the_cells_and_marks_the_missing(hand_made_matrix):
    exp, result = hand_made_matrix
    assert result["adapters"] == ["hi", "te", "base"] and result["languages"] == ["hi", "te"]
    assert result["wer"] == {"hi": {"hi": 10.0, "te": 50.0}, "te": {"hi": None, "te": 30.0},
                             "base": {"hi": 80.0, "te": 90.0}}
    assert result["cer"] == {"hi": {"hi": 5.0, "te": 20.0}, "te": {"hi": None, "te": 8.0},
                             "base": {"hi": 40.0, "te": 60.0}}
    # the diagonal: its own decode where there is one, else the oracle decode's language
    assert result["sources"]["hi"]["hi"] == str(exp / "decode_test_hi_adapter_hi" / "scores.json")
    assert result["sources"]["te"]["te"] == str(exp / "decode_test_all_oracle" / "scores.json")
    assert result["missing"] == [["te", "hi"]]
    with pytest.raises(transfer.TransferInputError, match="test_<language>"):
        transfer.zero_shot_matrix(exp, ["test_all"])


@pytest.fixture
def hand_made_runs(tmp_path):
    def run(name, rates=None, word_errors=()):
        (tmp_path / name).mkdir()
        if rates:
            write_scores(tmp_path / name / "decode_dev_te_oracle", {"te": rates}, word_errors)

    # per-utterance errors at N=25 only: from hi halves every utterance's errors, from it takes a quarter off
    run("whisper_base_te_r16_n25_scratch", (80.0, 40.0), [4, 8, 4, 8])
    run("whisper_base_te_r16_n100_scratch", (50.0, 20.0))
    run("whisper_base_te_r16_n400_scratch", (30.0, 10.0))
    run("whisper_base_te_r16_n25_from_hi", (60.0, 25.0), [2, 4, 2, 4])
    run("whisper_base_te_r16_n100_from_hi", (55.0, 22.0))
    run("whisper_base_te_r16_n400_from_hi")  # trained, not decoded yet
    run("whisper_base_te_r16_n25_from_it", (70.0, 30.0), [3, 6, 3, 6])
    run("whisper_base_all_r16")  # not a few-shot run
    return tmp_path


def test_few_shot_curves_gain_and_catch_up(hand_made_runs):
    result = transfer.few_shot_curves(hand_made_runs)
    assert result["sizes"] == [25, 100, 400]
    assert list(result["pairs"]) == ["hi->pa", "hi->te", "it->te"]
    hi_te = result["pairs"]["hi->te"]
    assert hi_te["cer"] == {"scratch": [40.0, 20.0, 10.0], "transfer": [25.0, 22.0, None]}
    assert hi_te["gain"]["wer"] == [-20.0, 5.0, None] and hi_te["gain"]["cer"] == [-15.0, 2.0, None]
    assert hi_te["catch_up"] == {"wer": 100, "cer": 100}
    # every resample of the utterances gives the same ratio, so the interval is the point
    assert hi_te["relative"]["wer"][0] == pytest.approx([-0.5, -0.5, -0.5]) and hi_te["relative"]["wer"][1:] == [None, None]
    assert result["pairs"]["it->te"]["relative"]["cer"][0] == pytest.approx([-0.25] * 3)
    assert hi_te["sources"]["transfer"][0] == str(
        hand_made_runs / "whisper_base_te_r16_n25_from_hi" / "decode_dev_te_oracle" / "scores.json")
    it_te = result["pairs"]["it->te"]
    assert it_te["cer"]["transfer"] == [30.0, None, None] and it_te["catch_up"] == {"wer": None, "cer": None}
    assert result["pairs"]["hi->pa"]["cer"] == {"scratch": [None] * 3, "transfer": [None] * 3}
    assert ["hi->te", "transfer", 400] in result["missing"] and ["hi->te", "scratch", 400] not in result["missing"]
    (hand_made_runs / "owsm_te_r8_n25_scratch").mkdir()
    with pytest.raises(transfer.TransferInputError, match="keep one model and rank"):
        transfer.few_shot_curves(hand_made_runs)


def test_plots_write_png_and_pdf(hand_made_matrix, hand_made_runs, tmp_path):
    written = transfer.plot_zero_shot(hand_made_matrix[1], tmp_path / "fig" / "zero_shot")
    written += transfer.plot_few_shot(transfer.few_shot_curves(hand_made_runs), tmp_path / "fig" / "few_shot")
    assert [p.name for p in written] == ["zero_shot.png", "zero_shot.pdf", "few_shot.png", "few_shot.pdf"]
    for path in written:
        assert path.read_bytes()[:4] == (b"\x89PNG" if path.suffix == ".png" else b"%PDF")


def test_few_shot_subsets_span_the_speakers_and_nest(tmp_path):
    noise_data_dir(tmp_path, ["te"], 0.2)  # writes tmp_path/u0.wav
    utterances = [Utterance(f"te-{s}-{k:02d}", f"te-{s}", "x", "te", str(tmp_path / "u0.wav"), 0.2)
                  for s in ("a", "b", "c") for k in range(4)]
    write_data_dir(tmp_path / "train_te", utterances)
    five = [u.utt_id for u in read_data_dir(transfer.few_shot_subset(tmp_path / "train_te", 5, tmp_path / "n5"))]
    assert five == ["te-a-00", "te-a-01", "te-b-00", "te-b-01", "te-c-00"]
    two = [u.utt_id for u in read_data_dir(transfer.few_shot_subset(tmp_path / "train_te", 2, tmp_path / "n2"))]
    assert set(two) < set(five)
    with pytest.raises(transfer.TransferInputError, match="holds 12 utterances"):
        transfer.few_shot_subset(tmp_path / "train_te", 13, tmp_path / "n13")


def test_folded_cer_scores_the_sound_not_the_script(tmp_path):
    """A Devanagari transcript of a Gurmukhi reference with the same letters: every character wrong by script,
    none by sound; a wrong letter counts once."""
    (tmp_path / "ref").write_text("u1 ਕਮਲ ਘਰ\nu2 ਜਲ\nu3 ciao\n", encoding="utf-8")
    decode = tmp_path / "decode_test_pa_adapter_hi"
    decode.mkdir()
    (decode / "text").write_text("u1 कमल घर\nu2 जन\nu3 ciao\n", encoding="utf-8")
    (decode / "scores.json").write_text(json.dumps({"ref_text": str(tmp_path / "ref"), "utterances": {
        "u1": {"lang": "pa"}, "u2": {"lang": "pa"}, "u3": {"lang": "it"}}}))
    assert transfer.folded_cer(decode / "scores.json", "pa") == pytest.approx(100 * 1 / 7)  # 7 letters, 1 wrong
    assert transfer.folded_cer(decode / "scores.json", "it") == 0
    (tmp_path / "ref").unlink()
    assert transfer.folded_cer(decode / "scores.json", "pa") is None  # texts not on disk


def test_the_few_shot_section_reports_pairs_with_transfer_runs_and_names_the_others(hand_made_runs, tmp_path):
    """hi->te and it->te have transfer runs (it->te one size); hi->pa has none, and it->te's scratch runs (shared
    with hi->te) must not make it look measured where its transfer runs are missing."""
    from espnet_ext.analysis import gather

    result = transfer.few_shot_curves(hand_made_runs)
    section = gather.fewshot_section(result, tmp_path / "figures", "exp/*_n*")
    said = "\n".join(section.paragraphs)
    assert ("hi->te: transfer gain WER_transfer - WER_scratch (dev, points; in brackets relative to scratch, 95% CI) "
            "N=25: -20.0 (-50% [-50, -50]), N=100: +5.0;") in said
    assert ("At N=25, relative dev WER change from transfer: hi->te -50% [-50, -50], it->te -25% [-25, -25]. hi->te "
            "transfers most and it->te least (95% intervals disjoint).") in said and "At N=100" not in said
    result["pairs"]["it->te"]["relative"]["wer"][0] = [-0.4, -0.6, -0.3]  # its interval reaches past hi->te's -50%
    said = "\n".join(gather.fewshot_section(result, tmp_path / "figures", "exp/*_n*").paragraphs)
    assert "hi->te transfers most and it->te least (95% intervals overlap: the difference is not shown)." in said
    assert "from scratch catches up at N=100." in said and "it->te: transfer gain" in said and "hi->pa:" not in said
    assert said.endswith('Not trained yet: hi->pa (`./run.sh --stage 7 --studies fewshot --fewshot_pairs "hi:pa"`).')
    hi_te_only = dict(result, pairs={k: v for k, v in result["pairs"].items() if k != "it->te"})
    hi_te_only["pairs"]["it->te"] = dict(result["pairs"]["it->te"], cer=dict(result["pairs"]["it->te"]["cer"],
                                                                             transfer=[None] * 3))
    said = "\n".join(gather.fewshot_section(hi_te_only, tmp_path / "figures", "exp/*_n*").paragraphs)
    assert "it->te: transfer gain" not in said and 'Not trained yet: hi->pa, it->te' in said and '"hi:pa it:te"' in said
