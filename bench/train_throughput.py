#!/usr/bin/env python3
"""LoRA training throughput, like for like: our bank against Hugging Face PEFT on transformers' Whisper.

Same clips, same target token ids (espnet_ext.train.targets), same converted Whisper base weights, rank
16 / alpha 32 / dropout 0.05, AdamW + grad clip 1.0 as the recipe trains, and the same LoRA targets on
both sides, for each target set of `--targets`: `qv` (query/value of encoder self-attention and
decoder self- and cross-attention) and `all` (the recipe's default, whisper_all: every attention
projection and both MLP linears); PEFT's target modules are our bank's, renamed by the one mapping
module espnet_ext.models.hf_whisper, and their counts checked equal. Every row takes the same optimizer
steps over the same clips (clips per language are cut to a multiple of the batch size, so one joint run
and four per-language runs step equally often), is timed for forward + backward + optimizer step only
(batches collated, and HF's log-mels computed, beforehand, as ESPnet's loader and HF's `dataset.map`
do), after one untimed warm-up step, as the median of `--repeats` passes. Both sides use PyTorch's SDPA
attention (ours: the shared masked forward; transformers 5: its default).

Rows, labelled by input length:
  ours joint, real length: one bank with an adapter per language, length-sorted mixed-language batches
      routed per utterance by oracle one-hot weights, each batch as long as its longest clip (the
      recipe's setting);
  ours separate, real length: the same bank code with one adapter, one run per language, times summed;
  ours joint, 30 s: as the first, every input zero-padded to Whisper's 30 s window (`pad_to_30s: true`);
  HF PEFT, 30 s: one PEFT adapter, one run per language (PEFT trains one adapter at a time), inputs
      padded to 30 s (3000 mel frames), which HF's Whisper encoder requires.
The benchmark refuses to time anything unless HF's logits match ours on one clip.

Two ratios per target set: the product comparison (ours joint at the real length vs HF PEFT at 30 s:
what a user gets from each) and like for like (both at 30 s: the same work).

Usage (after stage 1 of the recipe has made the default corpus):
    .venv/bin/python bench/train_throughput.py --clips_per_lang 16 --batch_size 8 --threads 2
    .venv/bin/python bench/train_throughput.py --clips_per_lang 2 --batch_size 2 --repeats 1 --targets qv  # smoke
"""
import argparse
import copy
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import numpy as np
import torch

from espnet_ext.data.audio import SAMPLE_RATE
from espnet_ext.data.kaldi import read_data_dir
from espnet_ext.data.audio import utterance_audio
from espnet_ext.lora.inject import banks
from espnet_ext.models import hf_whisper
from espnet_ext.models.registry import load_model
from espnet_ext.models.whisper import read_whisper_checkpoint
from espnet_ext.train import targets as train_targets
from espnet_ext.models.family import WHISPER, WINDOW_SAMPLES
from espnet_ext.train.model import LoRAConfig, build_lora_model
from espnet_ext.train.prep import _too_long

RANK, ALPHA, DROPOUT = 16, 32.0, 0.05  # conf/tuning/train_lora_whisper_base_r16.yaml
LR, WEIGHT_DECAY, GRAD_CLIP = 1e-3, 0.01, 1.0
IGNORE_ID = -1  # ESPnet's padding of integer data (common_collate_fn)
HF_IGNORE = -100  # transformers' label padding
N_FRAMES = 3000  # log-mel frames in Whisper's 30 s window


@dataclass(frozen=True)
class Clip:
    """One training utterance: its audio, language and target ids (prompt + transcript, no sos/eos)."""

    lang: str
    audio: np.ndarray
    ids: List[int]

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


# ---------------------------------------------------------------------------------------------------
# Data


def load_clips(data_root: Path, langs: Sequence[str], per_lang: int, targets) -> List[Clip]:
    """The first `per_lang` trainable clips of each `train_<lang>`, skipping what prep.py would drop."""
    clips = []
    for lang in langs:
        kept = []
        for utt in read_data_dir(data_root / f"train_{lang}"):
            audio, ids = utterance_audio(utt), targets.encode(utt.text, utt.lang)["text"]
            if not _too_long(len(audio), len(ids), targets.max_length):
                kept.append(Clip(lang, audio.astype(np.float32), ids))
            if len(kept) == per_lang:
                break
        clips += kept
    return clips


