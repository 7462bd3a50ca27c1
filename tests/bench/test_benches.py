"""The benchmarks run end to end on two tiny clips with the real Whisper base (no timing asserted: CI's
cores are shared): every row is printed, with the work it did (generated tokens, steps) within the limits
that make the rows comparable."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import make_corpus

ROOT = Path(__file__).resolve().parents[2]


def table_rows(out: str):
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| system") and not line.startswith("| targets")]


@pytest.mark.slow
def test_decode_speed_prints_every_system_with_its_tokens_and_scores(tmp_path, capsys):
    import decode_speed

    make_corpus(tmp_path, "test_hi", languages=("hi",))
    decode_speed.main(["--data_root", str(tmp_path), "--langs", "hi", "--per_lang", "2", "--wer_per_lang", "2",
                       "--repeats", "1", "--max_new_tokens", "12", "--batch_size", "2"])
    rows = table_rows(capsys.readouterr().out)
    assert [r[0] for r in rows] == ["ours, 30 s window", "ours, real length", "ours, real length, int8 decoder",
                                    "ours, real length, int8", "ours, 30 s window, int8", "openai-whisper transcribe", "faster-whisper fp32", "faster-whisper int8",
                                    "CTranslate2 batched generate"]
    for name, _, seconds, rtf, ratio, tokens, wer, cer in rows:
        # equal work: no system generates more than the common limit (two clips; re-encoding a
        # transcript may merge or split a token at the edges, hence the slack of one per clip)
        assert 0 <= int(tokens) <= 2 * (12 + 1), name
        assert float(seconds) > 0 and float(wer) >= 0 and float(cer) >= 0
    assert rows[1][4] == "1.00x"  # the baseline row


@pytest.mark.slow
def test_decode_speed_only_measures_the_rows_asked_for_and_the_baseline(tmp_path, capsys):
    import decode_speed

    make_corpus(tmp_path, "test_hi", languages=("hi",))
    decode_speed.main(["--data_root", str(tmp_path), "--langs", "hi", "--per_lang", "1", "--wer_per_lang", "1",
                       "--repeats", "1", "--max_new_tokens", "4", "--only", "int8 decoder"])
    assert [r[0] for r in table_rows(capsys.readouterr().out)] == ["ours, real length", "ours, real length, int8 decoder"]


@pytest.mark.slow
def test_train_throughput_prints_every_row_on_equal_steps_after_checking_logits(tmp_path, capsys, monkeypatch):
    import train_throughput

    for lang in ("hi", "te"):
        make_corpus(tmp_path, f"train_{lang}", languages=(lang,))
    monkeypatch.setattr("sys.argv", ["train_throughput.py", "--data_root", str(tmp_path), "--langs", "hi", "te",
                                     "--clips_per_lang", "1", "--batch_size", "1", "--repeats", "1",
                                     "--targets", "qv"])
    train_throughput.main()
    out = capsys.readouterr().out
    assert float(re.search(r"max \|logit diff\| (\S+)", out).group(1)) <= 1e-3
    rows = table_rows(out)
    assert [(r[1], r[2]) for r in rows] == [("ours joint, 2-adapter bank", "real length"),
                                            ("ours, 2 single-adapter runs", "real length"),
                                            ("ours joint, 2-adapter bank", "30 s"), ("HF PEFT, 2 runs", "30 s")]
    assert {r[0] for r in rows} == {"qv (36 linears)"} and {r[3] for r in rows} == {"2"}
    assert rows[3][6] == "1.00x"


def gpu_sh(*args: str) -> "subprocess.CompletedProcess":
    return subprocess.run(["bash", "bench/gpu.sh", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable}, timeout=900)


@pytest.mark.slow
def test_the_gpu_speed_script_dry_run_prints_every_row_on_cpu():
    """bench/gpu.sh --dry_run speed: the tiny random model through every training and decoding row (CPU)."""
    done = gpu_sh("--dry_run", "speed")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = table_rows(done.stdout)
    assert [r[0] for r in rows] == ["ours, real length (2 s), batch 2", "ours, 30 s window, batch 2",
                                    "HF PEFT, 30 s window, batch 2", "HF PEFT, 30 s window, batch 3",
                                    "ours, real length (2 s)", "ours, 30 s window", "HF generate, 30 s window"]
    assert all(float(r[1]) > 0 for r in rows)
    assert {r[4] for r in rows[:4]} == {"n/a"}  # no MFU without a GPU's peak
    for bad_args in (["--frobnicate"], ["--dry_run"], ["--dry_run", "decode"]):
        bad = gpu_sh(*bad_args)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad_args


@pytest.mark.slow
def test_the_gpu_training_script_dry_run_runs_the_grid_and_reads_the_trainers_throughput_on_cpu():
    """bench/gpu.sh --dry_run train: the small corpus made, a one-task grid trained, decoded and scored, and
    the tiny model's stage 3 read back from its epochs' throughput lines (CPU)."""
    done = gpu_sh("--dry_run", "train")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "every job on 0 GPU(s): 1 of 1 tasks trained, decoded and scored in " in done.stdout
    (row,) = [r for r in table_rows(done.stdout) if r[0] == "fp32"]
    assert row[1] == "4"  # 2 epochs of 2 steps, summed from the two epochs' lines
    assert float(row[2]) > 0 and row[4] == "1.00x" and row[5] == "nan"  # no GPU memory on the CPU


def test_lid_training_times_the_same_crops_in_drawn_order_and_in_length_batches(tmp_path, capsys):
    """On a tap-frame cache as stage 4 writes it (float16 matrices in a kaldiio ark, utt2lang, utt2dur): both rows,
    and batches by length compute on far fewer padded frames than the same crops in drawn order."""
    import numpy as np

    import lid_training
    from espnet_ext.lid.features import FrameFeatures, save_frame_cache

    rng = np.random.default_rng(0)
    for name in ("train_all", "train_all_crops_0.5-2s_1"):
        frames = [rng.normal(size=(int(rng.integers(25, 250)), 8)).astype(np.float32) for _ in range(96)]
        save_frame_cache(FrameFeatures([f"{name}-{i}" for i in range(96)], [("hi", "pa", "te", "it")[i % 4] for i in range(96)],
                                       np.array([len(m) / 50 for m in frames]), frames), tmp_path / name)
    lid_training.main(["--feats_dir", str(tmp_path), "--repeats", "1", "--threads", "1"])
    out = capsys.readouterr().out
    padding = {name: float(share) for name, share in re.findall(r"^ *(.+): .* ([0-9.]+)% of the", out, re.M)}
    assert "192 crops of 192 training items" in out
    assert set(padding) == {"drawn order", "length batches, pooled by sums", "length batches, scorer 128 wide",
                            "length batches"}
    assert padding["length batches"] == padding["length batches, pooled by sums"] < 20 < 40 < padding["drawn order"]
    assert padding["length batches, scorer 128 wide"] == padding["length batches"]
    assert re.search(r"^drawn order / length batches: [0-9.]+x", out, re.M)
    assert re.search(r"^length batches, pooled by sums / length batches: [0-9.]+x", out, re.M)
    assert re.search(r"^length batches, scorer 128 wide / length batches: [0-9.]+x", out, re.M)
    with pytest.raises(SystemExit, match="no train\\*/feats.scp under"):
        lid_training.main(["--feats_dir", str(tmp_path / "nothing")])


@pytest.mark.slow
def test_lid_extraction_times_the_same_caches_in_turn_and_side_by_side(tmp_path, capsys):
    import lid_extraction

    data = make_corpus(tmp_path)
    lid_extraction.main(["--model", "whisper_tiny_random", "--layer", "1", "--data_dir", str(data), "--repeats", "1",
                         "--threads", "2"])
    out = capsys.readouterr().out
    rows = dict(re.findall(r"^ *(.+): +([0-9.]+) s$", out, re.M))
    assert set(rows) == {"one process, 2 threads, one cache after another", "2 one-thread processes side by side"}
    assert all(float(s) >= 0 for s in rows.values()) and "whole and in 0.5-2 s stretches" in out
    assert re.search(r"^one after another / side by side: [0-9.]+x$", out, re.M)
