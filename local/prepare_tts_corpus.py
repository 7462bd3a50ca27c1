#!/usr/bin/env python3
"""Synthesise the recipe's default corpus with espeak-ng, so that it runs offline with no download.

Each language's sentences (local/sentences/<lang>.txt, one per line in native script) are spoken by
synthetic speakers: one speaker is one espeak-ng voice variant at one speaking rate and one pitch. The
splits are built so that the test set measures generalisation, not memory:

  * train, dev and test speakers are disjoint, and dev and test use voice variants never heard in
    training (an unseen-voice test);
  * dev and test sentences never occur in train (nor in each other).

Audio goes through the shared conditioning chain (16 kHz mono, edges trimmed, level normalised) into
`<audio_dir>/<speaker>/<utt>-<text hash>.wav`; the hash keeps a rerun from reusing audio of a sentence
that has since been edited. A rerun skips every WAV that is already written and valid, and the output
is the same for the same sentences and seed whatever the number of jobs.

Writes `<out_dir>/{train,dev,test}_<lang>` and the unions `<out_dir>/{train,dev,test}_all`, each
validated. The languages' roles (espnet_ext/languages.py) decide what each gets: an adapter language
all three splits and a place in the `_all` unions; a LID-only one (English) all three splits but no
place in the unions (the adapters never train on it; stage 4's LID does); an out-of-set one a test set
only, of OUT_OF_SET_FRACTION x --utts_per_split utterances by the test voices, all of its sentences
held out, and the union `test_oos`.

Usage:
    local/prepare_tts_corpus.py --out_dir data                     # every language of the table, default size
    local/prepare_tts_corpus.py --out_dir data --langs hi te --utts_per_split 40 --nj 2
"""
import argparse
import hashlib
import logging
import math
import random
import shutil
import subprocess
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf

from espnet_ext.data.audio import SAMPLE_RATE, AudioError, condition, existing_wav_duration, write_wav
from espnet_ext.data.corpus import (
    LOG_FORMAT, check_out_dir, exit_on_bad_input, run_parallel, wav_path, write_unions, write_validated,
)
from espnet_ext.data.kaldi import DataDirError, Utterance, normalize_text
from espnet_ext.languages import LANGUAGES, get_language, script_fraction

log = logging.getLogger("prepare_tts_corpus")

SPLITS = ("train", "dev", "test")
# espeak-ng voice variants (`espeak-ng --voices=variant`), chosen among the plain human-like ones; the
# dev and test variants are never used in train, which makes their speakers unseen voices.
VARIANTS = {
    "train": ("m1", "m2", "m3", "m4", "f1", "f2", "f3", "klatt"),
    "dev": ("m5", "f4"),
    "test": ("m6", "f5"),
}
RATES = (140, 175)  # words per minute (espeak-ng's default is 175)
PITCHES = (35, 65)  # 0-99 (default 50)
EVAL_SENTENCE_FRACTION = 0.2  # at most this share of a language's sentences goes to each of dev and test
DEFAULT_UTTS_PER_SPLIT = 100
# training utterances per language = this x utts_per_split unless given: at the default size every one of
# a language's ~200 training sentences is spoken by two voices (the adapters learn the language, not the
# sentences: measured in the README's stage-3 ablations)
TRAIN_UTTS_FACTOR = 4
DEFAULT_SENTENCES_DIR = Path(__file__).resolve().parent / "sentences"
MIN_SCRIPT_FRACTION = 0.5  # below this a line is in the wrong script: probably another language's file
OUT_OF_SET_FRACTION = 0.5  # an out-of-set language's test size, as a share of --utts_per_split
OUT_OF_SET_UNION = "test_oos"


@dataclass(frozen=True)
class Voice:
    """A synthetic speaker: one espeak-ng variant at one rate and pitch."""

    lang: str
    variant: str
    rate: int
    pitch: int

    @property
    def speaker_id(self) -> str:
        """Fixed-width numbers and '-' separators keep speaker order and utterance order in agreement."""
        return f"{self.lang}-{self.variant}-s{self.rate:03d}-p{self.pitch:03d}"

    @property
    def espeak_voice(self) -> str:
        return f"{get_language(self.lang).espeak_voice}+{self.variant}"


@dataclass(frozen=True)
class SynthJob:
    """One utterance to synthesise (picklable, for the worker processes)."""

    utt_id: str
    voice: Voice
    text: str
    wav: Path


