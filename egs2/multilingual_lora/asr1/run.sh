#!/usr/bin/env bash
# Multilingual LoRA adapters on Whisper/OWSM for hi, pa, te, it. With no arguments, on CPU: the
# offline espeak-ng corpus, the real Whisper base, joint rank-16 LoRA training of the four adapters,
# decoding of the zero-shot base and of the adapters (oracle routing), sclite scoring.
#   ./run.sh --stop_stage 1 && ./run.sh --stage 5 --stop_stage 6 --routings none   # zero-shot only
#   ./run.sh --stage 3 --stop_stage 3 --lang te --lora_rank 16   # the te adapter alone
#   ./run.sh --stage 3 --stop_stage 6 --finetune full     # the full fine-tuning reference system
#   ./run.sh --stage 5 --stop_stage 6 --lang te          # rerun decoding+scoring of Telugu only
#   ./run.sh --help                                      # every option with its default
set -euo pipefail

./lora_asr.sh \
    --model whisper_base \
    --corpus tts \
    "$@"
