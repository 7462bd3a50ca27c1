"""One training per exp dir: a second train_lora on a dir being trained stops at once, naming the holder,
and writes nothing there; a holder killed with SIGKILL leaves no stale lock."""
import os
import signal
import subprocess
import sys

import pytest

from espnet_ext.bin import train_lora
from train_helpers import train_command

HOLD = """
import sys, time
from espnet_ext.fileio import exclusive_lock
with exclusive_lock(sys.argv[1], "training dir"):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_lock(exp_dir):
    """A process holding exp_dir's training lock (as a running train_lora does), once it says so."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(exp_dir / train_lora.TRAIN_LOCK)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_training_on_a_busy_exp_dir_stops_naming_the_holder(corpus, tmp_path):
    exp_dir = tmp_path / "exp"
    holder = hold_lock(exp_dir)
    try:
        with pytest.raises(SystemExit) as stopped:
            train_lora.main(train_command(corpus, exp_dir))
        message = str(stopped.value.code)
        assert message.startswith("train_lora.py: ") and f"pid {holder.pid} " in message
        assert str(exp_dir / ".train.lock") in message and "\n" not in message
        assert sorted(p.name for p in exp_dir.iterdir()) == [".train.lock"]  # nothing written, nothing overwritten
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    from espnet_ext.fileio import exclusive_lock

    holder = hold_lock(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with exclusive_lock(tmp_path / train_lora.TRAIN_LOCK, "training dir"):  # free again
        assert (tmp_path / train_lora.TRAIN_LOCK).read_text().startswith(f"pid {os.getpid()} on ")
