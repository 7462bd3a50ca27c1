"""Independent CPU jobs run side by side in forked one-thread processes.

On this project's 2-core CPUs, work made of small matrices (a LID head's training, a short clip's
encoder pass) gains little from torch's second thread: two one-thread processes, one per core, finish
sooner than the same jobs run one after another on two threads (README, "Language ID and routing").
The processes are forked, so they inherit what the caller holds (a loaded model, a gigabyte of cached
frames) without pickling it; only each job's index goes out and its result comes back.
"""
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Dict, List, TypeVar

import torch

Result = TypeVar("Result")
_FORKED: Dict[str, Callable] = {}  # the job function the forked processes inherit


def _run_forked(index: int):
    torch.set_num_threads(1)  # forked after the parent's OpenMP threads ran: a child starting more hangs (libgomp)
    return _FORKED["job"](index)


def forked_map(job: Callable[[int], Result], count: int, processes: int) -> List[Result]:
    """[job(0), ..., job(count - 1)], run by `processes` forked one-thread processes taking the next
    index as each finishes (so put the longest jobs first); in this process, in turn, when `processes`
    or `count` is 1. An exception in a job is raised here."""
    processes = min(processes, count)
    if processes <= 1:
        return [job(index) for index in range(count)]
    _FORKED["job"] = job
    try:
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_run_forked, range(count)))
    finally:
        _FORKED.clear()
