"""Error counts and WER/CER in Python (jiwer), for validation during training and for checking sclite.

Both functions normalise with `normalize_text` first, so a WER printed during training and the one in
the decode dir's result.txt (sclite) measure the same thing. Characters are Unicode code points and the
space between words counts as a character, as in ESPnet's char tokeniser and sclite's CER trn files:
a Devanagari syllable such as "स्ते" is four characters (स ् त े).
"""
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import jiwer

from espnet_ext.scoring.normalize import normalize_text


@dataclass(frozen=True)
class ErrorCounts:
    """Edit-distance counts of one or many utterances against `ref_tokens` reference tokens."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    ref_tokens: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> Optional[float]:
        """Error rate in percent; None when there are no reference tokens (a rate is undefined)."""
        return 100.0 * self.errors / self.ref_tokens if self.ref_tokens else None

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.ref_tokens + other.ref_tokens,
        )

    def as_dict(self) -> Dict[str, Optional[float]]:
        """JSON form: the rate plus every count it was computed from."""
        return {
            "rate": self.rate,
            "errors": self.errors,
            "substitutions": self.substitutions,
            "deletions": self.deletions,
            "insertions": self.insertions,
            "ref_tokens": self.ref_tokens,
        }


def _counts(process, refs: Sequence[str], hyps: Sequence[str]) -> ErrorCounts:
    """Normalise both sides and total jiwer's alignment counts over all pairs."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses; pair them one to one")
    out = process([normalize_text(r) for r in refs], [normalize_text(h) for h in hyps])
    ref_tokens = out.hits + out.substitutions + out.deletions
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, ref_tokens)


def word_error_counts(refs: Sequence[str], hyps: Sequence[str]) -> ErrorCounts:
    """Word-level counts over all (reference, hypothesis) pairs."""
    return _counts(jiwer.process_words, refs, hyps)


def char_error_counts(refs: Sequence[str], hyps: Sequence[str]) -> ErrorCounts:
    """Character-level (code points, spaces included) counts over all pairs."""
    return _counts(jiwer.process_characters, refs, hyps)


def wer(refs: Sequence[str], hyps: Sequence[str]) -> Optional[float]:
    """Word error rate in percent (None without reference words)."""
    return word_error_counts(refs, hyps).rate


def cer(refs: Sequence[str], hyps: Sequence[str]) -> Optional[float]:
    """Character error rate in percent (None without reference characters)."""
    return char_error_counts(refs, hyps).rate
