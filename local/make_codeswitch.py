#!/usr/bin/env python3
"""Code-switched sets, synthesised like the default corpus from a split's own sentences and voices (the
test split's by default: nothing in them was heard in training), in the project plan's three kinds:

  inter  whole sentences alternate: A B, or A B A (e.g. a Hindi sentence, then an English one);
  intra  a phrase of B (2-4 words of one of B's sentences) inside a sentence of A, cut at a word boundary;
  rapid  phrases under RAPID_MAX_SECONDS (1-2 words each) alternating A B A B ...

A is an adapter language; B any other class of the LID (the other adapter languages and the LID-only
English, so Hindi-English and Telugu-English are among the pairs); utterance i of a kind takes the
i-th ordered pair, cycling, so every pair is covered about equally.

Each utterance is one synthetic bilingual speaker: a voice variant, rate and pitch of the split (every
language spoken by its own espeak-ng voice in that variant). Its pieces are spoken one by one and
joined with pauses of GAP_SECONDS, so the true boundaries are known to the sample: `segments_lang`
holds `utt start end lang` (seconds, exact multiples of 1/16000); the segments tile the utterance, each
holding its speech and the pause after it, so a switch lies where the next language starts speaking.
utt2lang holds the language spoken longest (what a single-routing decode is scored as).

Writes `<data_dir>/<split>_cs_<kind>` for each kind, WAVs under `<data_dir>/local/<split>_cs_wav/`;
deterministic for a seed.

Usage:
    local/make_codeswitch.py --data_dir data                    # data/test_cs_{inter,intra,rapid}, 50 each
    local/make_codeswitch.py --data_dir data --split dev --per_kind 20   # where the segmenter is tuned
"""
import argparse
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from tqdm import tqdm
from prepare_tts_corpus import PITCHES, RATES, VARIANTS, Voice, speak

from espnet_ext.data.audio import SAMPLE_RATE, write_wav
from espnet_ext.data.corpus import exit_on_bad_input, write_validated
from espnet_ext.data.kaldi import DataDirError, LanguageSegment, Utterance, read_data_dir, write_segments_lang
from espnet_ext.languages import ADAPTER_LANGUAGES, LID_LANGUAGES

log = logging.getLogger("make_codeswitch")

KINDS = ("inter", "intra", "rapid")
GAP_SECONDS = (0.05, 0.25)  # the pause between two pieces, drawn per gap
RAPID_MAX_SECONDS = 1.0  # a rapid-switching phrase is shorter than this
DEFAULT_PER_KIND = 50
Piece = Tuple[str, str]  # language, text


def language_pairs() -> List[Tuple[str, str]]:
    """Every ordered (A, B): A an adapter language, B another class of the LID."""
    return [(a, b) for a in ADAPTER_LANGUAGES for b in LID_LANGUAGES if b != a]


def read_split_sentences(data_dir: Path, split: str, langs: Sequence[str]) -> Dict[str, List[str]]:
    """The distinct sentences of `<split>_<lang>` for each language (the split's own: unseen in training)."""
    sentences = {}
    for lang in langs:
        source = data_dir / f"{split}_{lang}"
        if not (source / "text").is_file():
            raise DataDirError(source, None, "not found", "prepare the corpus first (./run.sh --stop_stage 1)")
        utterances = read_data_dir(source)
        other = next((u for u in utterances if u.lang != lang), None)
        if other is not None:  # the pieces' labels come from the dir's name: they must be its language
            raise DataDirError(source / "utt2lang", None, f"utterance {other.utt_id} is in '{other.lang}', not '{lang}'",
                               "give a dir per language, <split>_<lang>, holding that language only")
        sentences[lang] = sorted({utt.text for utt in utterances})
    return sentences


def plan_pieces(kind: str, a: str, b: str, sentences: Dict[str, List[str]], rng: random.Random) -> List[Piece]:
    """The (language, text) pieces of one utterance of `kind` switching between A and B."""
    if kind == "inter":
        pieces = [(a, rng.choice(sentences[a])), (b, rng.choice(sentences[b]))]
        return pieces + [(a, rng.choice(sentences[a]))] if rng.random() < 0.5 else pieces
    if kind == "intra":
        words = rng.choice([s for s in sentences[a] if len(s.split()) >= 2]).split()
        cut = rng.randrange(1, len(words))
        phrase = rng.choice(sentences[b]).split()
        length = min(len(phrase), rng.randint(2, 4))
        start = rng.randrange(0, len(phrase) - length + 1)
        return [(a, " ".join(words[:cut])), (b, " ".join(phrase[start:start + length])), (a, " ".join(words[cut:]))]
    if kind == "rapid":
        return [(lang, _short_phrase(sentences[lang], rng)) for lang in [a, b] * rng.randint(2, 3)]
    raise ValueError(f"unknown code-switch kind {kind!r}; the kinds are {', '.join(KINDS)}")