def read_sentences(path: Path, lang: str) -> List[Tuple[int, str]]:
    """(line number, sentence) pairs: NFC, blank lines skipped, duplicates dropped, script checked."""
    if not path.is_file():
        raise DataDirError(path, None, f"sentence list for {lang!r} not found",
                           "write one native-script sentence per line there, or pass --sentences_dir")
    script = get_language(lang).script
    sentences, seen = [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = normalize_text(line)
        if not text or text in seen:
            continue
        fraction = script_fraction(text, lang)
        if fraction < MIN_SCRIPT_FRACTION:
            raise DataDirError(path, number, f"only {fraction:.0%} of the letters are {script}",
                               f"this file must hold {get_language(lang).name} in {script} script")
        seen.add(text)
        sentences.append((number, text))
    return sentences


def split_sentences(sentences: Sequence[Tuple[int, str]], utts_per_split: int, rng: random.Random,
                    path: Path) -> Dict[str, List[Tuple[int, str]]]:
    """Disjoint sentence sets: dev and test each get min(utts_per_split, 20% of the sentences), train the
    rest, so that held-out sentences repeat as little as the sentence list allows."""
    shuffled = list(sentences)
    rng.shuffle(shuffled)
    n_eval = min(utts_per_split, max(1, int(len(shuffled) * EVAL_SENTENCE_FRACTION)))
    if len(shuffled) < 2 * n_eval + 1:
        raise DataDirError(path, None, f"{len(shuffled)} distinct sentences are too few for three "
                           "disjoint splits", "add sentences (at least 3; hundreds for a useful corpus)")
    return {"test": shuffled[:n_eval], "dev": shuffled[n_eval:2 * n_eval], "train": shuffled[2 * n_eval:]}


def voices_for(lang: str, split: str) -> List[Voice]:
    """Every variant x rate x pitch combination of a split, in a fixed order."""
    return [Voice(lang, v, r, p) for v in VARIANTS[split] for r in RATES for p in PITCHES]


def pair_up(sentences: Sequence[Tuple[int, str]], voices: Sequence[Voice], count: int,
            where: str) -> List[Tuple[Voice, int, str]]:
    """`count` distinct (voice, sentence) pairs, balanced: every sentence is used once before any twice,
    and round k gives sentence i to voice (i + k) mod V, so no voice says a sentence twice."""
    capacity = len(sentences) * len(voices)
    if count > capacity:
        raise ValueError(f"{where}: {count} utterances requested but only {len(sentences)} sentences x "
                         f"{len(voices)} voices = {capacity} distinct pairs; lower --utts_per_split or add "
                         "sentences")
    pairs = []
    for k in range(math.ceil(count / len(sentences))):
        for i, (number, text) in enumerate(sentences):
            pairs.append((voices[(i + k) % len(voices)], number, text))
    return pairs[:count]


def plan_language(lang: str, sentences_dir: Path, audio_dir: Path, utts_per_split: int,
                  seed: int, train_utts: Optional[int] = None) -> Dict[str, List[SynthJob]]:
    """The jobs of every split of one language; depends only on the sentences, the sizes and the seed.

    The sentence split depends on `utts_per_split` only, so a larger `train_utts` adds training
    utterances (a superset of the smaller train set) and leaves dev and test exactly as they were.
    """
    path = sentences_dir / f"{lang}.txt"
    sentences = read_sentences(path, lang)
    if get_language(lang).role == "out_of_set":  # never trained on: every sentence is a test sentence
        by_split = {"test": sentences}
        counts = {"test": max(1, int(OUT_OF_SET_FRACTION * utts_per_split))}
    else:
        by_split = split_sentences(sentences, utts_per_split, random.Random(f"{seed}:{lang}"), path)
        counts = {"train": train_utts or TRAIN_UTTS_FACTOR * utts_per_split, "dev": utts_per_split,
                  "test": utts_per_split}
    plan = {}
    for split in by_split:
        pairs = pair_up(by_split[split], voices_for(lang, split), counts[split], f"{lang} {split}")
        plan[split] = [_job(voice, number, text, audio_dir) for voice, number, text in pairs]
    log.info("%s (%s): %d sentences -> %s %s sentences, %s utterances", lang, get_language(lang).role,
             len(sentences), "/".join(by_split), "/".join(str(len(v)) for v in by_split.values()),
             "/".join(str(v) for v in counts.values()))
    return plan


def _job(voice: Voice, line_number: int, text: str, audio_dir: Path) -> SynthJob:
    """Name an utterance `<speaker>-<sentence line number>`; the file name adds a hash of the text."""
    utt_id = f"{voice.speaker_id}-{line_number:04d}"
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    return SynthJob(utt_id, voice, text, wav_path(audio_dir, f"{utt_id}-{digest}", voice.speaker_id))


def speak(voice: Voice, text: str, what: str) -> np.ndarray:
    """`text` in `voice`, through the shared conditioning chain (16 kHz mono, trimmed, level normalised);
    `what` names the utterance in errors."""
    cmd = ["espeak-ng", "-v", voice.espeak_voice, "-s", str(voice.rate), "-p", str(voice.pitch),
           "-b", "1", "--stdout"]  # text on stdin: a sentence starting with '-' is not an option
    result = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        raise AudioError(f"{what}: {' '.join(cmd)} failed: {result.stderr.decode(errors='replace')}")
    wave, sample_rate = sf.read(BytesIO(result.stdout), dtype="float32", always_2d=True)
    try:
        return condition(wave, sample_rate)
    except AudioError as err:
        raise AudioError(f"{what} ({text!r}): {err}") from None


def synthesize(job: SynthJob) -> float:
    """Worker: speak one sentence unless its valid WAV exists already; returns the duration."""
    duration = existing_wav_duration(job.wav)
    if duration is not None:
        return duration
    out = speak(job.voice, job.text, job.utt_id)
    write_wav(job.wav, out)
    return len(out) / SAMPLE_RATE


def _espeak_names(option: str) -> set:
    """Names in the File column of `espeak-ng --voices[=variant]`, without their folder."""
    listing = subprocess.run(["espeak-ng", option], capture_output=True, text=True, check=True).stdout
    return {line.split()[4].split("/")[-1] for line in listing.splitlines()[1:] if len(line.split()) > 4}


def check_espeak(langs: Sequence[str]) -> None:
    """Fail early, naming what is missing: espeak-ng falls back to its default voice silently."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng not found; install it: apt-get install espeak-ng")
    voices, variants = _espeak_names("--voices"), _espeak_names("--voices=variant")
    missing = [voice for voice in (get_language(lang).espeak_voice for lang in langs) if voice not in voices]
    missing += [v for split in SPLITS for v in VARIANTS[split] if v not in variants]
    if missing:
        raise RuntimeError(f"espeak-ng lacks voice(s)/variant(s) {', '.join(missing)}; "
                           "install the full espeak-ng-data package")


def prepare_tts_corpus(out_dir: Path, langs: Sequence[str] = tuple(LANGUAGES),
                       sentences_dir: Path = DEFAULT_SENTENCES_DIR, audio_dir: Optional[Path] = None,
                       utts_per_split: int = DEFAULT_UTTS_PER_SPLIT, nj: int = 2,
                       seed: int = 0, train_utts: Optional[int] = None) -> Dict[str, List[Utterance]]:
    """Synthesise, write and validate every `<split>_<lang>` and `<split>_all` dir; returns them by name."""
    langs = [get_language(lang).code for lang in langs]
    check_out_dir(out_dir)
    audio_dir = Path(audio_dir) if audio_dir is not None else Path(out_dir) / "local" / "tts_wav"
    if utts_per_split < 1 or (train_utts is not None and train_utts < 1):
        raise ValueError(f"--utts_per_split and --train_utts must be >= 1, got {utts_per_split}, {train_utts}")
    check_espeak(langs)
    plans = {lang: plan_language(lang, Path(sentences_dir), audio_dir, utts_per_split, seed, train_utts)
             for lang in langs}
    jobs = [job for plan in plans.values() for split_jobs in plan.values() for job in split_jobs]
    durations = dict(zip((job.utt_id for job in jobs), run_parallel(synthesize, jobs, nj, "synthesising")))
    written = {}
    for lang, plan in plans.items():
        for split, split_jobs in plan.items():
            written[f"{split}_{lang}"] = [
                Utterance(job.utt_id, job.voice.speaker_id, job.text, lang, str(job.wav), durations[job.utt_id])
                for job in split_jobs
            ]
            write_validated(Path(out_dir) / f"{split}_{lang}", written[f"{split}_{lang}"])
    role = {name: get_language(name.rsplit("_", 1)[1]).role for name in written}
    out_of_set = [u for name, utts in written.items() if role[name] == "out_of_set" for u in utts]
    written.update(write_unions(Path(out_dir), {n: u for n, u in written.items() if role[n] == "adapter"}))
    if out_of_set:
        write_validated(Path(out_dir) / OUT_OF_SET_UNION, out_of_set)
        written[OUT_OF_SET_UNION] = out_of_set
    return written


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", type=Path, required=True, help="where the Kaldi data dirs go (data/)")
    parser.add_argument("--langs", nargs="+", default=list(LANGUAGES), help="language codes")
    parser.add_argument("--sentences_dir", type=Path, default=DEFAULT_SENTENCES_DIR,
                        help="folder of <lang>.txt sentence lists")
    parser.add_argument("--audio_dir", type=Path, default=None, help="where WAVs go (<out_dir>/local/tts_wav)")
    parser.add_argument("--utts_per_split", type=int, default=DEFAULT_UTTS_PER_SPLIT,
                        help="dev and test utterances per language")
    parser.add_argument("--train_utts", type=int, default=None,
                        help=f"training utterances per language (default: {TRAIN_UTTS_FACTOR} x --utts_per_split)")
    parser.add_argument("--nj", type=int, default=2, help="parallel synthesis processes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sentence split")
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    start = time.time()
    with exit_on_bad_input("prepare_tts_corpus.py"):
        written = prepare_tts_corpus(args.out_dir, args.langs, args.sentences_dir, args.audio_dir,
                                     args.utts_per_split, args.nj, args.seed, args.train_utts)
    log.info("wrote %d data dirs under %s in %.1f s", len(written), args.out_dir, time.time() - start)


if __name__ == "__main__":
    main()
