#!/usr/bin/env bash
# Install espnet_ext and everything its recipe needs into ./.venv (Debian + Python 3.11).
#
# Usage: ./install.sh            # apt packages (when root) + .venv; torch for the GPU if nvidia-smi lists one
#        ./install.sh --cuda     # torch's CUDA build (checked: it must see a GPU)
#        ./install.sh --cpu      # torch's CPU build, also on a machine with a GPU
#        ./install.sh --plan     # say which torch build it would install, and why; install nothing
#        SKIP_APT=1 ./install.sh # only the Python side
#        TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 ./install.sh --cuda   # torch from that index
#
# Every pin below was measured on a 2-core Debian machine with Python 3.11; the why of each is written
# next to it so that a later upgrade knows what to re-check.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}

# Which torch build: PyPI's Linux torch wheel is a CUDA build; this machine kind keeps the CPU wheel of
# torch 2.13.0 on disk, which `pip install torch==2.13.0` takes here. Elsewhere a CPU-only user gets the
# CPU build from PyTorch's own index (TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu).
torch_build=auto
for arg in "$@"; do
    case ${arg} in
        --cuda) torch_build=cuda ;;
        --cpu) torch_build=cpu ;;
        --plan) plan=1 ;;
        *) echo "install.sh: unknown option ${arg} (--cuda, --cpu, --plan)" >&2; exit 1 ;;
    esac
done
why="given on the command line"
if [ "${torch_build}" = auto ]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
        torch_build=cuda why="nvidia-smi lists $(nvidia-smi -L | grep -c '^GPU ') GPU(s)"
    else
        torch_build=cpu why="no GPU listed by nvidia-smi"
    fi
fi
if [ -n "${plan:-}" ]; then
    echo "install.sh: torch 2.13.0, ${torch_build} build (${why})${TORCH_INDEX_URL:+, from ${TORCH_INDEX_URL}}"
    exit 0
fi

if [ -z "${SKIP_APT:-}" ]; then
    # espeak-ng synthesises the default corpus; sox is handy for users; sctk provides NIST sclite, the
    # scorer ESPnet's asr.sh uses; libsndfile backs soundfile (no ffmpeg needed anywhere); chromium and
    # its driver run the demo page's browser test (tests/decode/test_demo.py; optional for users);
    # slurm-wlm and munge run the one-node cluster the Slurm tests submit to (tests/slurm/start.sh);
    # fonts-noto-core draws Hindi, Punjabi and Telugu text in the figures and slides (stage 7).
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox sctk libsndfile1 perl \
            chromium chromium-driver slurm-wlm munge fonts-noto-core >/dev/null
    else
        for bin in espeak-ng sox /usr/lib/sctk/bin/sclite; do
            command -v "$bin" >/dev/null || { echo "install.sh: $bin missing; run as root or: sudo apt-get install espeak-ng sox sctk" >&2; exit 1; }
        done
    fi
fi

# The venv's bundled pip (23.x) is kept on purpose: pip 26.3 refuses some ESPnet sdists (ci_sdr).
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# One line per step; pip's own output goes to $LOG, shown when a step fails. (The --no-deps installs
# below leave requirements pip's resolver reports as unmet, in a block headed "ERROR", on success too.)
LOG=${LOG:-$VENV/install.log}
: > "$LOG"
PIP=(pip_step "$VENV/bin/python" -m pip install --disable-pip-version-check)
pip_step() {
    local arg what=()
    for arg in "${@:5}"; do [[ $arg == -* ]] || what+=("$arg"); done
    echo "install.sh: pip install ${what[*]}"
    if ! "$@" >> "$LOG" 2>&1; then
        tail -n 30 "$LOG" >&2
        echo "install.sh: pip install ${what[*]} failed; its whole log is $LOG" >&2
        exit 1
    fi
}

# torch first, the build chosen above. Anything that asks for plain `torch` afterwards must not be
# allowed to resolve again, or pip replaces it (a CPU user would get a 5 GB CUDA build).
"${PIP[@]}" torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "${TORCH_INDEX_URL}"}
# openai-whisper 20230918 is the last release that still has whisper.audio.N_MELS, which ESPnet's
# Whisper wrapper imports; its sdist needs setuptools<81 to build. --no-deps skips its triton pin
# (a GPU compiler, useless on CPU); its real runtime deps are in requirements.txt.
"${PIP[@]}" "setuptools>=77.0.3,<81" wheel
"${PIP[@]}" --no-build-isolation --no-deps openai-whisper==20230918
# espnet 202611 needs Python >= 3.12, so 3.11 takes 202511. Its metadata pins setuptools<74 (torch
# 2.13 needs >=77.0.3) and, without --no-deps, pip replaces CPU torch by a CUDA build: install it
# alone and its import-time dependencies explicitly.
"${PIP[@]}" --no-deps espnet==202511
# espnet_model_zoo resolves the hub tags of Speech2Text.from_pretrained ("espnet/owsm_v4_small_370M");
# its metadata asks for espnet (hence torch) again, so it goes in like espnet: --no-deps, its runtime
# imports pinned in requirements.txt.
"${PIP[@]}" --no-deps espnet_model_zoo==0.1.7
# ESPnet's S2T/ASR import chain imports torchaudio (espnet2/enh/layers/beamformer_th.py) but the ASR
# path we use never calls it. PyPI's torchaudio 2.11 is a CUDA build whose compiled extension cannot
# load beside CPU torch (libc10_cuda.so missing); without its .so files torchaudio imports in its
# pure-Python mode.
"${PIP[@]}" --no-deps torchaudio==2.11.0
rm -f "$VENV"/lib/python3.*/site-packages/torchaudio/lib/*.so
"${PIP[@]}" -r requirements.txt
"${PIP[@]}" --no-deps -e .
if [ "${torch_build}" = cpu ]; then
    "$VENV/bin/python" -c "import torch, sys; torch.version.cuda and sys.exit('install.sh: a CUDA torch (' + torch.__version__ + ') was installed for --cpu; rerun with TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu')"
else
    "$VENV/bin/python" -c "import torch, sys; torch.cuda.is_available() or sys.exit('install.sh: torch ' + torch.__version__ + ' (CUDA ' + str(torch.version.cuda) + ') sees no GPU; check nvidia-smi and the driver, or give TORCH_INDEX_URL a CUDA build the driver supports (e.g. https://download.pytorch.org/whl/cu128)'); print('install.sh: torch', torch.__version__, 'sees', torch.cuda.device_count(), 'GPU(s):', torch.cuda.get_device_name(0))"
fi
echo "install.sh: done (pip's log: $LOG). Activate with: . $VENV/bin/activate"
