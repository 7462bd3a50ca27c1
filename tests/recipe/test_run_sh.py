"""The recipe end to end on a tiny corpus, as ESPnet's mini_an4 CI does: data prep, zero-shot
decoding with the real converted Whisper base, sclite scoring, RESULTS.md; then a rerun is skipped."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[2] / "egs2" / "multilingual_lora" / "asr1"


def run_recipe(tmp_path, *args):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = ["./run.sh", "--datadir", str(tmp_path / "data"), "--expdir", str(tmp_path / "exp"), *args]
    return subprocess.run(cmd, cwd=RECIPE, env=env, capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
def test_run_sh_end_to_end_with_whisper_base(tmp_path):
    done = run_recipe(tmp_path, "--tts_utts_per_split", "2", "--nj", "2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    exp = tmp_path / "exp" / "whisper_base_zeroshot"
    for lang in ("hi", "pa", "te", "it"):
        decode_dir = exp / f"decode_test_{lang}_none"
        hyps = (decode_dir / "text").read_text(encoding="utf-8").splitlines()
        assert len(hyps) == 2 and all(len(h.split(" ", 1)) == 2 for h in hyps), hyps
        assert "Sum/Avg" in (decode_dir / "score_wer" / "result.txt").read_text(encoding="utf-8")
        summary = (decode_dir / "result.txt").read_text(encoding="utf-8")
        assert "WER" in summary and "CER" in summary
        scores = json.loads((decode_dir / "scores.json").read_text(encoding="utf-8"))
        assert scores[lang]["utterances"] == 2 and scores[lang]["wer"]["ref_tokens"] > 0
    it_scores = json.loads((exp / "decode_test_it_none" / "scores.json").read_text(encoding="utf-8"))
    assert it_scores["it"]["cer"]["rate"] < 40  # Whisper base already reads espeak Italian fairly well
    results = (tmp_path / "exp" / "RESULTS.md").read_text(encoding="utf-8")
    assert all(f"test_{lang}" in results for lang in ("hi", "pa", "te", "it"))

    rerun = run_recipe(tmp_path, "--tts_utts_per_split", "2", "--stop_stage", "5")
    assert rerun.returncode == 0
    assert "already prepared" in rerun.stdout and "already decoded" in rerun.stdout


def test_unknown_option_is_refused_by_name(tmp_path):
    done = run_recipe(tmp_path, "--no_such_option", "1")
    assert done.returncode != 0
    assert "--no_such_option" in done.stderr + done.stdout


def test_unknown_language_is_refused(tmp_path):
    done = run_recipe(tmp_path, "--lang", "xx", "--stage", "5")
    assert done.returncode != 0
    assert "unknown language code 'xx'" in done.stderr + done.stdout
