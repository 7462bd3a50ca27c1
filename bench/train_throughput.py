#!/usr/bin/env python3
"""LoRA training throughput: our joint four-language bank vs separate runs vs Hugging Face PEFT.

Same clips, same target token ids (espnet_ext.train.targets), same converted Whisper base weights, rank
16 / alpha 32 / dropout 0.05 LoRA on query/value of encoder self-attention and decoder self- and
cross-attention, AdamW + grad clip 1.0 as the recipe trains. Each system runs one pass over the clips
(every clip seen once) and is timed for forward + backward + optimizer step only: batches are collated,
and HF's log-mels computed, beforehand (as ESPnet's data loader and HF's `dataset.map` do), and each
run's first batch is run once untimed first (allocator and kernel warm-up).

  (a) ours, joint: one LoRA bank with an adapter per language, length-sorted mixed-language batches
      routed per utterance by oracle one-hot weights, encoder on the real length (no 30 s padding);
  (b) ours, separate: the same bank code holding one adapter, one run per language on that language's
      clips (length-sorted, same batch size); the four runs' times summed;
  (c) HF PEFT LoRA on transformers' WhisperForConditionalGeneration, inputs padded to 30 s (3000 mel
      frames) as HF's fine-tuning recipe does, one run per language (PEFT trains one adapter at a
      time); weights mapped from our openai-format checkpoint by espnet_ext.models.hf_whisper, and
      the benchmark refuses to time anything unless HF's logits match ours on one clip;
  (d) ours, joint as (a) but every input zero-padded to the 30 s window (`pad_to_30s: true`): the
      real-length vs 30 s ablation of the training input, on the same code.

Prints audio seconds processed per second of training for each, the acceptance ratios
throughput (a)/(c) (target >= 4 on CPU) and time(a)/time(b) (target <= 1), and time (d)/(a), what
padding to 30 s costs.

Usage (after stage 1 of the recipe has made the default corpus):
    .venv/bin/python bench/train_throughput.py --clips_per_lang 20 --batch_size 8 --threads 2
    .venv/bin/python bench/train_throughput.py --clips_per_lang 2 --batch_size 2 --steps 2   # smoke run
"""
import argparse
import copy
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


def limit_to_steps(clips: List[Clip], steps: int, batch_size: int) -> List[Clip]:
    """At most `steps * batch_size` clips, languages in turn, so that the joint run takes `steps` steps."""
    by_lang: Dict[str, List[Clip]] = {}
    for clip in clips:
        by_lang.setdefault(clip.lang, []).append(clip)
    interleaved = [c for group in zip(*by_lang.values()) for c in group]
    return interleaved[: steps * batch_size]


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


def timed_training(model: torch.nn.Module, loss_of: Callable, batches: Sequence) -> float:
    """Seconds for one optimizer step per batch, after one untimed step on the first batch."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)

    def step(batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_of(batch).backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        optimizer.step()

    step(batches[0])
    start = time.perf_counter()
    for batch in batches:
        step(batch)
    return time.perf_counter() - start


def ours(base: torch.nn.Module, languages: Sequence[str], pad_to_30s: bool = False) -> torch.nn.Module:
    """A fresh copy of the frozen base with the recipe's LoRA bank, as stage 3 builds it."""
    conf = LoRAConfig(languages=tuple(languages), rank=RANK, alpha=ALPHA, dropout=DROPOUT,
                      targets=("whisper_attn_qv",))
    return build_lora_model(copy.deepcopy(base), WHISPER, conf, pad_to_30s=pad_to_30s)


def time_joint(base, clips: List[Clip], langs: Sequence[str], batch_size: int, pad_to_30s: bool = False) -> float:
    """(a), or (d) with `pad_to_30s`: one bank with every language, mixed length-sorted batches."""
    model = ours(base, langs, pad_to_30s)
    batches = [espnet_batch(b, langs) for b in length_batches(clips, batch_size)]
    return timed_training(model, lambda b: model(**b)[0], batches)


def time_separate(base, clips: List[Clip], langs: Sequence[str], batch_size: int) -> float:
    """(b): one single-adapter run per language, the runs' times summed."""
    total = 0.0
    for lang in langs:
        model = ours(base, [lang])
        own = [c for c in clips if c.lang == lang]
        batches = [espnet_batch(b, [lang]) for b in length_batches(own, batch_size)]
        total += timed_training(model, lambda b: model(**b)[0], batches)
    return total


