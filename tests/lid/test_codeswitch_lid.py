"""Switch detection metrics, and the code-switch LID CLI end to end on the tiny random Whisper."""
import json

import numpy as np
import pytest
import soundfile as sf

from espnet_ext.bin import codeswitch_lid, train_lid
from espnet_ext.bin.codeswitch_lid import evaluate_set, match_switches
from espnet_ext.data.kaldi import LanguageSegment as Seg
from espnet_ext.data.kaldi import Utterance, write_data_dir, write_segments_lang
from espnet_ext.lid.segments import language_at
from train_helpers import chirp, make_corpus


def test_switches_match_one_to_one_within_the_tolerance():
    assert match_switches([1.0, 3.0], [1.2, 1.3, 5.0]) == pytest.approx([0.2])  # 3.0 has none within 0.5 s
    assert match_switches([1.0, 1.4], [1.2]) == pytest.approx([0.2])  # one predicted switch counts once
    assert match_switches([2.0], [2.6]) == []


def test_set_metrics_count_detections_misses_false_switches_and_segments():
    truth = {"u1": [Seg(0, 2, "hi"), Seg(2, 4, "en")], "u2": [Seg(0, 1, "te"), Seg(1, 3, "it"), Seg(3, 6, "te")]}
    predicted = {"u1": [Seg(0, 2.1, "hi"), Seg(2.1, 3, "en"), Seg(3, 4, "pa")],  # one right, one false
                 "u2": [Seg(0, 3.2, "te"), Seg(3.2, 6, "it")]}  # first switch missed, second detected (0.2 s)
    frames = {u: 50 * int(s[-1].end) for u, s in truth.items()}
    metrics = evaluate_set(truth, predicted, {u: language_at(s, frames[u]) for u, s in truth.items()},
                           {u: language_at(s, frames[u]) for u, s in predicted.items()}, seconds=10.0)
    assert metrics["switches"] == 3 and metrics["missed"] == 1 and metrics["detected"] == pytest.approx(2 / 3)
    assert metrics["false_per_min"] == pytest.approx((3 - 2) / (10 / 60))  # 3 predicted, 2 matched
    assert metrics["boundary_ms_median"] == pytest.approx(150, abs=1)  # errors 100 and 200 ms
    assert metrics["segment_accuracy"] == pytest.approx(2 / 5)  # u1: hi, en right; u2: te right, it, te wrong


def test_cli_writes_the_table_segments_and_the_plot(tmp_path):
    data = make_corpus(tmp_path)
    train_lid.main(["--model", "whisper_tiny_random", "--layer", "1", "--train_dir", str(data), "--dev_dir",
                    str(data), "--test_dir", str(data), "--out_dir", str(tmp_path / "lid"), "--heads", "linear",
                    "--epochs", "2", "--threads", "1"])
    pieces = [("hi", chirp(1.5, 0)), ("it", chirp(2.0, 7))]
    wave = np.concatenate([w for _, w in pieces])
    (tmp_path / "cs").mkdir()
    sf.write(str(tmp_path / "cs" / "u.wav"), wave, 16000, subtype="FLOAT")
    cs = tmp_path / "test_cs_inter"
    write_data_dir(cs, [Utterance("cs-s1-u", "cs-s1", "x y", "it", str(tmp_path / "cs" / "u.wav"), len(wave) / 16000)])
    write_segments_lang(cs, {"cs-s1-u": [Seg(0.0, 1.5, "hi"), Seg(1.5, 3.5, "it")]})
    out = tmp_path / "cs_lid"
    codeswitch_lid.main(["--model", "whisper_tiny_random", "--lid_dir", str(tmp_path / "lid" / "linear"),
                         "--data_dir", str(cs), "--out_dir", str(out), "--penalties", "0", "1000", "--min_segments", "0", "4", "--threads", "1"])
    results = json.loads((out / "cs_lid.json").read_text())["test_cs_inter"]
    assert set(results) == {"0_0", "0_4", "1000_0", "1000_4"} and all(r["switches"] == 1 for r in results.values())
    for setting in ("1000_0", "0_4"):  # no switch at that price, nor when a segment must outlast the 3.5 s recording
        never = json.loads((out / "test_cs_inter" / f"segments_{setting}.json").read_text())["cs-s1-u"]
        assert len(never) == 1 and never[0][1] == pytest.approx(wave.size / 16000, abs=0.03)
        assert results[setting]["missed"] == 1 and results[setting]["false_per_min"] == 0
    assert (out / "test_cs_inter.png").stat().st_size > 5000 and "| test_cs_inter | 1000 | 4 |" in (out / "cs_lid.md").read_text()


@pytest.mark.parametrize("option", [["--penalties", "64", "-5"], ["--min_segments", "-1"]])
def test_a_negative_penalty_or_minimum_is_refused(option, capsys):
    with pytest.raises(SystemExit):
        codeswitch_lid.main(["--model", "whisper_tiny_random", "--lid_dir", "x", "--data_dir", "x", "--out_dir", "x",
                             *option])
    assert f"{option[0]} " in capsys.readouterr().err