def length_batches(clips: Sequence[Clip], batch_size: int) -> List[List[Clip]]:
    """Batches of clips of similar length (longest first), as ESPnet's length-sorted samplers make them."""
    ordered = sorted(clips, key=lambda c: -len(c.audio))
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def pad_rows(rows: Sequence[Sequence], value, dtype, width: int = 0) -> torch.Tensor:
    """Stack variable-length rows into one tensor, right-padded with `value` to at least `width`."""
    width = max(width, max(len(r) for r in rows))
    out = torch.full((len(rows), width), value, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=dtype)
    return out


def espnet_batch(clips: Sequence[Clip], languages: Sequence[str]) -> Dict[str, torch.Tensor]:
    """The keyword arguments ESPnet's trainer gives LoRARoutedModel for these clips (see prep.py)."""
    return {
        "speech": pad_rows([c.audio for c in clips], 0.0, torch.float32),
        "speech_lengths": torch.tensor([len(c.audio) for c in clips]),
        "text": pad_rows([c.ids for c in clips], IGNORE_ID, torch.long),
        "text_lengths": torch.tensor([len(c.ids) for c in clips]),
        "lang": torch.tensor([[languages.index(c.lang)] for c in clips]),
        "lang_lengths": torch.ones(len(clips), dtype=torch.long),
    }


# ---------------------------------------------------------------------------------------------------
# Hugging Face Whisper from our checkpoint

def build_hf_whisper(checkpoint_path: Path, sos: int, eos: int):
    """transformers' Whisper with our checkpoint's weights (mapped by espnet_ext.models.hf_whisper).

    `sos`/`eos` are our model's; HF starts the decoder input with decoder_start_token_id and pads it with
    pad_token_id, which must be ESPnet's sos and eos for the decoder to see the same input ids.
    """
    return hf_whisper.build_hf_whisper(
        read_whisper_checkpoint(checkpoint_path), use_cache=False,
        decoder_start_token_id=sos, pad_token_id=eos, bos_token_id=eos, eos_token_id=eos,
    )


def log_mel_30s(asr_model: torch.nn.Module, clips: Sequence[Clip]) -> torch.Tensor:
    """[batch, n_mels, 3000] log-mels of the clips padded to 30 s, by the same code as our encoder's."""
    speech = pad_rows([c.audio for c in clips], 0.0, torch.float32, width=WINDOW_SAMPLES)
    with torch.no_grad():
        feats, _ = asr_model.encoder.log_mel_spectrogram(speech)
    return feats[..., :N_FRAMES]


def hf_batch(asr_model: torch.nn.Module, clips: Sequence[Clip], eos: int) -> Dict[str, torch.Tensor]:
    """HF recipe inputs: 30 s log-mels and labels = target + eos (the decoder input is sos + target)."""
    labels = pad_rows([c.ids + [eos] for c in clips], HF_IGNORE, torch.long)
    return {"input_features": log_mel_30s(asr_model, clips), "labels": labels}


def check_logits(asr_model: torch.nn.Module, hf_model: torch.nn.Module, clip: Clip, atol: float) -> float:
    """Max |logit difference| between our model and HF's on one 30 s-padded clip; exits above `atol`."""
    speech = pad_rows([clip.audio], 0.0, torch.float32, width=WINDOW_SAMPLES)
    ys_in = torch.tensor([[asr_model.sos] + clip.ids])
    asr_model.eval(), hf_model.eval()
    with torch.no_grad():
        enc, enc_lens = asr_model.encode(speech, torch.tensor([WINDOW_SAMPLES]))
        ours, _ = asr_model.decoder(enc, enc_lens, ys_in, torch.tensor([ys_in.size(1)]))
        theirs = hf_model(input_features=log_mel_30s(asr_model, [clip]), decoder_input_ids=ys_in).logits
    diff = float((ours - theirs).abs().max())
    if not diff <= atol:
        raise SystemExit(f"HF Whisper's logits differ from ours by {diff:.3g} > {atol:g}: the weight mapping "
                         "is wrong, so no throughput is reported")
    return diff


