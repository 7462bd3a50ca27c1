"""A run killed with SIGKILL after its first checkpoint resumes to exactly the uninterrupted result."""
import os
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

from espnet_ext.bin import train_lora

from train_helpers import REPO, train_command

LANGS = ["hi", "pa", "te", "it"]


def reporter(exp_dir):
    return torch.load(exp_dir / "checkpoint.pth", weights_only=False)["reporter"]


def kill_after_first_checkpoint(command, exp_dir, timeout: float = 180.0) -> None:
    """Start train_lora in a subprocess and SIGKILL it as soon as checkpoint.pth exists."""
    process = subprocess.Popen([sys.executable, "-m", "espnet_ext.bin.train_lora", *command], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not (exp_dir / "checkpoint.pth").exists():
        if process.poll() is not None:
            raise AssertionError(f"training ended before its first checkpoint: {process.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, "no checkpoint.pth within the timeout"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()


def test_sigkill_mid_training_then_resume_matches_the_uninterrupted_run(trained, corpus, tmp_path):
    reference_dir, _ = trained
    exp_dir = tmp_path / "exp"
    command = train_command(corpus, exp_dir)
    kill_after_first_checkpoint(command, exp_dir)
    before = reporter(exp_dir)
    assert before["epoch"] < 2, "the run finished before the kill: nothing was interrupted"
    assert not (exp_dir / "adapters").exists()

    train_lora.main(command + ["--resume", "true"])

    resumed, uninterrupted = reporter(exp_dir), reporter(reference_dir)
    assert sorted(resumed["stats"]) == sorted(uninterrupted["stats"]) == [1, 2]
    assert resumed["stats"][1] == before["stats"][1]  # epoch 1 came from the checkpoint (timings too), not rerun
    for epoch in (1, 2):
        assert resumed["stats"][epoch]["train"]["total_count"] == uninterrupted["stats"][epoch]["train"]["total_count"]
    for lang in LANGS:
        ours = load_file(exp_dir / "adapters" / lang / "adapter_model.safetensors")
        theirs = load_file(reference_dir / "adapters" / lang / "adapter_model.safetensors")
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert torch.equal(ours[key], theirs[key]), (lang, key)
