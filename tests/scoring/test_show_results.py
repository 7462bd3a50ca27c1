"""local/show_results.py: every exp/*/decode_*/scores.json becomes rows of one Markdown table."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def counts(rate, n):
    return {"rate": rate, "errors": 0, "substitutions": 0, "deletions": 0, "insertions": 0, "ref_tokens": n}


def write_scores(decode_dir: Path, test_set: str, per_lang: dict):
    decode_dir.mkdir(parents=True)
    scores = {lang: {"utterances": u, "wer": counts(w, 10), "cer": counts(c, 50)} for lang, (u, w, c) in per_lang.items()}
    (decode_dir / "scores.json").write_text(json.dumps({"test_set": test_set, "scores": scores}))


def show_results(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "local/show_results.py"), *args], capture_output=True,
                          text=True, env=env, timeout=30)


def test_table_rows_per_model_decode_and_language(tmp_path):
    exp = tmp_path / "exp"
    write_scores(exp / "whisper_all_r8/decode_test_soft", "test", {"hi": (2, 12.5, 3.25), "all": (4, 10.0, 2.0)})
    write_scores(exp / "whisper_all_r8/decode_test_oracle", "test", {"te": (1, None, 1.0), "all": (1, None, 1.0)})
    (exp / "whisper_all_r8/decode_broken").mkdir()  # no scores.json: not scored yet, skipped
    out = show_results(str(exp))
    assert out.returncode == 0, out.stderr
    written = (exp / "RESULTS.md").read_text()
    assert out.stdout == written
    table = [line for line in written.splitlines() if line.startswith("|")]
    assert table[0] == "| model | decode | test set | lang | utts | words | WER | chars | CER |"
    assert table[2:] == [
        "| whisper_all_r8 | decode_test_oracle | test | te | 1 | 10 | - | 50 | 1.00 |",
        "| whisper_all_r8 | decode_test_soft | test | hi | 2 | 10 | 12.50 | 50 | 3.25 |",
    ]


def test_output_option_and_errors(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    out = show_results(str(exp))
    assert out.returncode == 1 and "run the scoring stage first" in out.stderr
    assert not (exp / "RESULTS.md").exists()
    (exp / "m/decode_x").mkdir(parents=True)
    (exp / "m/decode_x/scores.json").write_text("{}")
    out = show_results(str(exp), "--output", str(tmp_path / "R.md"))
    assert out.returncode == 1 and "m/decode_x/scores.json: not a scores.json" in out.stderr
    write_scores(exp / "m/decode_y", "dev", {"all": (3, 1.0, 0.5)})
    (exp / "m/decode_x/scores.json").unlink()
    assert show_results(str(exp), "--output", str(tmp_path / "R.md")).returncode == 0
    assert "| m | decode_y | dev | all | 3 | 10 | 1.00 | 50 | 0.50 |" in (tmp_path / "R.md").read_text()


def write_routed(decode_dir: Path, errors: dict, routed: dict, seconds: float):
    """A scored decode of test_all: per-utterance errors (10 words each), lid.json, one decode log."""
    truth = {"u1": "hi", "u2": "hi", "u3": "te", "u4": "te"}
    write_scores(decode_dir, "test_all", {"hi": (2, 0.0, 0.0), "te": (2, 0.0, 0.0), "all": (4, 0.0, 0.0)})
    scores = json.loads((decode_dir / "scores.json").read_text())
    scores["utterances"] = {u: {"lang": truth[u], "word_errors": e, "words": 10, "char_errors": e, "chars": 50}
                            for u, e in errors.items()}
    (decode_dir / "scores.json").write_text(json.dumps(scores))
    top = {u: 0.6 if u == "u2" else 0.99 for u in routed}  # the LID head is unsure of u2 only
    (decode_dir / "lid.json").write_text(json.dumps({u: {"lang": lang, "posteriors": {lang: top[u], "x": 1 - top[u]}}
                                                     for u, lang in routed.items()}))
    (decode_dir / "log").mkdir()
    (decode_dir / "log/decode.1.log").write_text(f"x decode INFO decoded 4 utterances in {seconds} s -> y\n")


def test_routing_table_compares_each_routing_with_oracle(tmp_path):
    exp = tmp_path / "exp" / "whisper_base_all_r16"
    truth = {"u1": "hi", "u2": "hi", "u3": "te", "u4": "te"}
    write_routed(exp / "decode_test_all_oracle", {"u1": 2, "u2": 2, "u3": 1, "u4": 1}, truth, 2.0)
    write_routed(exp / "decode_test_all_hard", {"u1": 2, "u2": 4, "u3": 1, "u4": 1}, {**truth, "u2": "pa"}, 2.4)
    write_routed(exp / "decode_test_all_soft", {"u1": 2, "u2": 3, "u3": 1, "u4": 1}, {**truth, "u2": "pa"}, 2.4)
    out = show_results(str(tmp_path / "exp"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    start = lines.index("## Routing: whisper_base_all_r16 on test_all")
    header, _, oracle, hard, soft = lines[start + 2 : start + 7]
    assert header.startswith("| routing | hi WER / CER | hi WER vs oracle |")
    assert header.endswith("| ms/utt | WER where LID top posterior < 0.9 (n=1) | there, WER vs hard |")
    # on the one unsure utterance u2: oracle 2, hard 4, soft 3 errors
    assert oracle.startswith("| oracle |") and oracle.endswith("| 100.0 | 500 | 20.00 | -50.0% [-50.0, -50.0] |")
    assert hard.startswith("| hard |") and hard.endswith("| 75.0 | 600 | 40.00 |  |")
    assert soft.startswith("| soft |") and soft.endswith("| 30.00 | -25.0% [-25.0, -25.0] |")
    assert "| +50.0% [" in hard  # hi: 6 errors against oracle's 4
    assert "| +0.0% [+0.0, +0.0] |" in hard  # te: identical


def test_domain_table_marks_each_source_test_set_in_or_cross_domain(tmp_path):
    """A system trained on kathbath alone, scored on kathbath's and commonvoice's own test sets."""
    from espnet_ext.scoring.results import domain_table

    data, exp = tmp_path / "data", tmp_path / "exp" / "whisper_base_hi_r16"
    for name, lines in {"train_hi": ["a1 kathbath", "a2 kathbath", "b1 commonvoice"],
                        "test_hi_kathbath": ["k1 kathbath"], "test_hi_commonvoice": ["c1 commonvoice"]}.items():
        (data / name).mkdir(parents=True)
        (data / name / "utt2src").write_text("\n".join(lines) + "\n")
    (exp / "adapters" / "hi").mkdir(parents=True)
    (exp / "adapters" / "hi" / "adapter_config.json").write_text(json.dumps({"train_data": {"dir": str(data / "train_hi")}}))
    for test_set, wer in (("test_hi_kathbath", 20.0), ("test_hi_commonvoice", 45.0)):
        write_scores(exp / f"decode_{test_set}_oracle", test_set, {"hi": (1, wer, 5.0), "all": (1, wer, 5.0)})
        scores = json.loads((exp / f"decode_{test_set}_oracle" / "scores.json").read_text())
        scores["ref_text"] = str(data / test_set / "text")
        (exp / f"decode_{test_set}_oracle" / "scores.json").write_text(json.dumps(scores))
    table = domain_table(tmp_path / "exp")
    assert table.rows == [
        ["whisper_base_hi_r16", "commonvoice 33%, kathbath 67%", "test_hi_commonvoice", "commonvoice", "in-domain",
         "45.00 / 5.00"],
        ["whisper_base_hi_r16", "commonvoice 33%, kathbath 67%", "test_hi_kathbath", "kathbath", "in-domain",
         "20.00 / 5.00"]]
    (data / "train_hi" / "utt2src").write_text("a1 kathbath\n")
    assert [row[4] for row in domain_table(tmp_path / "exp").rows] == ["cross-domain", "in-domain"]


def write_per_utterance(decode_dir: Path, test_set: str, errors: dict):
    """A scored decode with per-utterance word errors (10 words each, `u<i>-<lang>`) and summaries."""
    langs = sorted({u.split("-")[1] for u in errors})
    per_lang = {lang: (sum(u.endswith(lang) for u in errors),
                       10 * sum(e for u, e in errors.items() if u.endswith(lang)) / sum(u.endswith(lang) for u in errors),
                       1.0) for lang in langs}
    write_scores(decode_dir, test_set, {**per_lang, "all": (len(errors), 10 * sum(errors.values()) / len(errors), 1.0)})
    scores = json.loads((decode_dir / "scores.json").read_text())
    scores["utterances"] = {u: {"lang": u.split("-")[1], "word_errors": e, "words": 10, "char_errors": e, "chars": 50}
                            for u, e in errors.items()}
    (decode_dir / "scores.json").write_text(json.dumps(scores))


def test_robustness_table_rows_conditions_by_system_with_intervals_reference_and_lid(tmp_path):
    from espnet_ext.scoring.results import robustness_tables

    exp = tmp_path / "exp"
    utts = [f"u{i}-{lang}" for lang in ("hi", "te") for i in range(4)]
    decodes = {  # system dir, decode dir -> errors of every utterance
        ("whisper_base_zeroshot", "decode_test_q_none"): 9, ("whisper_base_zeroshot", "decode_test_q_tel_none"): 10,
        ("whisper_base_all_r16", "decode_test_q_oracle"): 2, ("whisper_base_all_r16", "decode_test_q_tel_oracle"): 4,
        ("whisper_base_all_r16_ch", "decode_test_q_oracle"): 2, ("whisper_base_all_r16_ch", "decode_test_q_tel_oracle"): 3,
        ("whisper_base_all_r16", "decode_test_q_snr5_oracle"): 6,
        ("whisper_base_all_r16", "decode_test_q_tel_hard"): 5,  # another routing: not a robustness row
        ("whisper_base_all_r16", "decode_test_all_oracle"): 1,  # no degraded copy decoded: no table
    }
    for (system, decode), e in decodes.items():
        test_set = decode[len("decode_"):].rsplit("_", 1)[0]
        write_per_utterance(exp / system / decode, test_set, {u: e for u in utts})
    for lid, evaluated in (("lid/mlp", {"test": 0.99, "test_q_tel": 0.9}), ("lid_channels_e40/cnn", {"test_q": 1.0}),
                           ("lid_other/mlp", {"test_all": 0.5})):  # the last evaluated on no robustness set
        (exp / "whisper_base_all_r16" / lid).mkdir(parents=True)
        (exp / "whisper_base_all_r16" / lid / "eval.json").write_text(
            json.dumps({"eval": {split: {"accuracy": a} for split, a in evaluated.items()}}))
    from espnet_ext.scoring.results import routing_tables

    assert [t.title.split(": ")[1] for t in routing_tables(exp)] == [  # no copy decoded under oracle routing alone
        "whisper_base_all_r16 on test_all", "whisper_base_all_r16 on test_q", "whisper_base_all_r16 on test_q_tel",
        "whisper_base_all_r16_ch on test_q"]
    table, lid = robustness_tables(exp)
    assert table.title.startswith("Robustness: test_q and its degraded copies")
    assert table.columns[-1] == "all WER vs whisper_base_all_r16"
    assert lid.columns == ["experiment", "head", "clean", "tel", "snr5"]
    assert lid.rows == [["whisper_base_all_r16", "lid/mlp", "", "90.0", ""],
                        ["whisper_base_all_r16", "lid_channels_e40/cnn", "100.0", "", ""]]
    assert [row[:2] for row in table.rows] == [
        ["clean", "zero-shot base"], ["clean", "whisper_base_all_r16"], ["clean", "whisper_base_all_r16_ch"],
        ["tel", "zero-shot base"], ["tel", "whisper_base_all_r16"], ["tel", "whisper_base_all_r16_ch"],
        ["snr5", "whisper_base_all_r16"]]
    by_row = {tuple(row[:2]): row for row in table.rows}
    tel = by_row["tel", "whisper_base_all_r16_ch"]
    assert tel[2] == "30.0 [30.0, 30.0] / 1.00"  # hi: 3 of 10 words in every utterance
    assert tel[5] == "-25.0% [-25.0, -25.0]"  # 3 errors per utterance against the reference's 4
    assert by_row["tel", "whisper_base_all_r16"][5] == ""  # the reference itself
    assert by_row["clean", "whisper_base_all_r16_ch"][5] == "+0.0% [+0.0, +0.0]"
    assert by_row["tel", "zero-shot base"][4].startswith("100.0 [") and by_row["tel", "zero-shot base"][5] == ""
    write_per_utterance(exp / "whisper_base_all_r16_ch" / "decode_test_q_snr5_oracle", "test_q_snr5",
                        {u: (8 if u.endswith("hi") else 4) for u in utts})
    snr5 = {tuple(row[:2]): row for row in robustness_tables(exp)[0].rows}["snr5", "whisper_base_all_r16_ch"]
    rate, low, high = (float(x) for x in snr5[4].split(" / ")[0].replace("[", "").replace("]", "").replace(",", "").split())
    assert rate == 60.0 and low < rate < high  # utterances differ now: the interval opens