def hf_lora(hf_base: torch.nn.Module) -> torch.nn.Module:
    """A fresh copy of HF Whisper with one PEFT LoRA adapter on every q_proj/v_proj (the HF recipe's)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=DROPOUT, target_modules=["q_proj", "v_proj"])
    return get_peft_model(copy.deepcopy(hf_base), config)


def time_hf_peft(hf_base, asr_model, clips: List[Clip], langs: Sequence[str], batch_size: int) -> float:
    """(c): PEFT LoRA on HF Whisper, 30 s inputs, one run per language, the runs' times summed."""
    total = 0.0
    for lang in langs:
        model = hf_lora(hf_base)
        own = [c for c in clips if c.lang == lang]
        batches = [hf_batch(asr_model, b, asr_model.eos) for b in length_batches(own, batch_size)]
        total += timed_training(model, lambda b: model(**b).loss, batches)
    return total


def check_same_targets(asr_model: torch.nn.Module, hf_base: torch.nn.Module, langs: Sequence[str]) -> int:
    """Number of LoRA linears, after checking that our bank and PEFT wrap as many (exits if not)."""
    from peft.tuners.lora import LoraLayer

    ours_layers = len(banks(ours(asr_model, langs).model))
    hf_layers = sum(isinstance(m, LoraLayer) for m in hf_lora(hf_base).modules())
    if ours_layers != hf_layers:
        raise SystemExit(f"LoRA targets differ: our bank wraps {ours_layers} linears, PEFT {hf_layers}")
    return ours_layers


# ---------------------------------------------------------------------------------------------------
# Report


def report(seconds: Dict[str, float], audio_s: float) -> None:
    """The table and the two acceptance ratios."""
    hf = audio_s / seconds["c"]
    names = {"a": "(a) ours joint, 4-adapter bank, real length", "b": "(b) ours, 4 single-adapter runs",
             "c": "(c) HF PEFT, 30 s padded, 4 runs", "d": "(d) ours joint, 30 s padded"}
    print(f"{'system':46s} {'wall s':>8s} {'audio s/s':>10s} {'vs (c)':>8s}")
    for key, name in names.items():
        rate = audio_s / seconds[key]
        print(f"{name:46s} {seconds[key]:8.1f} {rate:10.2f} {rate / hf:7.2f}x")
    speedup, time_ratio = seconds["c"] / seconds["a"], seconds["a"] / seconds["b"]
    print(f"throughput (a)/(c) = {speedup:.2f}x (target >= 4): {'met' if speedup >= 4 else 'NOT met'}")
    print(f"time (a)/(b)       = {time_ratio:.2f} (target <= 1): {'met' if time_ratio <= 1 else 'NOT met'}")
    print(f"time (d)/(a)       = {seconds['d'] / seconds['a']:.2f}: what padding to the 30 s window costs")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_root", type=Path, default=Path("egs2/multilingual_lora/asr1/data"),
                   help="holds the Kaldi dirs train_<lang>")
    p.add_argument("--langs", nargs="+", default=["hi", "pa", "te", "it"])
    p.add_argument("--clips_per_lang", type=int, default=20)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--steps", type=int, default=0,
                   help="cut the data to steps*batch_size clips, languages in turn (0: one pass over all)")
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
    clips = load_clips(args.data_root, args.langs, args.clips_per_lang, train_targets.for_model(loaded))
    if args.steps:
        clips = limit_to_steps(clips, args.steps, args.batch_size)
    hf_base = build_hf_whisper(loaded.checkpoint_path, asr_model.sos, asr_model.eos)
    diff = check_logits(asr_model, hf_base, clips[0], args.atol)
    ours_layers = check_same_targets(asr_model, hf_base, args.langs)
    audio_s = sum(c.seconds for c in clips)
    print(f"{len(clips)} clips ({', '.join(f'{l}: {sum(c.lang == l for c in clips)}' for l in args.langs)}), "
          f"{audio_s:.1f} s of audio, batch {args.batch_size}, {args.threads} threads, rank {RANK}, "
          f"{ours_layers} LoRA linears; HF vs ours max |logit diff| {diff:.2g}")
    seconds = {
        "a": time_joint(asr_model, clips, args.langs, args.batch_size),
        "b": time_separate(asr_model, clips, args.langs, args.batch_size),
        "c": time_hf_peft(hf_base, asr_model, clips, args.langs, args.batch_size),
        "d": time_joint(asr_model, clips, args.langs, args.batch_size, pad_to_30s=True),
    }
    report(seconds, audio_s)


if __name__ == "__main__":
    main()
