"""recipe_info's threads: decided where the job runs, from what the job was given."""
import os

from espnet_ext.bin.recipe_info import threads


def test_threads_come_from_the_jobs_allocation_then_its_runner_then_the_cores(monkeypatch):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads(1) == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # a run.pl job with --num-threads 4
    assert threads(2) == 2
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")  # a Slurm job's allocation wins
    assert threads(1) == 3 and threads(4) == 1


def test_the_recipe_shell_leaves_the_threads_to_the_cores_and_the_runners():
    """path.sh once set OMP_NUM_THREADS=1, which `recipe_info threads` then read as a job's allotment: every
    training ran on one thread, however many cores the machine had (16 on a GPU machine)."""
    import subprocess
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[2] / "egs2" / "multilingual_lora" / "asr1"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK")}
    done = subprocess.run(["bash", "-c", ". ./path.sh && python -m espnet_ext.bin.recipe_info threads --nj 1"],
                          cwd=recipe, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(os.sched_getaffinity(0))
