"""NIST sclite, driven the way ESPnet's asr.sh drives it, and its report parsed back into numbers.

trn files hold one utterance a line, `<tokens> (<id>)`. With `-i rm` sclite takes the speaker to be the
id's text before its first '-', so ids are written `<speaker>-<uttid>` (as asr.sh does) with any '-'
inside the speaker written as '_'. sclite lowercases ids in its report, so callers look ids up
lowercased.

Word scoring feeds sclite normalised words. Character scoring feeds it one code point per token with
the space between words written `<space>` (ESPnet's char tokeniser), plus asr.sh's `-c NOASCII DH`;
on text that is already split these change nothing, and they keep the command identical to ESPnet's.

Text must come from `normalize_text`: it removes every character the trn syntax gives a meaning to
(parentheses, braces and '/' of alternations, '%' and '-' of hesitations and fragments, ';;' comments),
so sclite sees plain tokens only.
"""
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

from espnet_ext.fileio import atomic_open, atomic_write_bytes
from espnet_ext.scoring import ScoringError
from espnet_ext.scoring.metrics import ErrorCounts

DEBIAN_SCLITE = "/usr/lib/sctk/bin/sclite"  # Debian's sctk package does not put sclite on PATH
SPACE_TOKEN = "<space>"
_UNIT_OPTIONS = {"word": [], "char": ["-c", "NOASCII", "DH"]}

# Per-utterance block of the pralign report, and the count row ("Sum") of the rsum table.
_ID_RE = re.compile(r"^id: \((\S+)\)\s*$")
_SCORES_RE = re.compile(r"^Scores: \(#C #S #D #I\)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")
_SUM_RE = re.compile(r"^\s*\|\s*Sum\s*\|\s*(\d+)\s+(\d+)\s*\|\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\|")


@dataclass(frozen=True)
class ScliteReport:
    """What we read back from sclite: the totals and each utterance's counts and alignment lines."""

    total: ErrorCounts
    utterances: Dict[str, ErrorCounts]  # keyed by trn id, lowercased as sclite prints it
    alignments: Dict[str, str]  # trn id -> the "REF:/HYP:/Eval:" lines


def find_sclite(explicit: Optional[str] = None) -> str:
    """Path of the sclite binary: `explicit`, else `sclite` on PATH, else Debian's location."""
    candidates = [explicit] if explicit else [shutil.which("sclite"), DEBIAN_SCLITE]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise ScoringError(
        f"sclite not found (looked for {explicit or 'sclite on PATH and ' + DEBIAN_SCLITE}); "
        "install it with `apt-get install sctk` or pass its path with --sclite"
    )


def trn_id(uttid: str, speaker: str) -> str:
    """The id of an utterance in a trn file: `<speaker>-<uttid>`, see the module docstring."""
    return f"{speaker.replace('-', '_')}-{uttid}"


def char_tokens(text: str) -> str:
    """Split normalised text into space-separated code points, the space itself as `<space>`."""
    return " ".join(SPACE_TOKEN if ch == " " else ch for ch in text)


def write_trn(path: Path, lines: Iterable[Tuple[str, str]]) -> None:
    """Write (tokens, id) pairs as a trn file; parentheses in the tokens would end the text early."""
    with atomic_open(path) as f:
        for tokens, utt in lines:
            if "(" in tokens or ")" in tokens or not re.fullmatch(r"[^\s()]+", utt):
                raise ScoringError(f"{path}: cannot write {tokens!r} ({utt!r}) to a trn file: rename the "
                                   "utterance so its id has no parentheses (and normalise the text)")
            f.write(f"{tokens} ({utt})\n")


def parse_report(text: str) -> ScliteReport:
    """Read the totals and per-utterance blocks of `sclite -o all` and check they agree."""
    utterances: Dict[str, ErrorCounts] = {}
    alignments: Dict[str, list] = {}
    total, current = None, None
    for line in text.splitlines():
        if m := _SUM_RE.match(line):
            _snt, words, _corr, sub, dele, ins, _err, _serr = map(int, m.groups())
            total = ErrorCounts(sub, dele, ins, words)
        elif m := _ID_RE.match(line):
            current = m.group(1)
            alignments[current] = []
        elif current and (m := _SCORES_RE.match(line)):
            corr, sub, dele, ins = map(int, m.groups())
            utterances[current] = ErrorCounts(sub, dele, ins, corr + sub + dele)
        elif current and line.startswith(("REF:", "HYP:", "Eval:")):
            alignments[current].append(line.rstrip())
    if total is None or sum(utterances.values(), ErrorCounts()) != total:
        raise ScoringError("sclite's report has no count summary or its utterances do not add up to it; "
                           "is this `sclite -o all` output?")
    return ScliteReport(total, utterances, {k: "\n".join(v) for k, v in alignments.items()})


def run_sclite(sclite: str, ref_trn: Path, hyp_trn: Path, result_txt: Path, unit: str) -> ScliteReport:
    """Score `hyp_trn` against `ref_trn` in `unit`s ("word" or "char"), keep the report in `result_txt`."""
    cmd = [sclite, "-r", str(ref_trn), "trn", "-h", str(hyp_trn), "trn", "-i", "rm",
           "-o", "all", "stdout", "-e", "utf-8", *_UNIT_OPTIONS[unit]]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        output = proc.stdout.decode("utf-8", errors="replace")[-2000:]
        raise ScoringError(f"sclite failed (exit {proc.returncode}): {' '.join(cmd)}\n{output}")
    atomic_write_bytes(result_txt, proc.stdout)
    return parse_report(proc.stdout.decode("utf-8", errors="replace"))
