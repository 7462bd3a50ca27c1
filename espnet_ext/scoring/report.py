"""Score one decode dir with sclite and write what a person and the results table read.

Layout written into the decode dir (word trn files at the top, as the rest of the recipe expects):

    ref.trn, hyp.trn                     normalised words, ids `<speaker>-<uttid>`
    score_wer/result.txt                 sclite's full word report (per-speaker summary, every alignment)
    score_cer/{ref,hyp}.trn, result.txt  the same in characters
    scores.json                          WER/CER with sub/del/ins/N, overall ("all") and per language;
                                         per utterance its language, errors and tokens (for paired
                                         comparisons between systems)
    result.txt                           the summary table, pointers to the above, and the word
                                         alignment of every utterance with an error, by language

Per-language numbers are sums of sclite's own per-utterance counts, so one sclite run per unit scores
every language and the totals are checked against sclite's summary line.
"""
import json
import logging
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_ext.data.kaldi import DataDirError, read_entries
from espnet_ext.fileio import atomic_write_text
from espnet_ext.languages import LANGUAGES, get_language
from espnet_ext.scoring import ScoringError
from espnet_ext.scoring.metrics import ErrorCounts
from espnet_ext.scoring.normalize import normalize_text
from espnet_ext.scoring.sclite import ScliteReport, char_tokens, find_sclite, run_sclite, trn_id, write_trn

log = logging.getLogger(__name__)

ALL = "all"  # the key of the overall scores, beside the language codes


@dataclass(frozen=True)
class Utterance:
    uttid: str
    speaker: str
    lang: str
    ref: str  # normalised
    hyp: str  # normalised; empty when the decoder produced nothing

    @property
    def sclite_id(self) -> str:
        """The id written into the trn files."""
        return trn_id(self.uttid, self.speaker)

    @property
    def key(self) -> str:
        """The id as sclite's report prints it (lowercased)."""
        return self.sclite_id.lower()


def read_kaldi_map(path: Path, allow_empty_value: bool = False) -> Dict[str, str]:
    """Read a Kaldi `<key> <value>` list (text, utt2spk, utt2lang) into a dict, failing on bad lines."""
    if not path.is_file():
        raise ScoringError(f"{path}: no such file; pass the right path (see --help)")
    try:
        entries = read_entries(path)
    except DataDirError as e:
        raise ScoringError(str(e)) from None
    table: Dict[str, str] = {}
    for entry in entries:
        if not entry.value and not allow_empty_value:
            raise ScoringError(f"{path}:{entry.line}: no value after {entry.key!r}; give it one or remove the line")
        if entry.key in table:
            raise ScoringError(f"{path}:{entry.line}: duplicate key {entry.key!r}; each id may appear once")
        table[entry.key] = entry.value
    return table


def _lookup(table: Dict[str, str], uttid: str, path: Path) -> str:
    if uttid not in table:
        raise ScoringError(f"{path}: no entry for utterance {uttid!r}; it must list every utterance of the reference")
    return table[uttid]


def load_utterances(
    ref_text: Path, hyp_text: Path, utt2spk: Path, utt2lang: Optional[Path]
) -> Tuple[List[Utterance], List[str]]:
    """Pair references with hypotheses; returns the utterances and the ids that had no hypothesis."""
    refs = read_kaldi_map(ref_text, allow_empty_value=True)
    hyps = read_kaldi_map(hyp_text, allow_empty_value=True)
    if not refs:
        raise ScoringError(f"{ref_text}: no utterances; score against a non-empty data dir text")
    extra = sorted(set(hyps) - set(refs))
    if extra:
        raise ScoringError(f"{hyp_text}: {len(extra)} hypotheses have no reference in {ref_text} (e.g. "
                           f"{extra[0]!r}); is --ref_text the data dir this decode dir was decoded from?")
    missing = sorted(set(refs) - set(hyps))
    if missing:
        log.warning("%s: %d of %d utterances have no hypothesis and are scored as empty (e.g. %s)",
                    hyp_text, len(missing), len(refs), missing[0])
    speakers = read_kaldi_map(utt2spk)
    langs = read_kaldi_map(utt2lang) if utt2lang else {}
    utts = [
        Utterance(
            uttid,
            _lookup(speakers, uttid, utt2spk),
            _lookup(langs, uttid, utt2lang) if utt2lang else ALL,
            normalize_text(ref),
            normalize_text(hyps.get(uttid, "")),
        )
        for uttid, ref in refs.items()
    ]
    for lang in {u.lang for u in utts} - {ALL}:
        try:
            get_language(lang)
        except ValueError as e:
            raise ScoringError(f"{utt2lang}: {e}") from None
    return utts, missing


