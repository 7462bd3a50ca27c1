#!/usr/bin/env bash
# The project's GPU checks, each under 8 minutes on one H100/H200:
#   speed  bench/gpu_speed.py: Whisper small and medium, LoRA training ours vs Hugging Face PEFT on the same
#          inputs, greedy decoding ours vs transformers' generate
#   train  bench/gpu_train.py: the tiny grid with every job on the GPU, and Whisper small's architecture
#          trained by the recipe's stage 3 in fp32 and bf16: throughput and peak memory
#
# Usage:
#   bench/gpu.sh bundle                 # here: bench/gpu_bundle/ (wheels, sclite, a small corpus) to carry
#   bench/gpu.sh --dry_run speed|train  # here, on CPU with the tiny random model: checks the scripts (CI runs them)
#   bench/gpu.sh speed|train            # on the GPU machine, with bench/gpu_bundle/ carried along
#
# The GPU machine has Python 3.12 with a CUDA torch, transformers, PEFT and the packages bench/gpu_wheels.txt
# names, but no package registry, no espeak-ng and no sclite: the bundle brings the rest of the project's
# imports as cp312 wheels (installed with --no-index --no-deps into /tmp/gpu_site, on PYTHONPATH), Debian's
# sclite (it needs only libc), and the corpus of bench/gpu_train.py (made with espeak-ng here). The project
# itself runs from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=bench/gpu_bundle
carry_limit_mib=60   # what a device call carries at most (64 MiB), less this checkout

usage() { echo "gpu.sh: use bundle, speed, train, or --dry_run speed|train (see the header of bench/gpu.sh)" >&2; exit 2; }
check() { case "${1:-}" in speed) echo bench/gpu_speed.py ;; train) echo bench/gpu_train.py ;; *) usage ;; esac; }

case "${1:-}" in
  bundle)
    python=${PYTHON:-.venv/bin/python}
    rm -rf "${bundle}" && mkdir -p "${bundle}/wheels" "${bundle}/bin"
    grep -v '^#' bench/gpu_wheels.txt | grep -v '# sdist' | xargs "${python}" -m pip download -q --no-deps \
        --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "${bundle}/wheels"
    grep '# sdist' bench/gpu_wheels.txt | cut -d' ' -f1 | xargs "${python}" -m pip wheel -q --no-deps -w "${bundle}/wheels"
    cp "$("${python}" -c 'from espnet_ext.scoring.sclite import find_sclite; print(find_sclite())')" "${bundle}/bin/sclite"
    "${python}" bench/gpu_train.py --make_corpus "${bundle}/corpus"
    size_mib=$(du -sm "${bundle}" | cut -f1)
    echo "gpu.sh: ${bundle}: $(ls "${bundle}/wheels" | wc -l) wheels, sclite and a corpus, ${size_mib} MiB"
    if [ "${size_mib}" -gt "${carry_limit_mib}" ]; then
      echo "gpu.sh: ${bundle} is ${size_mib} MiB, over the ${carry_limit_mib} MiB a device call carries beside this" \
           "checkout; drop wheels the GPU machine already has from bench/gpu_wheels.txt" >&2
      exit 1
    fi
    ;;
  --dry_run)
    script=$(check "${2:-}")
    python=${PYTHON:-.venv/bin/python}
    if [ "$2" = train ]; then
      corpus=$(mktemp -d)
      trap 'rm -rf "${corpus}"' EXIT
      "${python}" "${script}" --make_corpus "${corpus}/corpus"
      "${python}" "${script}" --dry_run --corpus "${corpus}/corpus" --work "${corpus}/work"
    else
      "${python}" "${script}" --dry_run
    fi
    ;;
  speed|train)
    script=$(check "$1")
    [ -d "${bundle}/wheels" ] || { echo "gpu.sh: no ${bundle}/; run 'bench/gpu.sh bundle' here first and carry it" >&2; exit 1; }
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_site "${bundle}"/wheels/*.whl
    mkdir -p /tmp/gpu_bin
    # the recipe calls `python`; a wrapper, not a link: a link to a venv's python3 leaves the venv behind
    printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v python3)" > /tmp/gpu_bin/python && chmod +x /tmp/gpu_bin/python
    install -m 755 "${bundle}/bin/sclite" /tmp/gpu_bin/sclite
    export PATH="/tmp/gpu_bin:${PATH}" PYTHONPATH="${PWD}:${PWD}/bench:/tmp/gpu_site${PYTHONPATH:+:${PYTHONPATH}}"
    export PYTHONUNBUFFERED=1  # each row reaches the output when measured, even if the time limit cuts the rest
    python -c "import torch, transformers, peft, espnet2, whisper, espnet_ext.bin.train_lora; assert torch.cuda.is_available(), 'no CUDA device'" \
      || { echo "gpu.sh: the environment above lacks a package or a GPU; add the missing wheel to bench/gpu_wheels.txt" >&2; exit 1; }
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    if [ "$1" = train ]; then
      timeout 465 python "${script}" --corpus "${bundle}/corpus"
    else
      timeout 465 python "${script}"
    fi
    ;;
  *) usage ;;
esac
