#!/usr/bin/env python3
"""Degraded copies of a data dir, one per condition, written beside it as `<src>_<condition>`:

  tel     telephone channel: 8 kHz, band-pass 300-3400 Hz, back to 16 kHz
  mp3     MP3 at 16 kbit/s (MPEG-2 Layer III, libmp3lame) and decoded again
  opus    Opus at 12 kbit/s (libopus, in Ogg) and decoded again
  snr<N>  pink, brown or babble noise (5 other utterances of the dir, summed) at N dB SNR, e.g. snr10;
          the kind is drawn per utterance (`utt2noise`), and an utterance gets the same noise at every N
  reverb  a simulated room (image method, shoebox 3x3x2.5 to 10x8x4 m, RT60 0.2-0.8 s: `utt2rt60`)
  voice   pitch and formants shifted together by 2-5 semitones up or down (sox `pitch`: `utt2semitones`)

The transforms are espnet_ext/data/degrade.py's. Same utterance ids, transcripts, speakers and languages
as the source, and the same durations, so each copy is scored like it. An utterance's degradation depends
only on `--seed` and its id (and, for babble, on which other utterances the dir holds), so a rerun gives
the same audio. WAVs go to `<src's parent>/local/<copy's name>_wav/`, written atomically; each data dir
is written last and validated. An output that would clip is scaled down instead.

Usage:
    local/make_degraded.py --src data/test_all --conditions tel mp3 opus snr20 snr10 snr5 reverb voice
"""
import argparse
import hashlib
import logging
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from espnet_ext.data.audio import SAMPLE_RATE, utterance_audio, write_wav
from espnet_ext.data.corpus import exit_on_bad_input, run_parallel, write_validated
from espnet_ext.data.degrade import (BABBLE_TALKERS, DEFAULT_CONDITIONS, SNR_CONDITION, Params, apply_condition,
                                     check_condition, degraded_name)
from espnet_ext.data.kaldi import Utterance, read_data_dir, write_list

log = logging.getLogger("make_degraded")

PEAK = 0.99
# (utterance, its 16 kHz samples, its seed) -> degraded samples and {per-utterance list file: value}
Transform = Callable[[Utterance, np.ndarray, int], Tuple[np.ndarray, Params]]


def utterance_seed(seed: int, utt_id: str) -> int:
    """A seed from (seed, utterance id) alone, independent of order and subset."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{utt_id}".encode()).digest()[:8], "little")


def without_clipping(wave: np.ndarray) -> np.ndarray:
    """Scaled down to PEAK where it would clip: clipping would be a degradation of its own."""
    peak = float(np.abs(wave).max(initial=0.0))
    return wave * (PEAK / peak) if peak > PEAK else wave


def _degrade_one(transform: Transform, seed: int, job: Tuple[Utterance, Path]) -> Tuple[Utterance, Params]:
    """Worker: degrade one utterance, write its WAV, return its row of the new dir and its parameters."""
    utt, wav = job
    wave, params = transform(utt, utterance_audio(utt), utterance_seed(seed, utt.utt_id))
    write_wav(wav, without_clipping(wave))
    return Utterance(utt.utt_id, utt.speaker, utt.text, utt.lang, str(wav), len(wave) / SAMPLE_RATE), params


def degrade_data_dir(utts: Sequence[Utterance], dst: Path, transform: Transform, seed: int, nj: int = 1
                     ) -> List[Utterance]:
    """Write `dst` as `utts` passed through `transform`, with its parameters as per-utterance lists."""
    audio_dir = dst.parent / "local" / f"{dst.name}_wav"
    jobs = [(utt, audio_dir / f"{utt.utt_id}.wav") for utt in utts]
    results = run_parallel(partial(_degrade_one, transform, seed), jobs, nj, desc=f"-> {dst.name}")
    write_validated(dst, [utt for utt, _ in results])
    lists: Dict[str, Dict[str, str]] = {}
    for utt, params in results:
        for name, value in params.items():
            lists.setdefault(name, {})[utt.utt_id] = value
    for name, values in lists.items():
        write_list(dst / name, values)
    return [utt for utt, _ in results]


def _talkers(utt: Utterance, pool: Sequence[Utterance], rng: np.random.Generator) -> List[np.ndarray]:
    """The audio of up to BABBLE_TALKERS other utterances of the dir, drawn at random."""
    others = [other for other in pool if other.utt_id != utt.utt_id]
    picked = rng.choice(len(others), size=min(BABBLE_TALKERS, len(others)), replace=False)
    return [utterance_audio(others[i]) for i in sorted(picked)]


def _condition(name: str, pool: Sequence[Utterance], utt: Utterance, wave: np.ndarray, seed: int
               ) -> Tuple[np.ndarray, Params]:
    """A Transform for one condition; noise conditions take their babble talkers from `pool`."""
    rng = np.random.default_rng(seed)
    talkers = _talkers(utt, pool, rng) if SNR_CONDITION.fullmatch(name) else ()
    return apply_condition(name, wave, rng, talkers)


def make_degraded(src: Path, conditions: Sequence[str] = DEFAULT_CONDITIONS, seed: int = 0, nj: int = 1
                  ) -> Dict[str, List[Utterance]]:
    """Write `<src>_<condition>` beside `src` for each condition; returns each new dir's utterances."""
    for name in conditions:
        check_condition(name)
    utts = read_data_dir(src)
    written = {}
    for name in conditions:
        dst = src.parent / degraded_name(src.name, name)
        written[name] = degrade_data_dir(utts, dst, partial(_condition, name, utts), seed, nj)
        log.info("%s: %d utterances, %s", dst, len(utts), name)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="the clean data dir")
    parser.add_argument("--conditions", nargs="+", default=list(DEFAULT_CONDITIONS),
                        help=f"which copies to write (default: {' '.join(DEFAULT_CONDITIONS)})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nj", type=int, default=2, help="parallel processes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with exit_on_bad_input(parser.prog):
        make_degraded(args.src, args.conditions, args.seed, args.nj)


if __name__ == "__main__":
    main()
