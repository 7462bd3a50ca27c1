#!/usr/bin/env python3
"""GPU speed of Whisper small and medium: LoRA training, ours against Hugging Face PEFT on the same
inputs, and greedy decoding, ours against transformers' `generate`. Run by `bench/gpu.sh speed` on a GPU machine.

The weights are random (`whisper_small_random`, `whisper_medium_random`: the published architectures,
registry.py), since no real small or medium checkpoint can be downloaded here; speed does not depend on
the values. Both sides get the same clips (seeded noise of `--seconds`), the same target token ids
(random, 10 per second of audio), rank 16 / alpha 32 LoRA on query and value (ours: `whisper_attn_qv`;
PEFT: the same modules by hf_whisper's names, counts checked), AdamW, bf16 autocast on CUDA.

Training rows, per input length: ours at the clips' real length; ours padded to the 30 s window; HF
PEFT, whose Whisper encoder takes only the 30 s window (3000 log-mel frames), at `--batch_size` and at
the best of `--hf_batch_sizes`. Columns: utterances/s (median of `--repeats` passes of `--steps` steps
after a warm-up step), peak GPU memory, and model FLOPs utilisation: the FLOPs of one step counted by
`torch.utils.flop_counter` on that system's own input (so padding counts as work done) over the time
and the GPU's dense bf16 peak (`PEAK_FLOPS`; n/a on CPU or an unknown GPU).

Decoding rows: greedy, the language token forced, exactly `--new_tokens` tokens per utterance on both
sides (EOT suppressed in ours, `min_new_tokens` in HF's), batches of `--decode_batch`: ours at the real
length and on the 30 s window, HF `generate` on the 30 s window.

Usage:
    bench/gpu.sh speed                             # on a GPU machine (bench/gpu.sh bundle first, here), small and medium
    .venv/bin/python bench/gpu_speed.py --dry_run  # CPU, the tiny random model, tiny batches (CI's smoke run)
"""
import argparse
import statistics
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from espnet_ext.data.audio import SAMPLE_RATE
from espnet_ext.decode.search import SearchConfig
from espnet_ext.decode.transcribe import make_backend, transcribe_batch
from espnet_ext.models.registry import load_model
from common import median_seconds
from train_throughput import (Clip, build_hf_whisper, check_same_targets, espnet_batch, hf_batch, hf_lora, ours,
                              peft_targets)

PRESET = "whisper_attn_qv"
LANG = "hi"
TOKENS_PER_SECOND = 10
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16, by device name


def synthetic_clips(n: int, seconds: float, vocab: int, seed: int = 0) -> List[Clip]:
    rng = np.random.default_rng(seed)
    length = int(seconds * SAMPLE_RATE)
    n_ids = max(2, int(TOKENS_PER_SECOND * seconds))
    return [Clip(LANG, (0.1 * rng.standard_normal(length)).astype(np.float32),
                 rng.integers(0, vocab, n_ids).tolist()) for _ in range(n)]


def peak_flops(device: torch.device) -> Optional[float]:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_FLOPS.items() if key in name), None)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_device(batch: Dict[str, torch.Tensor], device: torch.device) -> Dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)


def train_row(model: torch.nn.Module, loss_of: Callable, batch: Dict, device: torch.device, steps: int,
              repeats: int) -> Dict[str, float]:
    """utterances/s, peak memory (GB) and FLOPs per step of training `model` on `batch` again and again."""
    from torch.utils.flop_counter import FlopCounterMode

    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            loss = loss_of(batch)
        loss.backward()
        optimizer.step()

    counter = FlopCounterMode(display=False)
    with counter:
        step()  # also the warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times) / steps
    rows = next(iter(batch.values())).size(0)
    memory = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")
    model.to("cpu")
    return {"utt_s": rows / seconds, "memory_gb": memory, "flops": counter.get_total_flops() / seconds}