# ---------------------------------------------------------------------------------------------------
# Timed training


def timed_training(model: torch.nn.Module, loss_of: Callable, batches: Sequence, repeats: int) -> float:
    """Median seconds of a pass of optimizer steps over `batches`, after one untimed step."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)

    def step(batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_of(batch).backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        optimizer.step()

    step(batches[0])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            step(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


TARGETS = {"qv": "whisper_attn_qv", "all": "whisper_all"}  # --targets -> our preset


def ours(base: torch.nn.Module, languages: Sequence[str], preset: str, pad_to_30s: bool = False) -> torch.nn.Module:
    """A fresh copy of the frozen base with the recipe's LoRA bank, as stage 3 builds it."""
    conf = LoRAConfig(languages=tuple(languages), rank=RANK, alpha=ALPHA, dropout=DROPOUT, targets=(preset,))
    return build_lora_model(copy.deepcopy(base), WHISPER, conf, pad_to_30s=pad_to_30s)


def time_joint(base, clips: List[Clip], langs: Sequence[str], preset: str, batch_size: int, repeats: int,
               pad_to_30s: bool = False) -> float:
    """One bank with every language, mixed length-sorted batches."""
    model = ours(base, langs, preset, pad_to_30s)
    batches = [espnet_batch(b, langs) for b in length_batches(clips, batch_size)]
    return timed_training(model, lambda b: model(**b)[0], batches, repeats)


def time_separate(base, clips: List[Clip], langs: Sequence[str], preset: str, batch_size: int, repeats: int) -> float:
    """One single-adapter run per language, the runs' times summed."""
    total = 0.0
    for lang in langs:
        model = ours(base, [lang], preset)
        own = [c for c in clips if c.lang == lang]
        batches = [espnet_batch(b, [lang]) for b in length_batches(own, batch_size)]
        total += timed_training(model, lambda b: model(**b)[0], batches, repeats)
    return total


def peft_targets(asr_model: torch.nn.Module, langs: Sequence[str], preset: str) -> List[str]:
    """transformers module names of the linears our bank wraps under `preset` (hf_whisper's renaming)."""
    names = []
    for name in banks(ours(asr_model, langs, preset).model):
        side, rest = name.split(".", 1)  # encoder.encoders.blocks.0... -> encoder.blocks.0...
        names.append(hf_whisper.hf_name(f"{side}.{rest.split('.', 1)[1]}.weight")[: -len(".weight")])
    return names


def hf_lora(hf_base: torch.nn.Module, target_modules: List[str]) -> torch.nn.Module:
    """A fresh copy of HF Whisper with one PEFT LoRA adapter on `target_modules`."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=DROPOUT, target_modules=target_modules)
    return get_peft_model(copy.deepcopy(hf_base), config)


def time_hf_peft(hf_base, asr_model, clips: List[Clip], langs: Sequence[str], target_modules: List[str],
                 batch_size: int, repeats: int) -> float:
    """PEFT LoRA on HF Whisper, 30 s inputs, one run per language, the runs' times summed."""
    total = 0.0
    for lang in langs:
        model = hf_lora(hf_base, target_modules)
        own = [c for c in clips if c.lang == lang]
        batches = [hf_batch(asr_model, b, asr_model.eos) for b in length_batches(own, batch_size)]
        total += timed_training(model, lambda b: model(**b).loss, batches, repeats)
    return total


def check_same_targets(hf_base: torch.nn.Module, target_modules: List[str]) -> int:
    """Number of LoRA linears, after checking that PEFT wraps exactly the modules our bank does."""
    from peft.tuners.lora import LoraLayer

    hf_layers = sum(isinstance(m, LoraLayer) for m in hf_lora(hf_base, target_modules).modules())
    if hf_layers != len(target_modules):
        raise SystemExit(f"LoRA targets differ: our bank wraps {len(target_modules)} linears, PEFT {hf_layers}")
    return hf_layers


