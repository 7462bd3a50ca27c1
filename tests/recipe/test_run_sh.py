"""The recipe end to end on a tiny corpus, as ESPnet's mini_an4 CI does: data prep, one epoch of joint
LoRA training, its dev WER, the LID head on its tap, decoding of the real converted Whisper base zero-shot
and with the adapters (oracle and LID-routed), sclite scoring, RESULTS.md; then a rerun skips every
finished stage. Also stage 3 of the full fine-tuning reference
system (--finetune full) on the tiny random Whisper."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from train_helpers import TINY_CONFIG, make_corpus

from espnet_ext.lid.heads import DEFAULT_HEAD

LANGS = ("hi", "pa", "te", "it")
RECIPE = Path(__file__).resolve().parents[2] / "egs2" / "multilingual_lora" / "asr1"


def run_recipe(tmp_path, *args):
    """run.sh on the test's data and exp dirs; the timeout only stops a hung run (a slow shared machine has
    taken 20 minutes for the end-to-end run)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = ["./run.sh", "--datadir", str(tmp_path / "data"), "--expdir", str(tmp_path / "exp"), *args]
    return subprocess.run(cmd, cwd=RECIPE, env=env, capture_output=True, text=True, timeout=3600)


@pytest.mark.slow
def test_run_sh_end_to_end_with_whisper_base(tmp_path):
    done = run_recipe(tmp_path, "--tts_utts_per_split", "2", "--nj", "2", "--train_args",
                      "--max_epoch 1 --num_iters_per_epoch 4", "--codeswitch", "true", "--cs_per_kind", "2",
                      "--cs_train_per_kind", "2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    exp = tmp_path / "exp" / "whisper_base_zeroshot"
    lora_exp = tmp_path / "exp" / "whisper_base_all_r16"
    decode_dirs = [exp / "decode_test_all_none"] + [lora_exp / f"decode_test_all_{r}" for r in ("oracle", "hard")]
    for lang in LANGS:
        config = json.loads((lora_exp / "adapters" / lang / "adapter_config.json").read_text(encoding="utf-8"))
        assert config["base_model"] == "whisper_base" and config["rank"] == 16
        assert config["layout"] == {"kind": "shared_below", "tap_layer": 3}  # the default bank layout
    shared = json.loads((lora_exp / "adapters" / "shared" / "adapter_config.json").read_text(encoding="utf-8"))
    assert shared["language"] == "shared" and shared["modules"]
    assert {m.split(".")[3] for m in shared["modules"]} == {"0", "1", "2"}  # encoder blocks 1-3 only
    assert all(m.startswith("encoder.encoders.blocks.") for m in shared["modules"])
    for decode_dir in decode_dirs:  # test_all once per routing, scored per language
        hyps = (decode_dir / "text").read_text(encoding="utf-8").splitlines()
        assert len(hyps) == 8 and all(len(h.split(" ", 1)) == 2 for h in hyps), hyps
        assert "Sum/Avg" in (decode_dir / "score_wer" / "result.txt").read_text(encoding="utf-8")
        summary = (decode_dir / "result.txt").read_text(encoding="utf-8")
        assert "WER" in summary and "CER" in summary
        scores = json.loads((decode_dir / "scores.json").read_text(encoding="utf-8"))["scores"]
        assert all(scores[lang]["utterances"] == 2 and scores[lang]["wer"]["ref_tokens"] > 0 for lang in LANGS)
    head = json.loads((lora_exp / "lid" / "asp" / "lid_config.json").read_text(encoding="utf-8"))
    # stage 4: the adapters' languages and the LID-only English class (stage 1 wrote train_en, kept out of
    # train_all); the out-of-set clips' routing reported beside the heads
    assert head["kind"] == "asp" and head["layer"] == 3 and head["languages"] == list(LANGS) + ["en"]
    assert head["hyper"]["members"] == 3  # the default head: three seeds' asp heads, averaged
    train_langs = {line.split()[1] for line in (tmp_path / "data" / "train_all" / "utt2lang").read_text().splitlines()}
    assert train_langs == set(LANGS) and (tmp_path / "data" / "train_en" / "utt2lang").is_file()
    heads_md = (lora_exp / "lid" / "heads.md").read_text(encoding="utf-8")
    assert "| asp x3 |" in heads_md and "Out-of-set clips routed confidently" in heads_md and "mr (n=1)" in heads_md
    routed = json.loads((lora_exp / "decode_test_all_hard" / "lid.json").read_text(encoding="utf-8"))
    assert all("LID head on encoder layer 3, router hard, inside the pass" in d["source"] for d in routed.values())
    dev_scores = json.loads((lora_exp / "decode_dev_all_oracle" / "scores.json").read_text(encoding="utf-8"))
    assert sorted(dev_scores["scores"]) == sorted(LANGS + ("all",))  # dev WER after training, per language
    assert dev_scores["scores"]["all"]["utterances"] == 2 * len(LANGS)
    it_scores = json.loads((exp / "decode_test_all_none" / "scores.json").read_text(encoding="utf-8"))
    assert it_scores["scores"]["it"]["cer"]["rate"] < 40  # Whisper base already reads espeak Italian fairly well
    results = (tmp_path / "exp" / "RESULTS.md").read_text(encoding="utf-8")
    assert all(f"| decode_test_all_{routing} | test_all | {lang} |" in results
               for lang in LANGS for routing in ("none", "oracle", "hard"))
    assert "## Routing: whisper_base_all_r16 on test_all" in results and "\n| hard | " in results
    # the experiments table: rank 16 on every attention projection and MLP of Whisper base above the tap
    # (encoder blocks 4-6 and the decoder) is 1.72M per language
    assert "| whisper_base_all_r16 | whisper_all | 16 | 1.72M | 8 | 1/1 |" in results

    # --codeswitch: the frame tagger trained on train_cs_* (2 per kind), its epoch chosen on dev_cs_* (20 per kind);
    # it finds the segments of the three code-switched test sets, each decoded five ways against its true segments
    tagger = json.loads((lora_exp / "lid" / "tagger" / "lid_config.json").read_text(encoding="utf-8"))
    assert tagger["kind"] == "tagger" and tagger["layer"] == 3 and tagger["languages"] == list(LANGS) + ["en"]
    assert json.loads((lora_exp / "lid" / "tagger" / "eval.json").read_text())["train_utterances"] == 6
    assert len((tmp_path / "data" / "dev_cs_rapid" / "wav.scp").read_text().splitlines()) == 20
    assert "lid/tagger" in (lora_exp / "codeswitch_lid" / "test" / "log" / "codeswitch_lid.log").read_text()
    for kind in ("inter", "intra", "rapid"):
        segments = json.loads((lora_exp / "codeswitch_lid" / "test" / f"test_cs_{kind}" / "segments.json").read_text())
        assert len(segments) == 2 and all(segs for segs in segments.values())
        assert f"## Routing: whisper_base_all_r16 on test_cs_{kind}" in results
        for variant in ("oracle", "hard", "segments_lid", "segments_oracle_one_pass", "segments_lid_one_pass"):
            scores = json.loads((lora_exp / f"decode_test_cs_{kind}_{variant}" / "scores.json").read_text())
            assert scores["scores"]["all"]["utterances"] == 2, (kind, variant)
        table = results.split(f"on test_cs_{kind}")[1].split("## ")[0]
        assert "\n| segments_lid | " in table and "\n| segments_lid_one_pass | " in table
    one_pass = json.loads((lora_exp / "decode_test_cs_inter_segments_lid_one_pass" / "lid.json").read_text())
    assert all("one encoder pass" in d["source"] for d in one_pass.values())

    # stage 7: the report of everything above, the real model's representations on 2 dev utterances per language
    report = (tmp_path / "exp" / "report" / "README.md").read_text(encoding="utf-8")
    assert "## Routing by the LID head" in report and "## What the adapters change inside the encoder" in report
    assert json.loads((lora_exp / "analysis" / "representations.json").read_text())["utterances"] == 2 * len(LANGS)

    rerun = run_recipe(tmp_path, "--tts_utts_per_split", "2", "--stop_stage", "5")
    assert rerun.returncode == 0
    assert "already prepared" in rerun.stdout and "already trained" in rerun.stdout
    assert "LID heads asp already trained" in rerun.stdout
    assert rerun.stdout.count("already decoded") == 4  # 3 test dirs + the dev dir
    # another head: stage 4 trains it; the decode it routes is redone, the ones it does not route are kept
    other = run_recipe(tmp_path, "--tts_utts_per_split", "2", "--stage", "4", "--stop_stage", "5",
                       "--lid_head", "mlp", "--lid_members", "1")
    assert other.returncode == 0, other.stdout[-3000:] + other.stderr[-3000:]
    assert "decode_test_all_hard was decoded with another LID head or other segments" in other.stdout
    assert other.stdout.count("already decoded") == 3  # none, oracle, dev
    redone = json.loads((lora_exp / "decode_test_all_hard" / "lid.json").read_text(encoding="utf-8"))
    assert redone != routed


@pytest.mark.slow
def test_the_adapter_beats_the_zero_shot_base_on_what_it_was_trained_on(tmp_path):
    """The recipe would pass every structural check above with adapters that do nothing; this one would
    not: a short real-base training on four Telugu utterances (one full batch, 16 steps), then those
    utterances decoded by the bare base (zero-shot, in Latin transliteration mostly) and through the
    adapter, scored by stage 6."""
    done = run_recipe(tmp_path, "--lang", "te", "--tts_utts_per_split", "1", "--tts_train_utts", "4",
                      "--stop_stage", "6", "--test_sets", "train_te", "--routings", "none oracle", "--train_args",
                      "--max_epoch 1 --num_iters_per_epoch 16 --scheduler_conf warmup_steps=2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    def cer(system, routing):
        scores = json.loads((tmp_path / "exp" / system / f"decode_train_te_{routing}" / "scores.json").read_text())
        assert scores["scores"]["te"]["utterances"] == 4
        return scores["scores"]["te"]["cer"]["rate"]

    zero_shot, adapted = cer("whisper_base_zeroshot", "none"), cer("whisper_base_te_r16", "oracle")
    assert zero_shot > 50 and adapted < zero_shot / 2, (zero_shot, adapted)


def test_unknown_option_is_refused_by_name(tmp_path):
    done = run_recipe(tmp_path, "--no_such_option", "1")
    assert done.returncode != 0
    assert "--no_such_option" in done.stderr + done.stdout


def test_unknown_language_is_refused(tmp_path):
    done = run_recipe(tmp_path, "--lang", "xx", "--stage", "5")
    assert done.returncode != 0
    assert "unknown language code 'xx'" in done.stderr + done.stdout


def test_nj_must_be_a_positive_number(tmp_path):
    done = run_recipe(tmp_path, "--nj", "0", "--stage", "5", "--routings", "none")
    assert done.returncode == 1
    assert "--nj 0: give the number of parallel jobs per stage, 1 or more" in done.stdout


def test_a_real_corpus_is_looked_for_where_db_sh_says(tmp_path):
    """db.sh is sourced (as ESPnet's local/data.sh does): no `MLS: unbound variable`, but one line naming
    the path db.sh gives (here its default, downloads/mls, which this checkout does not have) and the fix."""
    done = run_recipe(tmp_path, "--corpus", "mls", "--stop_stage", "1")
    assert done.returncode == 1
    assert "unbound variable" not in done.stderr
    assert "--corpus mls: MLS='downloads/mls' in db.sh is not a directory; set MLS in db.sh" in done.stdout
    assert not (tmp_path / "data").exists()


def test_finetune_full_defaults_to_its_own_exp_dir_and_config(tmp_path):
    """--finetune full must never train into (or mark done) the LoRA exp dir, nor use a LoRA config."""
    done = run_recipe(tmp_path, "--model", "whisper_tiny_random", "--finetune", "full", "--stage", "3",
                      "--stop_stage", "3")
    assert done.returncode != 0  # there is no train_full_whisper_tiny_random.yaml: training stops at once
    log = (tmp_path / "exp" / "whisper_tiny_random_all_full" / "log" / "train.log").read_text(encoding="utf-8")
    assert "--config conf/tuning/train_full_whisper_tiny_random.yaml --finetune full" in log
    assert "train_full_whisper_tiny_random.yaml does not exist" in log
    assert not (tmp_path / "exp" / "whisper_tiny_random_all_r16").exists()


def test_finetune_full_refuses_hard_routing(tmp_path):
    """A fully fine-tuned model has no adapters to route by detected language; never decode it mislabelled."""
    done = run_recipe(tmp_path, "--finetune", "full", "--routings", "none hard", "--stage", "5")
    assert done.returncode != 0
    assert "a --finetune full model has none" in done.stdout + done.stderr


@pytest.mark.slow
def test_finetune_full_trains_and_decodes_the_dev_set_with_the_full_model(tmp_path):
    """Stage 3 with --finetune full on the tiny model: full_model/ is trained and marked done; stages 5-6
    decode the dev set with that model (routing none, utt2lang's language) into decode_dev_all_oracle."""
    for name in ("train_all", "dev_all", "test_all"):
        make_corpus(tmp_path / "data", name)
    done = run_recipe(tmp_path, "--model", "whisper_tiny_random", "--finetune", "full", "--stage", "3",
                      "--stop_stage", "6", "--nj", "1", "--train_config", str(TINY_CONFIG),
                      "--train_args", "--max_epoch 1", "--routings", "oracle", "--test_sets", "test_all")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    exp = tmp_path / "exp" / "whisper_tiny_random_all_full"
    assert (exp / "full_model" / ".done").is_file() and (exp / "full_model" / "model.safetensors").is_file()
    assert f"stage 6: dev WER/CER of {tmp_path / 'exp' / 'whisper_tiny_random_all_full'}" in done.stdout
    dev = exp / "decode_dev_all_oracle"
    args = yaml.safe_load((dev / "decode_args.yaml").read_text(encoding="utf-8"))
    assert (args["routing"], args["language"], args["finetuned_dir"]) == ("none", "oracle", str(exp / "full_model"))
    assert args["pad_to_30s"] is False  # from model_config.json: the tiny config trains on the real length
    assert json.loads((dev / "scores.json").read_text(encoding="utf-8"))["scores"]["all"]["utterances"] == 8


def test_zero_shot_decoding_alone_needs_no_trained_system(tmp_path):
    """--routings none decodes the base only: no trained exp dir, no dev decode of one."""
    make_corpus(tmp_path / "data", "test_all")
    done = run_recipe(tmp_path, "--model", "whisper_tiny_random", "--stage", "5", "--stop_stage", "6",
                      "--nj", "1", "--routings", "none", "--test_sets", "test_all")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    scores = json.loads((tmp_path / "exp" / "whisper_tiny_random_zeroshot" / "decode_test_all_none" / "scores.json")
                        .read_text(encoding="utf-8"))
    assert scores["scores"]["all"]["utterances"] == 8
    assert not (tmp_path / "exp" / "whisper_tiny_random_all_r16").exists()


@pytest.mark.slow
def test_stage_7_reports_every_result_and_the_seeds_and_robustness_studies(tmp_path):
    """Stages 3-7 on the tiny model with --studies seeds: two more trainings under seeds 1 and 2 (stages 3, 5, 6
    each), and robustness: test_q's degraded copies decoded by the zero-shot base, the adapters and the adapters
    trained with the channels, LID heads with and without them; then the report: README.md, index.html and
    slides.pdf with the weight space, the seeds' spread, the robustness tables and the representation analysis,
    figures as PNG and PDF."""
    for name in ("train_all", "dev_all", "test_all"):
        make_corpus(tmp_path / "data", name)
    channels = yaml.safe_load(TINY_CONFIG.read_text())
    channels["augment_conf"] = {"channel_prob": 0.5, "channels": ["tel", "snr10"]}
    (tmp_path / "channels.yaml").write_text(yaml.safe_dump(channels))
    done = run_recipe(tmp_path, "--model", "whisper_tiny_random", "--stage", "3", "--nj", "1",
                      "--train_config", str(TINY_CONFIG), "--train_args", "--max_epoch 1", "--routings", "oracle",
                      "--test_sets", "test_all", "--studies", "seeds,layers,lexical,robustness", "--probe_per_language",
                      "2", "--importance_per_language", "1", "--lexical_per_language", "2",
                      "--robustness_per_language", "1", "--robustness_conditions", "tel",
                      "--robustness_config", str(tmp_path / "channels.yaml"), "--robustness_epochs", "1",
                      "--robustness_lid_epochs", "2", "--lid_members", "1", "--lid_args", "--alone_crops 0")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    exp = tmp_path / "exp"
    sets = ("test_q", "test_q_tel")
    assert [len((tmp_path / "data" / s / "wav.scp").read_text().splitlines()) for s in sets] == [4, 4]
    for system, routing in (("whisper_tiny_random_zeroshot", "none"), ("whisper_tiny_random_all_r16", "oracle"),
                            ("whisper_tiny_random_all_r16_channels_e1", "oracle")):
        assert all((exp / system / f"decode_{s}_{routing}" / "scores.json").is_file() for s in sets), system
    augment = yaml.safe_load((exp / "whisper_tiny_random_all_r16_channels_e1" / "config.yaml").read_text())
    assert augment["augment_conf"]["channels"] == ["tel", "snr10"] and augment["max_epoch"] == 1
    for variant in ("clean", "channels"):
        report = json.loads((exp / f"whisper_tiny_random_all_r16/lid_{variant}_e2/{DEFAULT_HEAD}/eval.json").read_text())
        assert set(sets) <= set(report["eval"]) and len(report["history"]) == 2
        assert report["train_utterances"] == (16 if variant == "channels" else 8)
    runs = ["whisper_tiny_random_all_r16", "whisper_tiny_random_all_r16_seed1", "whisper_tiny_random_all_r16_seed2"]
    seeds = [yaml.safe_load((exp / run / "config.yaml").read_text())["seed"] for run in runs]
    assert seeds == [0, 1, 2]
    report = exp / "report"
    readme = (report / "README.md").read_text(encoding="utf-8")
    assert "## Run-to-run spread" in readme and all(f"| {run} |" in readme or run in readme for run in runs)
    assert "## What the adapters share (weight space)" in readme
    assert "## Where the adapters matter (layer importance)" in readme and "--studies transfer" in readme
    # two utterances a language hold no word 3 times: the study ran and says what it needs
    assert "## Which words the encoder hears (lexical probe)" in readme and "--lexical_per_language N" in readme
    pngs = sorted((report / "figures").glob("*.png"))
    assert len(pngs) >= 8 and all(p.with_suffix(".pdf").is_file() for p in pngs)
    assert (report / "slides.pdf").read_bytes()[:5] == b"%PDF-" and "<img" in (report / "index.html").read_text()
    assert "stage 7: study seeds" in done.stdout
    assert "## Robustness to channels and voices" in readme and "robustness_test_q.png" in readme
    assert "LID accuracy on test_q and its degraded copies (%)" in readme


def test_an_unknown_study_stops_stage_7_naming_it(tmp_path):
    done = run_recipe(tmp_path, "--stage", "7", "--studies", "nosuch")
    assert done.returncode == 1 and "unknown study 'nosuch'" in done.stdout


@pytest.mark.slow
def test_fewshot_study_trains_from_scratch_and_from_the_source_and_reports_the_curves(tmp_path):
    """--studies fewshot on the tiny model, one pair and two sizes: the source trained alone, each target size
    from scratch and from the source's adapter (its adapter_config.json says so), their dev decodes read
    into the report's few-shot section."""
    for split in ("train", "dev", "test"):
        for lang in ("hi", "te"):
            make_corpus(tmp_path / "data", f"{split}_{lang}", languages=(lang,))
        make_corpus(tmp_path / "data", f"{split}_all")
    args = ["--model", "whisper_tiny_random", "--nj", "1", "--train_config", str(TINY_CONFIG),
            "--train_args", "--max_epoch 1", "--routings", "oracle", "--test_sets", "test_all"]
    trained = run_recipe(tmp_path, *args, "--stage", "3", "--stop_stage", "6")
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    done = run_recipe(tmp_path, *args, "--stage", "7", "--studies", "fewshot", "--fewshot_pairs", "hi:te",
                      "--fewshot_sizes", "1 2", "--fewshot_steps", "--num_iters_per_epoch 2 --max_epoch 1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    exp = tmp_path / "exp"
    assert (exp / "whisper_tiny_random_hi_r16" / "adapters" / "hi").is_dir()  # the source, trained alone
    for n in (1, 2):
        for init in ("scratch", "from_hi"):
            run = exp / f"whisper_tiny_random_te_r16_n{n}_{init}"
            config = json.loads((run / "adapters" / "te" / "adapter_config.json").read_text())
            assert config["train_data"]["utterances"] == {"te": n}
            assert ("init_from" in config) == (init == "from_hi")
            assert (run / "decode_dev_te_oracle" / "scores.json").is_file()
    assert "## Cross-lingual transfer (few-shot)" in (exp / "report" / "README.md").read_text(encoding="utf-8")
