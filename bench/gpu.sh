#!/usr/bin/env bash
# GPU speed of Whisper small and medium (bench/gpu_speed.py): LoRA training ours vs Hugging Face PEFT on the
# same inputs, greedy decoding ours vs transformers' generate; under 8 minutes on one H100/H200.
#
# Usage:
#   bench/gpu.sh --dry_run          # here, on CPU with the tiny random model: checks the script (CI runs it)
#   bench/gpu.sh --fetch_wheels     # here: the cp312 wheels of bench/gpu_wheels.txt into bench/gpu_wheels/
#   bench/gpu.sh                    # on the GPU machine, with bench/gpu_wheels/ carried along
#
# The GPU machine has Python 3.12, a CUDA torch, transformers and PEFT, and no package registry: what else
# the project imports is installed there from bench/gpu_wheels/ (--no-index, --no-deps, into a venv that
# sees the system's packages), and the project itself runs from this checkout (PYTHONPATH).
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=bench/gpu_wheels
carry_limit_mib=64   # what a device call carries at most

case "${1:-}" in
  --dry_run)
    python=${PYTHON:-.venv/bin/python}
    exec "${python}" bench/gpu_speed.py --dry_run
    ;;
  --fetch_wheels)
    python=${PYTHON:-.venv/bin/python}
    rm -rf "${wheels}" && mkdir -p "${wheels}"
    grep -v '^#' bench/gpu_wheels.txt | xargs "${python}" -m pip download -q --no-deps --only-binary=:all: \
        --python-version 3.12 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "${wheels}"
    # openai-whisper is published as a source archive only: build its (pure Python) wheel here
    "${python}" -m pip wheel -q --no-deps openai-whisper==20230918 -w "${wheels}"
    size_mib=$(du -sm "${wheels}" | cut -f1)
    echo "gpu.sh: ${wheels}: $(ls "${wheels}" | wc -l) wheels, ${size_mib} MiB"
    if [ "${size_mib}" -gt "${carry_limit_mib}" ]; then
      echo "gpu.sh: ${wheels} is ${size_mib} MiB, over the ${carry_limit_mib} MiB a device call carries; drop the" \
           "wheels the GPU machine already has from bench/gpu_wheels.txt (numba/llvmlite and scipy are the big ones)" >&2
      exit 1
    fi
    ;;
  "")
    [ -d "${wheels}" ] || { echo "gpu.sh: no ${wheels}/; run 'bench/gpu.sh --fetch_wheels' here first and carry it" >&2; exit 1; }
    python3 -m venv --system-site-packages /tmp/gpu_venv
    /tmp/gpu_venv/bin/pip install -q --no-index --no-deps "${wheels}"/*.whl
    export PYTHONPATH="${PWD}:${PWD}/bench${PYTHONPATH:+:${PYTHONPATH}}"
    /tmp/gpu_venv/bin/python -c "import torch, transformers, peft, espnet2, whisper; assert torch.cuda.is_available(), 'no CUDA device'" \
      || { echo "gpu.sh: the environment above lacks a package or a GPU; add the missing wheel to bench/gpu_wheels.txt" >&2; exit 1; }
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    timeout 450 /tmp/gpu_venv/bin/python bench/gpu_speed.py
    ;;
  *)
    echo "gpu.sh: unknown option ${1}; use --dry_run, --fetch_wheels or no option (see the header)" >&2
    exit 2
    ;;
esac
