"""Deterministic subsets of a data dir, written as Kaldi dirs so every reader of data dirs takes them: the
probe subset the representation and layer-importance analyses share, and the few-shot training subsets.

Utterances are taken round-robin over the speakers (speakers, and each speaker's utterances, in id order):
ids start with the speaker, so the first n by id would hear one or two voices, and a probe of "language"
could read the voice instead. Each smaller subset lies inside every larger one.
"""
import itertools
from pathlib import Path
from typing import Dict, List, Sequence

from espnet_ext.data.kaldi import Utterance, read_data_dir, write_data_dir


def over_speakers(utterances: Sequence[Utterance], n: int) -> List[Utterance]:
    """The first `n` of `utterances` taken round-robin over their speakers, in id order."""
    by_speaker: Dict[str, List[Utterance]] = {}
    for utt in sorted(utterances, key=lambda u: u.utt_id):
        by_speaker.setdefault(utt.speaker, []).append(utt)
    rounds = itertools.zip_longest(*(by_speaker[s] for s in sorted(by_speaker)))
    order = [utt for row in rounds for utt in row if utt is not None]
    return sorted(order[:n], key=lambda u: u.utt_id)


def write_subset(out_dir: Path, chosen: Sequence[Utterance]) -> Path:
    """`out_dir` holding `chosen`; kept as it is when it already holds them (a rerun reads the same subset)."""
    out_dir = Path(out_dir)
    if (out_dir / "wav.scp").is_file() and [u.utt_id for u in read_data_dir(out_dir)] == [u.utt_id for u in chosen]:
        return out_dir
    write_data_dir(out_dir, chosen)
    return out_dir


def probe_subset(data_dir: Path, per_language: int, out_dir: Path) -> Path:
    """Write `out_dir`: `per_language` utterances of every language of `data_dir`, spread over its speakers."""
    by_lang: Dict[str, List[Utterance]] = {}
    for utt in read_data_dir(data_dir):
        by_lang.setdefault(utt.lang, []).append(utt)
    chosen = sorted((u for utts in by_lang.values() for u in over_speakers(utts, per_language)), key=lambda u: u.utt_id)
    return write_subset(out_dir, chosen)
