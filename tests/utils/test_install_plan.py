"""install.sh's choice of torch build (--plan installs nothing): CUDA where nvidia-smi lists a GPU."""
import os
import subprocess
from pathlib import Path

INSTALL = Path(__file__).resolve().parents[2] / "install.sh"


def plan(tmp_path, *args, gpu_line=None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    if gpu_line is not None:
        smi.write_text(f"#!/bin/sh\necho '{gpu_line}'\n")
        smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    return subprocess.run(["bash", str(INSTALL), *args, "--plan"], capture_output=True, text=True, env=env)


def test_a_listed_gpu_chooses_the_cuda_build_and_none_the_cpu_build(tmp_path):
    assert plan(tmp_path).stdout == "install.sh: torch 2.13.0, cpu build (no GPU listed by nvidia-smi)\n"
    out = plan(tmp_path, gpu_line="GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)").stdout
    assert out == "install.sh: torch 2.13.0, cuda build (nvidia-smi lists 1 GPU(s))\n"
    # nvidia-smi present but no GPU (a driver without a device): still CPU
    assert "cpu build" in plan(tmp_path, gpu_line="No devices were found").stdout


def test_the_command_line_overrides_the_detection(tmp_path):
    out = plan(tmp_path, "--cpu", gpu_line="GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)")
    assert out.stdout == "install.sh: torch 2.13.0, cpu build (given on the command line)\n"
    assert "cuda build (given on the command line)" in plan(tmp_path, "--cuda").stdout
    bad = plan(tmp_path, "--gpu")
    assert bad.returncode == 1 and bad.stderr == "install.sh: unknown option --gpu (--cuda, --cpu, --plan)\n"
