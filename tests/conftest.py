"""The suite's shared setup: the one-node Slurm cluster of tests/slurm/ for the tests that submit jobs
(fixture `slurm`), and how the suite shares the cores when pytest-xdist runs it on several workers
(pytest.ini's `-n auto`)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

START = Path(__file__).resolve().parent / "slurm" / "start.sh"


def pytest_configure(config):
    """Under xdist each worker gets its share of the cores as OMP_NUM_THREADS, set before torch is imported
    and inherited by the recipe's jobs (`recipe_info threads` reads it), so two workers on two cores run one
    thread each instead of four threads fighting over two."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // workers))


def pytest_collection_modifyitems(config, items):
    """The modules with slow tests first (each module's tests kept together, so its module-scoped fixtures
    are built once), so the workers start on the long ones and the short ones fill in at the end; every
    test that submits to Slurm in one xdist group (`--dist loadgroup`), so they share the one-node cluster
    one at a time, as they were written to."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
    for item in items:
        if "slurm" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("slurm"))


def _slurm_answers() -> bool:
    return shutil.which("sinfo") is not None and subprocess.run(
        ["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0


@pytest.fixture(scope="session")
def slurm():
    """A running Slurm: the one already answering, else tests/slurm/start.sh's (needs root and Debian's
    slurm-wlm and munge, which install.sh installs). Where neither is possible the test is skipped,
    except under REQUIRE_SLURM=1 (set by .ci/run), where it fails: CI must never skip these silently."""
    if not _slurm_answers() and shutil.which("slurmctld") and os.geteuid() == 0:
        subprocess.run([str(START)], check=False, timeout=120)
    if not _slurm_answers():
        reason = "no Slurm answers here (as root: apt-get install slurm-wlm munge; tests/slurm/start.sh)"
        if os.environ.get("REQUIRE_SLURM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