def _check_ids_differ_beyond_case(utts: List[Utterance]) -> None:
    """sclite lowercases ids, so two utterances whose trn ids differ only in case would be confused."""
    seen: Dict[str, str] = {}
    for u in utts:
        if seen.setdefault(u.key, u.uttid) != u.uttid:
            raise ScoringError(f"utterance ids {seen[u.key]!r} and {u.uttid!r} (with their speakers) differ "
                               "only in case, which sclite cannot tell apart; rename one in the data dir")


def _score_unit(decode_dir: Path, sclite: str, utts: List[Utterance], unit: str) -> ScliteReport:
    """Write one unit's trn files and run sclite on them."""
    if unit == "word":
        ref_trn, hyp_trn, tokens = decode_dir / "ref.trn", decode_dir / "hyp.trn", str
    else:
        ref_trn, hyp_trn, tokens = decode_dir / "score_cer/ref.trn", decode_dir / "score_cer/hyp.trn", char_tokens
    write_trn(ref_trn, ((tokens(u.ref), u.sclite_id) for u in utts))
    write_trn(hyp_trn, ((tokens(u.hyp), u.sclite_id) for u in utts))
    result = decode_dir / f"score_{'wer' if unit == 'word' else 'cer'}" / "result.txt"
    report = run_sclite(sclite, ref_trn, hyp_trn, result, unit)
    if set(report.utterances) != {u.key for u in utts}:
        raise ScoringError(f"{result}: sclite did not report every utterance of {ref_trn}; see the report")
    return report


def _language_order(langs) -> List[str]:
    """Languages in the language table's order, then the overall row."""
    return [code for code in LANGUAGES if code in langs] + [ALL]


def _summaries(utts: List[Utterance], words: ScliteReport, chars: ScliteReport) -> Dict[str, dict]:
    """Per language and overall: utterance count and the WER/CER counts summed from sclite's."""
    groups: Dict[str, List[str]] = {ALL: [u.key for u in utts]}
    for u in utts:
        if u.lang != ALL:
            groups.setdefault(u.lang, []).append(u.key)
    return {
        lang: {
            "utterances": len(groups[lang]),
            "wer": sum((words.utterances[i] for i in groups[lang]), ErrorCounts()).as_dict(),
            "cer": sum((chars.utterances[i] for i in groups[lang]), ErrorCounts()).as_dict(),
        }
        for lang in _language_order(groups)
    }


