#!/usr/bin/env bash
# Multilingual LoRA adapters on Whisper/OWSM for hi, pa, te, it. With no arguments: the offline
# espeak-ng corpus, real Whisper base, zero-shot decoding and scoring on CPU.
#   ./run.sh --stage 5 --stop_stage 6 --lang te        # rerun decoding+scoring of Telugu only
#   ./run.sh --help                                    # every option with its default
set -euo pipefail

./lora_asr.sh \
    --model whisper_base \
    --corpus tts \
    "$@"
