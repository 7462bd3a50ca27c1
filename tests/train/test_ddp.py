"""Several processes through ESPnet's own distributed path (torch DDP), on CPUs: train_lora started by
torchrun, 2 processes, gloo, trains what the one-process run trains.

ESPnet builds each batch from the global `batch_bins` and gives rank r the utterances r, r + 2, ... of
it; it weights each rank's loss by its share of the batch and undoes DDP's averaging over ranks, so
the gradient is the one-process run's gradient of the whole batch. Every rank seeds the same
(`--seed`, then seed + epoch), DDP starts every rank from rank 0's weights, and this config has no
dropout or augmentation. The padded length does not matter either: the encoder reads each utterance
up to its own length and the decoder masks its padding. So the adapters must match the one-process
run's (fixture `trained`, the same command without torchrun) up to the order of float sums: the
all-reduce adds two half-batch gradients where one process sums the whole batch. Measured: 1.6e-6
(norm of the difference over the norm of the tensor, worst tensor of 96) after 4 AdamW steps.

With random draws in training (lora_conf dropout, specaug, augment_conf) the two runs differ as two
seeds do: each rank draws from the same seed for its half of the batch, not the draws of one process
for the whole batch (lora_conf dropout=0.1: 0.74 on this measure). Such a run is as good, not the same.
"""
import os
import re
import signal
import socket
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from espnet_ext.train.pipeline import TrainOptions, espnet_command, launched_rank

from train_helpers import REPO, TINY_CONFIG, train_command

LANGS = ["hi", "pa", "te", "it"]
RELATIVE_TOLERANCE = 1e-5  # float summation order only (module docstring); measured 1.6e-6
STEP_LINE = re.compile(r"(\d+epoch:train:\d+-\d+batch):.*?\bloss=([-+.e\d]+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(command, log_dir, nproc=2, timeout=300):
    """train_lora under `torchrun --nproc_per_node nproc` (static rendezvous on a free local port);
    each rank's stdout/stderr under log_dir. Returns {local rank: its stderr}."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                "--log_dir", str(log_dir), "--redirects", "3"]
    process = subprocess.Popen([*launcher, "-m", "espnet_ext.bin.train_lora", *command], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # a rank that hangs in a collective: stop the launcher and its workers
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
    logs = {int(path.parent.name): path.read_text() for path in log_dir.glob("*/attempt_0/*/stderr.log")}
    assert process.returncode == 0, f"torchrun exit {process.returncode}:\n{output[-3000:]}\n" + "\n".join(
        f"--- rank {rank} ---\n{text[-3000:]}" for rank, text in sorted(logs.items()))
    return logs


@pytest.fixture(scope="module")
def ddp_run(corpus, tmp_path_factory):
    """The tiny 2-epoch training of fixture `trained`, by 2 CPU processes: (exp_dir, {rank: its log})."""
    root = tmp_path_factory.mktemp("ddp")
    exp_dir = root / "exp"
    return exp_dir, torchrun(train_command(corpus, exp_dir), root / "logs")


def steps(log: str):
    """ESPnet's training-step log lines of one rank: [(which step, its loss)] (log_interval 1)."""
    return STEP_LINE.findall(log)


@pytest.mark.slow  # with the next one: a torchrun of 2 trainings, 22 s on 2 idle cores
def test_two_processes_step_together_and_only_rank_0_writes(ddp_run):
    exp_dir, logs = ddp_run
    assert sorted(logs) == [0, 1]
    config = yaml.safe_load((exp_dir / "config.yaml").read_text())
    assert config["distributed"] is True and config["dist_backend"] == "gloo"  # ESPnet's DDP, not one process
    # 2 epochs x 2 batches each, the same steps on both ranks, with the same (all-reduced) batch losses
    assert [step for step, _ in steps(logs[0])] == [f"{e}epoch:train:{i}-{i}batch" for e in (1, 2) for i in (1, 2)]
    assert steps(logs[1]) == steps(logs[0])
    assert all(f"exported {lang} -> " in logs[0] for lang in LANGS)
    assert "exported" not in logs[1]  # nor did it take the exp dir's training lock: it would have stopped rank 0


@pytest.mark.slow
def test_ddp_adapters_match_the_one_process_run_of_the_same_global_batch(ddp_run, trained):
    ddp_dir, _ = ddp_run
    single_dir, _ = trained
    worst = 0.0
    for lang in LANGS:
        ddp = load_file(ddp_dir / "adapters" / lang / "adapter_model.safetensors")
        single = load_file(single_dir / "adapters" / lang / "adapter_model.safetensors")
        assert sorted(ddp) == sorted(single)
        for name, expected in single.items():
            assert expected.norm() > 0, name
            worst = max(worst, ((ddp[name] - expected).norm() / expected.norm()).item())
    print(f"max relative difference DDP vs one process: {worst:.2e}")
    assert worst < RELATIVE_TOLERANCE
    ddp_epochs = torch.load(ddp_dir / "checkpoint.pth", weights_only=False)["reporter"]["stats"]
    single_epochs = torch.load(single_dir / "checkpoint.pth", weights_only=False)["reporter"]["stats"]
    for epoch in (1, 2):  # the epoch's losses as ESPnet reports them (all-reduced over the ranks)
        for phase in ("train", "valid"):
            assert ddp_epochs[epoch][phase]["loss"] == pytest.approx(single_epochs[epoch][phase]["loss"], rel=1e-5)


def options(ngpu, *espnet_args):
    return TrainOptions(model="whisper_tiny_random", train_dir=REPO, valid_dir=REPO, exp_dir=REPO, config=TINY_CONFIG,
                        ngpu=ngpu, espnet_args=list(espnet_args))


# srun's second task of two, one task a node (ESPnet's way with Slurm: each task spawns its node's processes)
SLURM_NODE_1_OF_2 = {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_NODEID": "1", "SLURM_LOCALID": "0",
                     "SLURM_STEP_NUM_NODES": "2", "SLURM_STEP_NODELIST": "node[1-2]", "MASTER_PORT": "29500"}
TORCHRUN_1_OF_2 = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}