def score_decode_dir(
    decode_dir: Path,
    ref_text: Path,
    utt2spk: Path,
    utt2lang: Optional[Path] = None,
    sclite: Optional[str] = None,
) -> dict:
    """Score `decode_dir/text` against `ref_text`; writes the files listed in the module docstring."""
    decode_dir = Path(decode_dir)
    hyp_text = decode_dir / "text"
    utts, missing = load_utterances(Path(ref_text), hyp_text, Path(utt2spk), utt2lang and Path(utt2lang))
    _check_ids_differ_beyond_case(utts)
    sclite = find_sclite(sclite)
    words = _score_unit(decode_dir, sclite, utts, "word")
    chars = _score_unit(decode_dir, sclite, utts, "char")
    scores = {
        "decode_dir": str(decode_dir),
        "test_set": Path(ref_text).parent.name,
        "ref_text": str(ref_text),
        "hyp_text": str(hyp_text),
        "missing_hypotheses": missing,
        "scores": _summaries(utts, words, chars),
        "utterances": {u.uttid: {"lang": u.lang, "word_errors": words.utterances[u.key].errors,
                                 "words": words.utterances[u.key].ref_tokens,
                                 "char_errors": chars.utterances[u.key].errors,
                                 "chars": chars.utterances[u.key].ref_tokens} for u in utts},
    }
    atomic_write_text(decode_dir / "scores.json", json.dumps(scores, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(decode_dir / "result.txt", format_result(scores, utts, words))
    return scores


def _display_width(token: str) -> int:
    """Columns a terminal gives `token`: combining marks and format characters take none."""
    return sum(
        0 if unicodedata.category(ch) in ("Mn", "Me", "Cf") else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in token
    )


def _realign(block: str) -> str:
    """Re-pad sclite's REF/HYP/Eval lines by display width (sclite pads by bytes, skewing Indic text)."""
    fields = dict(line.split(":", 1) for line in block.splitlines())
    ref, hyp = fields.get("REF", "").split(), fields.get("HYP", "").split()
    if len(ref) != len(hyp):
        return block
    rows: Tuple[List[str], List[str], List[str]] = ([], [], [])
    for r, h in zip(ref, hyp):
        if set(r) == {"*"}:
            r, label = "*" * _display_width(h), "I"
        elif set(h) == {"*"}:
            h, label = "*" * _display_width(r), "D"
        else:
            label = "" if r.lower() == h.lower() else "S"
        width = max(_display_width(r), _display_width(h), 1)
        for row, tok in zip(rows, (r, h, label)):
            row.append(tok + " " * (width - _display_width(tok)))
    return "\n".join(f"{name:<5} {' '.join(row).rstrip()}" for name, row in zip(("REF:", "HYP:", "Eval:"), rows))


def format_rate(counts: dict) -> str:
    """A rate in percent with two decimals, or "-" where it is undefined (no reference tokens)."""
    return "-" if counts["rate"] is None else f"{counts['rate']:.2f}"


_TABLE_HEADER = ("lang", "utts", "words", "WER%", "sub", "del", "ins", "chars", "CER%", "sub", "del", "ins")


def _unit_cells(counts: dict) -> tuple:
    return counts["ref_tokens"], format_rate(counts), counts["substitutions"], counts["deletions"], counts["insertions"]


def _table(scores: Dict[str, dict]) -> List[str]:
    """One line per language and one for all: utterances, then words and characters with their errors."""
    rows = [_TABLE_HEADER] + [
        (lang, s["utterances"], *_unit_cells(s["wer"]), *_unit_cells(s["cer"])) for lang, s in scores.items()
    ]
    return [f"{row[0]:<5}" + "".join(f"{cell:>8}" for cell in row[1:]) for row in rows]


def format_result(scores: dict, utts: List[Utterance], words: ScliteReport) -> str:
    """The decode dir's result.txt: table, where the sclite reports are, and each erroneous alignment."""
    missing = scores["missing_hypotheses"]
    lines = [
        f"Scores of {scores['decode_dir']}",
        f"hypotheses: {scores['hyp_text']}",
        f"reference:  {scores['ref_text']}",
        "Both normalised by espnet_ext.scoring.normalize; rate = (sub + del + ins) / reference tokens;",
        "characters are Unicode code points, the space between words included.",
        "",
        *_table(scores["scores"]),
        "",
        f"Missing hypotheses, scored as empty: {len(missing)}" + (f" ({' '.join(missing)})" if missing else ""),
        "sclite reports (per-speaker summary and every utterance's alignment):",
        "  words:      score_wer/result.txt  (from ref.trn, hyp.trn)",
        "  characters: score_cer/result.txt  (from score_cer/ref.trn, score_cer/hyp.trn)",
    ]
    order = {code: k for k, code in enumerate(LANGUAGES)}
    wrong = [u for u in utts if words.utterances[u.key].errors]
    wrong.sort(key=lambda u: order.get(u.lang, len(order)))  # stable: reference order within a language
    lines += ["", f"Utterances with word errors: {len(wrong)} of {len(utts)}"]
    for u in wrong:
        c = words.utterances[u.key]
        lines += ["", f"{u.uttid} [{u.lang}, speaker {u.speaker}] sub={c.substitutions} del={c.deletions} "
                      f"ins={c.insertions} of {c.ref_tokens} words", _realign(words.alignments[u.key])]
    return "\n".join(lines) + "\n"
