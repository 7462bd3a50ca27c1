"""forked_map: jobs in forked one-thread processes, results in order, errors raised in the caller."""
import multiprocessing
import os

import pytest
import torch

from espnet_ext.parallel import forked_map


def test_forked_jobs_run_in_one_thread_processes_of_their_own_and_return_in_order():
    parent, held = os.getpid(), list(range(1000))  # what the caller holds reaches the jobs by fork
    both = multiprocessing.get_context("fork").Barrier(2)  # jobs 0 and 1 pass it only when running side by side

    def job(i):
        if i < 2 and os.getpid() != parent:
            both.wait(timeout=60)
        return i, sum(held[: i + 1]), os.getpid(), torch.get_num_threads()

    results = forked_map(job, 5, processes=2)
    assert [(i, total) for i, total, _, _ in results] == [(i, i * (i + 1) // 2) for i in range(5)]
    assert all(pid != parent for _, _, pid, _ in results) and len({pid for _, _, pid, _ in results}) == 2
    assert {threads for *_, threads in results} == {1}
    assert [pid for _, _, pid, _ in forked_map(job, 3, processes=1)] == [parent] * 3  # one process: in turn, here


def test_a_failing_job_raises_in_the_caller():
    def job(i):
        if i == 2:
            raise ValueError("job 2 failed")
        return i

    with pytest.raises(ValueError, match="job 2 failed"):
        forked_map(job, 4, processes=2)