def training_rows(loaded, hf_base, seconds: float, batch_size: int, hf_batch_sizes: Sequence[int],
                  device: torch.device, steps: int, repeats: int) -> Dict[str, Optional[Dict[str, float]]]:
    asr = loaded.asr_model
    vocab = asr.decoder.decoders.token_embedding.num_embeddings
    clips = synthetic_clips(max([batch_size, *hf_batch_sizes]), seconds, min(vocab, 50000))
    modules = peft_targets(asr, [LANG], PRESET)
    check_same_targets(hf_base, modules)
    rows = {}
    for label, pad in ((f"ours, real length ({seconds:g} s)", False), ("ours, 30 s window", True)):
        model = ours(asr, [LANG], PRESET, pad_to_30s=pad)
        batch = to_device(espnet_batch(clips[:batch_size], [LANG]), device)
        rows[f"{label}, batch {batch_size}"] = train_row(model, lambda b: model(**b)[0], batch, device, steps, repeats)
        del model
    for size in dict.fromkeys([batch_size, *hf_batch_sizes]):
        model = hf_lora(hf_base, modules)
        batch = to_device(hf_batch(asr, clips[:size], asr.eos), device)
        try:
            rows[f"HF PEFT, 30 s window, batch {size}"] = train_row(model, lambda b: model(**b).loss, batch, device,
                                                                     steps, repeats)
        except torch.OutOfMemoryError:  # a batch too big for HF's 30 s inputs: the other batches stand
            rows[f"HF PEFT, 30 s window, batch {size}"] = None
        del model, batch
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def decode_rows(loaded, hf_base, seconds: float, batch_size: int, new_tokens: int, device: torch.device,
                repeats: int) -> Dict[str, float]:
    """utterances/s of greedy decoding, exactly `new_tokens` generated per utterance by every system."""
    from train_throughput import log_mel_30s

    clips = synthetic_clips(batch_size, seconds, 1000, seed=1)
    features = log_mel_30s(loaded.asr_model, clips).to(device)  # (on the CPU, where the model still is)
    asr, hf = loaded.asr_model.to(device).eval(), hf_base.to(device).eval()
    audios = [c.audio for c in clips]
    config = SearchConfig(max_tokens=new_tokens, tokens_per_second=1e9, repeat_min_copies=10 ** 6)
    rows = {}

    def timed(work: Callable[[], object]) -> float:
        def synced():
            with torch.no_grad(), autocast(device):
                work()
            synchronize(device)
        return batch_size / median_seconds(synced, repeats)

    for label, pad in ((f"ours, real length ({seconds:g} s)", False), ("ours, 30 s window", True)):
        backend = make_backend(loaded, pad_to_30s=pad)
        backend.suppress[backend.eot] = True  # exactly new_tokens tokens, as HF's min_new_tokens
        rows[label] = timed(lambda: transcribe_batch(backend, audios, [LANG] * batch_size, config))
    prompt = torch.tensor([backend.prompt(LANG)] * batch_size, device=device)

    def hf_generate():
        out = hf.generate(input_features=features, decoder_input_ids=prompt, max_new_tokens=new_tokens,
                          min_new_tokens=new_tokens, do_sample=False, num_beams=1, use_cache=True)
        assert out.size(1) - new_tokens in (0, prompt.size(1)), out.shape  # (transformers 5 drops the prompt)
    rows["HF generate, 30 s window"] = timed(hf_generate)
    hf.to("cpu"), asr.to("cpu")
    return rows


def print_tables(name: str, train: Dict[str, Dict[str, float]], decode: Dict[str, float], peak: Optional[float]) -> None:
    hf_best = max(v["utt_s"] for k, v in train.items() if k.startswith("HF") and v)
    print(f"\n{name}: training, LoRA r16 q/v")
    print("| system | utt/s | vs HF's best batch | peak memory GB | MFU |")
    print("|---|---:|---:|---:|---:|")
    for label, r in train.items():
        if r is None:
            print(f"| {label} | out of memory | | | |")
            continue
        mfu = f"{100 * r['flops'] / peak:.1f}%" if peak else "n/a"
        memory = f"{r['memory_gb']:.1f}" if r["memory_gb"] == r["memory_gb"] else "n/a"  # (nan on CPU)
        print(f"| {label} | {r['utt_s']:.1f} | {r['utt_s'] / hf_best:.2f}x | {memory} | {mfu} |")
    hf = decode["HF generate, 30 s window"]
    print(f"\n{name}: greedy decoding")
    print("| system | utt/s | vs HF generate |")
    print("|---|---:|---:|")
    for label, utt_s in decode.items():
        print(f"| {label} | {utt_s:.1f} | {utt_s / hf:.2f}x |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["whisper_small_random", "whisper_medium_random"])
    p.add_argument("--seconds", type=float, nargs="+", default=[30.0, 5.0], help="input lengths of the training rows")
    p.add_argument("--batch_size", type=int, nargs="+", default=[16, 96],
                   help="ours' training batch per --seconds entry")
    p.add_argument("--hf_batch_sizes", type=int, nargs="+", default=[16, 32], help="HF PEFT's batches tried")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--decode_batch", type=int, default=16)
    p.add_argument("--decode_seconds", type=float, default=5.0)
    p.add_argument("--new_tokens", type=int, default=64)
    p.add_argument("--dry_run", action="store_true",
                   help="CPU, whisper_tiny_random, 2 s clips, batches of 2, one step: checks the script, times nothing")
    args = p.parse_args(argv)
    if args.dry_run:
        args.models, args.seconds, args.batch_size, args.hf_batch_sizes = ["whisper_tiny_random"], [2.0], [2], [2, 3]
        args.steps, args.repeats, args.decode_batch, args.decode_seconds, args.new_tokens = 1, 1, 2, 2.0, 4
    if len(args.batch_size) != len(args.seconds):
        raise SystemExit("gpu_speed.py: give one --batch_size per --seconds entry")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    device = torch.device("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda")
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}; torch {torch.__version__}"
          f"{'; dry run: nothing here is a measurement' if args.dry_run else ''}")
    for name in args.models:
        start = time.perf_counter()
        loaded = load_model(name)
        asr = loaded.asr_model
        hf_base = build_hf_whisper(loaded.checkpoint_path, asr.sos, asr.eos)
        train = {}
        for seconds, batch in zip(args.seconds, args.batch_size):
            train.update(training_rows(loaded, hf_base, seconds, batch, args.hf_batch_sizes, device, args.steps,
                                       args.repeats))
        decode = decode_rows(loaded, hf_base, args.decode_seconds, args.decode_batch, args.new_tokens, device,
                             args.repeats)
        print_tables(name, train, decode, peak_flops(device))
        print(f"({name}: {time.perf_counter() - start:.0f} s in all)")


if __name__ == "__main__":
    main()
