#!/usr/bin/env bash
# Install espnet_ext and everything its recipe needs into ./.venv (Debian + Python 3.11, CPU).
#
# Usage: ./install.sh            # apt packages (when root) + .venv
#        SKIP_APT=1 ./install.sh # only the Python side
#
# Every pin below was measured on a 2-core Debian machine with Python 3.11; the why of each is written
# next to it so that a later upgrade knows what to re-check.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}

if [ -z "${SKIP_APT:-}" ]; then
    # espeak-ng synthesises the default corpus; sox is handy for users; sctk provides NIST sclite, the
    # scorer ESPnet's asr.sh uses; libsndfile backs soundfile (no ffmpeg needed anywhere); chromium and
    # its driver run the demo page's browser test (tests/decode/test_demo.py; optional for users).
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox sctk libsndfile1 perl \
            chromium chromium-driver >/dev/null
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

# torch==2.13.0 resolves to the CPU wheel on this machine kind. Anything that asks for plain `torch`
# afterwards must not be allowed to resolve again, or pip pulls a 5 GB CUDA build.
"${PIP[@]}" torch==2.13.0
# openai-whisper 20230918 is the last release that still has whisper.audio.N_MELS, which ESPnet's
# Whisper wrapper imports; its sdist needs setuptools<81 to build. --no-deps skips its triton pin
# (a GPU compiler, useless on CPU); its real runtime deps are in requirements.txt.
"${PIP[@]}" "setuptools>=77.0.3,<81" wheel
"${PIP[@]}" --no-build-isolation --no-deps openai-whisper==20230918
# espnet 202611 needs Python >= 3.12, so 3.11 takes 202511. Its metadata pins setuptools<74 (torch
# 2.13 needs >=77.0.3) and, without --no-deps, pip replaces CPU torch by a CUDA build: install it
# alone and its import-time dependencies explicitly.
"${PIP[@]}" --no-deps espnet==202511
# ESPnet's S2T/ASR import chain imports torchaudio (espnet2/enh/layers/beamformer_th.py) but the ASR
# path we use never calls it. PyPI's torchaudio 2.11 is a CUDA build whose compiled extension cannot
# load beside CPU torch (libc10_cuda.so missing); without its .so files torchaudio imports in its
# pure-Python mode.
"${PIP[@]}" --no-deps torchaudio==2.11.0
rm -f "$VENV"/lib/python3.*/site-packages/torchaudio/lib/*.so
"${PIP[@]}" -r requirements.txt
"${PIP[@]}" --no-deps -e .
"$VENV/bin/python" -c "import torch; assert not torch.version.cuda, 'a CUDA torch slipped in: ' + torch.__version__"
echo "install.sh: done (pip's log: $LOG). Activate with: . $VENV/bin/activate"
