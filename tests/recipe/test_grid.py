"""The experiment grid (espnet_ext/grid.py, run.sh --grid): the task table from a grid file, and the tiny
2 models x 2 languages x 2 ranks grid end to end through the real one-node Slurm of tests/slurm/."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from espnet_ext import grid
from espnet_ext.errors import UserError
from train_helpers import make_corpus

from test_run_sh import RECIPE, run_recipe

REPO = RECIPE.parents[2]


def write_grid(tmp_path, **changes) -> Path:
    spec = yaml.safe_load((REPO / "conf" / "grid_tiny.yaml").read_text())
    spec.update(changes)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_the_plan_grid_has_80_tasks_each_rank_through_the_training_options(tmp_path):
    spec = grid.read_grid(REPO / "conf" / "grid.yaml")
    tasks = grid.expand(spec, Path("exp"), Path("data"))
    assert len(tasks) == 80 and [t.index for t in tasks] == list(range(1, 81))
    assert len({t.exp_dir for t in tasks}) == 80
    last = tasks[-1]
    assert (last.model, last.lang, last.rank, last.exp_dir) == ("owsm_v4_medium", "it", 64, "exp/owsm_v4_medium_it_r64")
    assert "--lora_rank 64 --lora_alpha 128" in last.command("train")[last.command("train").index("--train_args") + 1]
    assert last.command("decode")[-8:] == ["--ngpu", "1", "--stage", "5", "--stop_stage", "6", "--routings", "oracle"]
    assert last.result == Path("exp/owsm_v4_medium_it_r64/decode_test_it_oracle/result.txt")


@pytest.mark.parametrize("change, message", [
    ({"langs": ["hi", "xx"]}, "langs ['xx'] are not adapter languages"),
    ({"models": {"whisper_tiny_random": {}}}, "model whisper_tiny_random needs a 'train_config'"),
    ({"rank": [4]}, "unknown key(s) ['rank']"),
    ({"resources": {"train": {"memory": "4G"}}}, "resources.train: give {mem, num_threads, gpu, time}"),
])
def test_a_bad_grid_file_is_one_error_naming_it(tmp_path, change, message):
    path = write_grid(tmp_path, **change)
    with pytest.raises(UserError, match=rf"^{path}: .*") as err:
        grid.read_grid(path)
    assert message in str(err.value)


@pytest.mark.usefixtures("slurm")
def test_dry_run_prints_the_task_table_and_the_sbatch_scripts_and_submits_nothing(tmp_path):
    done = run_recipe(tmp_path, "--stage", "3", "--grid", "conf/grid.yaml", "--cmd", "slurm.pl", "--dry_run", "true")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "80\towsm_v4_medium\tit\t64\tconf/tuning/train_lora_owsm_v4_r16.yaml\t" in done.stdout
    calls = [line for line in done.stdout.splitlines() if line.startswith("'sbatch'")]
    assert len(calls) == 3  # training, decoding, results
    assert "'--array=1-80%16'" in calls[0] and "'--gres=gpu:1'" in calls[0] and "'--partition=gpu'" in calls[0]
    assert "'--dependency=aftercorr:<train array id>'" in calls[1]
    assert "'--dependency=afterany:<decode array id>'" in calls[2] and "gres" not in calls[2]
    assert "--phase train --task JOB" in done.stdout.replace("'", "")
    assert not (tmp_path / "exp" / "grid" / "plan80" / "submissions.json").exists()


def _scontrol(job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout


def _wait_for_queue_to_empty(job_ids, timeout=1800):
    end = time.time() + timeout
    while time.time() < end:
        out = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids)], capture_output=True, text=True).stdout
        if not out.strip():
            return
        time.sleep(3)
    raise AssertionError(f"jobs {job_ids} still queued after {timeout} s")


@pytest.mark.slow
@pytest.mark.usefixtures("slurm")
def test_the_tiny_grid_runs_through_slurm_and_a_rerun_submits_only_what_did_not_finish(tmp_path):
    """Submitted without blocking; decode task i depends on training task i (aftercorr); training task 8 is
    cancelled at once (as a node failure would), which cancels its decoding only; the other 7 produce their
    result.txt and the table; a rerun submits task 8 alone and completes the grid."""
    for split in ("train", "dev", "test"):
        for lang in ("hi", "te"):
            make_corpus(tmp_path / "data", f"{split}_{lang}", languages=(lang,))
    path = write_grid(tmp_path)
    started = time.time()
    done = run_recipe(tmp_path, "--stage", "3", "--grid", str(path), "--cmd", "slurm.pl")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    grid_dir = tmp_path / "exp" / "grid" / "tiny"
    train, decode, results = json.loads((grid_dir / "submissions.json").read_text())
    assert (train["phase"], decode["phase"], results["phase"]) == ("train", "decode", "results")
    subprocess.run(["scancel", f"{train['job_id']}_8"], check=True)
    assert f"Dependency=aftercorr:{train['job_id']}" in _scontrol(decode["job_id"])
    assert f"Dependency=afterany:{decode['job_id']}" in _scontrol(results["job_id"])
    assert time.time() - started < 120  # it returned while the arrays were queued: it did not wait for them
    _wait_for_queue_to_empty([train["job_id"], decode["job_id"], results["job_id"]])

    tasks = grid.read_tasks(grid_dir)[1]
    assert [t.index for t in tasks if t.done()] == [1, 2, 3, 4, 5, 6, 7]
    assert not (grid_dir / "log" / "decode.8.log").exists()  # its decoding was cancelled, never run
    for n in range(1, 8):
        text = (grid_dir / "log" / f"decode.{n}.log").read_text()
        assert f"SLURM_ARRAY_JOB_ID={decode['job_id']} SLURM_ARRAY_TASK_ID={n} " in text
        assert "# Ended (code 0)" in text
    status = subprocess.run([sys.executable, "local/grid_status.py", str(grid_dir)], cwd=RECIPE,
                            capture_output=True, text=True)
    assert status.stdout.splitlines()[-1] == "7 done, 1 not run", status.stdout
    table = (grid_dir / "RESULTS.md").read_text()
    assert "| 8 | owsm_tiny_random | te | 4 | not run |  |  |  |" in table
    assert "| 5 | owsm_tiny_random | hi | 2 | done |" in table

    again = run_recipe(tmp_path, "--stage", "3", "--grid", str(path), "--cmd", "slurm.pl")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "0 done" not in again.stdout and "7 done, submitting [8]" in again.stdout + again.stderr
    rerun = json.loads((grid_dir / "submissions.json").read_text())[3:]
    assert [s["tasks"] for s in rerun] == [[8], [8], [8]]
    _wait_for_queue_to_empty([s["job_id"] for s in rerun])
    assert all(t.done() for t in grid.read_tasks(grid_dir)[1])
    rows = [line for line in (grid_dir / "RESULTS.md").read_text().splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 8 and all("| done |" in row for row in rows)
    for row in rows:  # WER and CER read from the task's own scores.json
        index = int(row.split("|")[1])
        scores = json.loads((Path(tasks[index - 1].exp_dir) / "decode_test_" f"{tasks[index - 1].lang}_oracle"
                             / "scores.json").read_text())["scores"]["all"]
        assert row.rstrip(" |").endswith(f"{scores['wer']['rate']:.2f} | {scores['cer']['rate']:.2f}")


def test_wandb_runs_get_the_grid_as_project_and_the_test_scores_in_their_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path))
    spec = grid.read_grid(write_grid(tmp_path, wandb=True))
    task = grid.expand(spec, tmp_path / "exp", tmp_path / "data")[0]
    train_args = task.command("train")[task.command("train").index("--train_args") + 1]
    assert train_args.endswith("--use_wandb true --wandb_project tiny --wandb_name whisper_tiny_random_hi_r2 "
                               "--wandb_id tiny-whisper_tiny_random_hi_r2")
    scores = task.result.parent / "scores.json"
    scores.parent.mkdir(parents=True)
    scores.write_text(json.dumps({"scores": {"all": {"wer": {"rate": 41.5}, "cer": {"rate": 12.25}}}}))
    grid.log_final_scores(spec, task)
    (run,) = Path(task.exp_dir).glob("wandb/offline-run-*-tiny-whisper_tiny_random_hi_r2/run-*.wandb")
    record, deadline = run.read_bytes(), time.monotonic() + 60  # W&B's own record: summary values, group, tags
    while b"test/wer" not in record and time.monotonic() < deadline:  # its service may still be writing (CI under load)
        time.sleep(0.5)
        record = run.read_bytes()
    assert b"test/wer" in record and b"41.5" in record and b"12.25" in record
    assert b"whisper_tiny_random" in record and b"r2" in record


@pytest.mark.slow
@pytest.mark.usefixtures("slurm")
def test_run_sh_with_cmd_slurm_pl_runs_each_job_through_slurm(tmp_path):
    """The design card's `./run.sh --cmd slurm.pl`: stage by stage, each job an array task of Slurm's, waited for."""
    make_corpus(tmp_path / "data", "test_all")
    done = run_recipe(tmp_path, "--model", "whisper_tiny_random", "--stage", "5", "--stop_stage", "6", "--nj", "2",
                      "--routings", "none", "--test_sets", "test_all", "--cmd", "slurm.pl")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    decode = tmp_path / "exp" / "whisper_tiny_random_zeroshot" / "decode_test_all_none"
    for n in (1, 2):
        log = (decode / "log" / f"decode.{n}.log").read_text()
        assert f"SLURM_ARRAY_TASK_ID={n} " in log and "# Ended (code 0)" in log
    assert "SLURM_JOB_ID=" in (decode / "log" / "score.log").read_text()
    assert json.loads((decode / "scores.json").read_text())["scores"]["all"]["utterances"] == 8
    job = _scontrol((decode / "log" / "q" / "decode.job_id").read_text().split()[0])
    assert "MinMemoryNode=8G" in job  # cmd.sh's decode_cmd for the slurm backend: slurm.pl --mem 8G
    assert "TresPerNode=gres" not in job  # --ngpu 0: no GPU asked for