def _short_phrase(sentences: Sequence[str], rng: random.Random) -> str:
    words = rng.choice(sentences).split()
    length = min(len(words), rng.randint(1, 2))
    start = rng.randrange(0, len(words) - length + 1)
    return " ".join(words[start:start + length])


def speak_pieces(pieces: Sequence[Piece], variant: str, rate: int, pitch: int, kind: str,
                 rng: random.Random, what: str) -> Tuple[np.ndarray, List[LanguageSegment], List[Piece]]:
    """The pieces spoken by one bilingual speaker and joined with pauses: the audio, the segments (to the
    sample) and the pieces as spoken (a rapid piece of RAPID_MAX_SECONDS or longer is cut to its first
    word and respoken)."""
    waves, spoken = [], []
    for lang, text in pieces:
        wave = speak(Voice(lang, variant, rate, pitch), text, what)
        if kind == "rapid" and len(wave) >= RAPID_MAX_SECONDS * SAMPLE_RATE and " " in text:
            text = text.split()[0]
            wave = speak(Voice(lang, variant, rate, pitch), text, what)
        waves.append(wave)
        spoken.append((lang, text))
    gaps = [int(rng.uniform(*GAP_SECONDS) * SAMPLE_RATE) for _ in waves[1:]] + [0]
    segments, start = [], 0
    for (lang, _), wave, gap in zip(pieces, waves, gaps):
        end = start + len(wave) + gap
        segments.append(LanguageSegment(start / SAMPLE_RATE, end / SAMPLE_RATE, lang))
        start = end
    audio = np.concatenate([np.concatenate([w, np.zeros(g, np.float32)]) for w, g in zip(waves, gaps)])
    return audio, segments, spoken


@dataclass
class CodeSwitched:
    utt_id: str
    speaker: str
    audio: np.ndarray
    segments: List[LanguageSegment]
    pieces: List[Piece]  # as spoken, in order


def build_utterance(kind: str, index: int, split: str, sentences: Dict[str, List[str]], seed: int) -> CodeSwitched:
    """Utterance `index` of `kind`: its pair, speaker and pieces depend on (seed, split, kind, index) alone."""
    rng = random.Random(f"{seed}:{split}:{kind}:{index}")
    pairs = language_pairs()
    a, b = pairs[index % len(pairs)]
    variant, rate, pitch = rng.choice(VARIANTS[split]), rng.choice(RATES), rng.choice(PITCHES)
    speaker = f"cs-{variant}-s{rate:03d}-p{pitch:03d}"
    utt_id = f"{speaker}-{kind}{index:04d}-{a}-{b}"
    audio, segments, pieces = speak_pieces(plan_pieces(kind, a, b, sentences, rng), variant, rate, pitch, kind,
                                           rng, utt_id)
    return CodeSwitched(utt_id, speaker, audio, segments, pieces)


def make_codeswitch(data_dir: Path, split: str = "test", per_kind: int = DEFAULT_PER_KIND, seed: int = 0,
                    kinds: Sequence[str] = KINDS) -> Dict[str, List[Utterance]]:
    """Write `<data_dir>/<split>_cs_<kind>` (with segments_lang) for each kind; returns them by name."""
    if per_kind < 1:
        raise ValueError(f"--per_kind must be >= 1, got {per_kind}")
    sentences = read_split_sentences(data_dir, split, LID_LANGUAGES)
    audio_dir, written = data_dir / "local" / f"{split}_cs_wav", {}
    for kind in kinds:
        name, utterances, segments = f"{split}_cs_{kind}", [], {}
        for i in tqdm(range(per_kind), desc=name, unit="utt"):
            utt = build_utterance(kind, i, split, sentences, seed)
            wav = audio_dir / f"{utt.utt_id}.wav"
            write_wav(wav, utt.audio)
            segments[utt.utt_id] = utt.segments
            spoken = {lang: sum(s.end - s.start for s in utt.segments if s.lang == lang) for lang in LID_LANGUAGES}
            utterances.append(Utterance(utt.utt_id, utt.speaker, " ".join(text for _, text in utt.pieces),
                                        max(spoken, key=spoken.get), str(wav), len(utt.audio) / SAMPLE_RATE))
        write_validated(data_dir / name, utterances)
        write_segments_lang(data_dir / name, segments)
        switches = sum(len(s) - 1 for s in segments.values())
        log.info("%s: %d utterances, %d switches, %.1f min", name, len(utterances), switches,
                 sum(u.duration for u in utterances) / 60)
        written[name] = utterances
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, required=True, help="the corpus' data/ (holds <split>_<lang>)")
    parser.add_argument("--split", default="test", choices=sorted(VARIANTS), help="whose sentences and voices")
    parser.add_argument("--per_kind", type=int, default=DEFAULT_PER_KIND, help="utterances per kind")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with exit_on_bad_input(parser.prog):
        make_codeswitch(args.data_dir, args.split, args.per_kind, args.seed, args.kinds)


if __name__ == "__main__":
    main()
