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