# ---------------------------------------------------------------------------------------------------
# Report


ROWS = {  # key -> (label, input length); {n}: the number of languages
    "joint": ("ours joint, {n}-adapter bank", "real length"),
    "separate": ("ours, {n} single-adapter runs", "real length"),
    "joint_30s": ("ours joint, {n}-adapter bank", "30 s"),
    "hf": ("HF PEFT, {n} runs", "30 s"),
}


def report(seconds: Dict[str, Dict[str, float]], audio_s: float, steps: int, layers: Dict[str, int],
           n_langs: int) -> None:
    """One table for every target set, then its two ratios against HF PEFT."""
    print("| targets | system | input | steps | median s | audio s/s | vs HF PEFT |")
    print("|---|---|---|---:|---:|---:|---:|")
    for targets, by_row in seconds.items():
        for key, (label, length) in ROWS.items():
            label = label.format(n=n_langs)
            print(f"| {targets} ({layers[targets]} linears) | {label} | {length} | {steps} | {by_row[key]:.2f} | "
                  f"{audio_s / by_row[key]:.2f} | {by_row['hf'] / by_row[key]:.2f}x |")
    for targets, by_row in seconds.items():
        print(f"{targets}: product (ours real length vs HF 30 s) {by_row['hf'] / by_row['joint']:.2f}x; "
              f"like for like (both 30 s) {by_row['hf'] / by_row['joint_30s']:.2f}x; "
              f"joint vs separate runs {by_row['separate'] / by_row['joint']:.2f}x")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_root", type=Path, default=Path("egs2/multilingual_lora/asr1/data"),
                   help="holds the Kaldi dirs train_<lang>")
    p.add_argument("--langs", nargs="+", default=["hi", "pa", "te", "it"])
    p.add_argument("--clips_per_lang", type=int, default=16, help="cut to a multiple of --batch_size")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--targets", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    p.add_argument("--repeats", type=int, default=3, help="timed passes per row (the median is reported)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--atol", type=float, default=1e-3, help="largest |logit| difference HF vs ours accepted")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)  # ESPnet's and transformers' deprecation notes
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    loaded = load_model("whisper_base")
    asr_model = loaded.asr_model
    per_lang = args.clips_per_lang - args.clips_per_lang % args.batch_size
    if per_lang == 0:
        raise SystemExit(f"--clips_per_lang {args.clips_per_lang} < --batch_size {args.batch_size}: give at least one batch")
    clips = load_clips(args.data_root, args.langs, per_lang, train_targets.for_model(loaded))
    if any(sum(c.lang == lang for c in clips) != per_lang for lang in args.langs):
        raise SystemExit(f"every train_<lang> must give {per_lang} trainable clips, so every row steps equally often")
    hf_base = build_hf_whisper(loaded.checkpoint_path, asr_model.sos, asr_model.eos)
    diff = check_logits(asr_model, hf_base, clips[0], args.atol)
    audio_s = sum(c.seconds for c in clips)
    steps = len(clips) // args.batch_size
    print(f"{len(clips)} clips ({per_lang} per language), {audio_s:.1f} s of audio, batch {args.batch_size}, "
          f"{steps} steps per row, {args.threads} threads, rank {RANK}, median of {args.repeats}; "
          f"HF vs ours max |logit diff| {diff:.2g}")
    seconds, layers = {}, {}
    for targets in args.targets:
        preset = TARGETS[targets]
        modules = peft_targets(asr_model, args.langs, preset)
        layers[targets] = check_same_targets(hf_base, modules)
        run = dict(batch_size=args.batch_size, repeats=args.repeats)
        seconds[targets] = {
            "joint": time_joint(asr_model, clips, args.langs, preset, **run),
            "separate": time_separate(asr_model, clips, args.langs, preset, **run),
            "joint_30s": time_joint(asr_model, clips, args.langs, preset, pad_to_30s=True, **run),
            "hf": time_hf_peft(hf_base, asr_model, clips, args.langs, modules, **run),
        }
    report(seconds, audio_s, steps, layers, len(args.langs))


if __name__ == "__main__":
    main()