def set_launcher_env(monkeypatch, env):
    for name in [n for n in os.environ if n.startswith("SLURM_")] + ["WORLD_SIZE", "RANK", "LOCAL_RANK"]:
        monkeypatch.delenv(name, raising=False)  # this test may itself run in a Slurm job, or under torchrun
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("ngpu, env, espnet_args, rank", [
    (0, {}, [], 0),                                      # one process: no launcher
    (0, TORCHRUN_1_OF_2, [], 1),                         # torchrun's second process, on CPUs
    (1, TORCHRUN_1_OF_2, [], 1),                         # ... on GPUs, one each
    (0, {**TORCHRUN_1_OF_2, "RANK": "0"}, ["--dist_rank", "1"], 1),  # --dist_rank wins over RANK (ESPnet)
    (4, {}, [], 0),                                      # the process that spawns one process per GPU
    (4, SLURM_NODE_1_OF_2, ["--dist_launcher", "slurm"], 1),  # the second node's: it writes nothing
    (4, SLURM_NODE_1_OF_2, [], 0),                       # without --dist_launcher ESPnet ignores Slurm
])
def test_the_rank_is_the_one_espnet_reads(monkeypatch, ngpu, env, espnet_args, rank):
    set_launcher_env(monkeypatch, env)
    assert launched_rank(options(ngpu, *espnet_args)) == rank


def test_espnet_wants_one_slurm_task_a_node(monkeypatch):
    """ESPnet 202511 refuses --dist_launcher slurm with several tasks on a node, even one per GPU with
    --ngpu 1 (resolve_distributed_mode asks for the node's rank): with srun, one task a node and --ngpu
    <GPUs per node> (train_lora's docstring), or RANK, WORLD_SIZE, LOCAL_RANK set from SLURM_PROCID,
    SLURM_NTASKS, SLURM_LOCALID without --dist_launcher, as torchrun sets them."""
    set_launcher_env(monkeypatch, {**SLURM_NODE_1_OF_2, "SLURM_NTASKS": "8", "SLURM_PROCID": "5"})
    with pytest.raises(RuntimeError, match="ntasks_per_node=1"):
        launched_rank(options(1, "--dist_launcher", "slurm"))


def test_ngpu_chooses_espnets_distributed_options():
    loaded = type("Loaded", (), {"name": "whisper_tiny_random", "fingerprint": "0" * 16})()

    def value(command, option):
        return command[len(command) - 1 - command[::-1].index(option) + 1]  # the last one, as argparse reads it

    assert value(espnet_command(options(0), loaded), "--dist_backend") == "gloo"  # nccl cannot use CPU tensors
    assert value(espnet_command(options(0, "--dist_backend", "mpi"), loaded), "--dist_backend") == "mpi"
    assert "--dist_backend" not in espnet_command(options(1), loaded)
    # several GPUs: one process per GPU (DDP), as ESPnet's asr.sh asks, instead of ESPnet's default DataParallel
    assert value(espnet_command(options(4), loaded), "--multiprocessing_distributed") == "true"
