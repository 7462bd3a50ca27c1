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


def assert_same_adapters(exp_dir, reference_dir) -> None:
    """Every language's exported adapter tensors are bit-identical in the two exp dirs."""
    for lang in LANGS:
        ours = load_file(exp_dir / "adapters" / lang / "adapter_model.safetensors")
        theirs = load_file(reference_dir / "adapters" / lang / "adapter_model.safetensors")
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert torch.equal(ours[key], theirs[key]), (lang, key)


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
    assert_same_adapters(exp_dir, reference_dir)


def default_like_config(tmp_path):
    """The tiny config with the default run's training settings that touch randomness and order: LoRA
    dropout, augmentation (speed, noise), num_iters_per_epoch and a data-loader worker; step checkpoints."""
    import yaml

    from train_helpers import TINY_CONFIG

    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["lora_conf"]["dropout"] = 0.05
    config.update(augment_conf={"speed_factors": [0.9, 1.0, 1.1], "noise_prob": 0.5, "noise_snr_db": [10, 30]},
                  num_iters_per_epoch=6, batch_bins=24000, num_workers=1, save_every_n_steps=1)
    path = tmp_path / "train_tiny_steps.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_sigkill_mid_epoch_resumes_from_the_step_checkpoint_bit_identical(corpus, tmp_path):
    config = default_like_config(tmp_path)
    reference_dir, exp_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    train_lora.main(train_command(corpus, reference_dir, "--config", str(config)))

    command = train_command(corpus, exp_dir, "--config", str(config))
    step_file = exp_dir / "step_checkpoint.pth"
    process = subprocess.Popen([sys.executable, "-m", "espnet_ext.bin.train_lora", *command], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not step_file.exists():
        assert process.poll() is None, "training ended before its first step checkpoint"
        assert time.monotonic() < deadline, "no step checkpoint within the timeout"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    saved = torch.load(step_file, weights_only=False)
    assert saved["epoch"] == 1 and 1 <= saved["batches"] < 6  # killed inside the first epoch
    assert not (exp_dir / "checkpoint.pth").exists()  # so ESPnet alone would redo the whole epoch

    train_lora.main(command + ["--resume", "true"])

    resumed, uninterrupted = reporter(exp_dir), reporter(reference_dir)
    for epoch in (1, 2):  # the same number of steps in each epoch and in all
        for key in ("train", "valid"):
            assert resumed["stats"][epoch][key]["total_count"] == uninterrupted["stats"][epoch][key]["total_count"]
    assert resumed["stats"][2]["train"]["total_count"] == 12
    assert resumed["stats"][1]["train"]["loss"] == uninterrupted["stats"][1]["train"]["loss"]  # the epoch's mean
    assert_same_adapters(exp_dir, reference_dir)
