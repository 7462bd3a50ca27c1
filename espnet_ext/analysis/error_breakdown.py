"""Where a system's word errors come from, per language: words never seen in its training text against
words it saw, word-boundary errors (two reference words written as one, or one split in two), the
characters it confuses most, and how many of its character substitutions are between phonetically close
characters, against the share expected by chance (`close_by_chance`). sclite counts the errors; this
sorts them by kind.

Phonetically close (`close_kind`): in the Brahmic scripts (Devanagari, Gurmukhi, Telugu) a character's
offset in its Unicode block says what it is, a layout all of them inherit from ISCII (The Unicode
Standard, ch. 12, "South Asia-I"): the stop consonants come in five rows (vargas) by place of articulation,
each row voiceless, voiceless aspirated, voiced, voiced aspirated, nasal; two consonants of one row differ
only in voicing, aspiration or nasality ("place"); a retroflex and the dental of the same column (t/T, n/N)
differ only in where the tongue touches ("retroflex"); the sibilants sha, ssa, sa likewise ("sibilant").
Vowel letters and vowel signs that differ only in length
(i/ii, u/uu; e/ai and o/au, which these languages pronounce as long monophthong pairs) are "length". In the
Latin script (Italian): consonants that differ only in voicing (p/b, t/d, c/g, f/v, s/z) and a vowel against
its accented form ("voicing", "accent").

Texts are compared after the scoring normaliser (espnet_ext.scoring.normalize), as sclite scored them;
the alignment is jiwer's (minimum edit distance), per utterance.
"""
from collections import Counter
from typing import Dict, Iterable, List, Mapping, Optional, Set

from espnet_ext.scoring.normalize import normalize_text


_VARGA_STARTS = {0x15: "velar", 0x1A: "palatal", 0x1F: "retroflex", 0x24: "dental", 0x2A: "labial"}
_LENGTH_PAIRS = {frozenset(p) for p in ((0x07, 0x08), (0x09, 0x0A), (0x0F, 0x10), (0x13, 0x14),  # letters
                                        (0x3F, 0x40), (0x41, 0x42), (0x47, 0x48), (0x4B, 0x4C))}  # signs
_LATIN_CLOSE = {**{frozenset(p): "voicing" for p in ("pb", "td", "cg", "fv", "sz")},
                **{frozenset(p): "accent" for p in ("aà", "eè", "eé", "iì", "oò", "uù")}}


def close_kind(a: str, b: str) -> Optional[str]:
    """How two different characters are phonetically close ("place", "retroflex", "sibilant", "length",
    "voicing", "accent"; module docstring), or None."""
    if a == b or len(a) != 1 or len(b) != 1:
        return None
    ca, cb = ord(a), ord(b)
    if 0x900 <= ca < 0xD80 and ca >> 7 == cb >> 7:  # one Brahmic block
        oa, ob = ca & 0x7F, cb & 0x7F
        for start in _VARGA_STARTS:
            if start <= oa < start + 5 and start <= ob < start + 5:
                return "place"
        if {oa - 0x1F, ob - 0x24} <= set(range(5)) and oa - 0x1F == ob - 0x24 or \
                {ob - 0x1F, oa - 0x24} <= set(range(5)) and ob - 0x1F == oa - 0x24:
            return "retroflex"
        if {oa, ob} <= {0x36, 0x37, 0x38}:
            return "sibilant"
        return "length" if frozenset((oa, ob)) in _LENGTH_PAIRS else None
    return _LATIN_CLOSE.get(frozenset((a.lower(), b.lower())))


def vocabulary(texts: Iterable[str]) -> Set[str]:
    return {word for text in texts for word in normalize_text(text).split()}


def edit_regions(chunks) -> List:
    """Runs of adjacent non-equal alignment chunks joined into one region ((ref start, end), (hyp start, end)):
    a merge of two words is a substitution next to a deletion, which only together show the moved space."""
    regions: List = []
    for chunk in chunks:
        if chunk.type == "equal":
            continue
        span = ((chunk.ref_start_idx, chunk.ref_end_idx), (chunk.hyp_start_idx, chunk.hyp_end_idx))
        if regions and regions[-1][0][1] == span[0][0] and regions[-1][1][1] == span[1][0]:
            (r0, _), (h0, _) = regions[-1]
            regions[-1] = ((r0, span[0][1]), (h0, span[1][1]))
        else:
            regions.append(span)
    return regions


def _is_boundary_error(ref: List[str], hyp: List[str]) -> bool:
    """An edit region whose words differ only in where the spaces are (merge or split)."""
    return len(ref) != len(hyp) and bool(ref) and bool(hyp) and "".join(ref) == "".join(hyp)


def breakdown(refs: Mapping[str, str], hyps: Mapping[str, str], langs: Mapping[str, str],
              seen: Mapping[str, Set[str]], top: int = 5) -> Dict[str, Dict]:
    """Per language of `langs`: reference words seen / unseen in training (`seen[lang]`) and the share of each
    substituted or deleted, word-boundary edit regions, the `top` character substitutions (ref -> hyp), and
    the character substitutions in all and those between phonetically close characters (`close_kind`)."""
    import jiwer

    out: Dict[str, Dict] = {}
    for lang in dict.fromkeys(langs[u] for u in refs if u in langs):
        utts = [u for u in sorted(refs) if langs.get(u) == lang]
        stats = {"ref_words": 0, "seen_words": 0, "seen_errors": 0, "unseen_words": 0, "unseen_errors": 0,
                 "boundary_regions": 0, "error_regions": 0, "char_substitutions": 0, "close_substitutions": 0}
        confusions: Counter = Counter()
        written: Counter = Counter()  # every character the system wrote in this language
        for utt in utts:
            ref, hyp = normalize_text(refs[utt]).split(), normalize_text(hyps.get(utt, "")).split()
            if not ref:
                continue
            words = jiwer.process_words(" ".join(ref), " ".join(hyp) if hyp else "")
            wrong = set()
            for (r0, r1), (h0, h1) in edit_regions(words.alignments[0]):
                stats["error_regions"] += 1
                stats["boundary_regions"] += _is_boundary_error(ref[r0:r1], hyp[h0:h1])
                wrong.update(range(r0, r1))
            for i, word in enumerate(ref):
                kind = "seen" if word in seen.get(lang, set()) else "unseen"
                stats[f"{kind}_words"] += 1
                stats[f"{kind}_errors"] += i in wrong
            stats["ref_words"] += len(ref)
            written.update(c for word in hyp for c in word)
            if hyp:
                chars = jiwer.process_characters(" ".join(ref), " ".join(hyp))
                for chunk in chars.alignments[0]:
                    if chunk.type == "substitute":
                        pairs = zip(chars.references[0][chunk.ref_start_idx:chunk.ref_end_idx],
                                    chars.hypotheses[0][chunk.hyp_start_idx:chunk.hyp_end_idx])
                        pairs = [(a, b) for a, b in pairs if a != " " and b != " "]
                        confusions.update(f"{a}->{b}" for a, b in pairs)
                        stats["char_substitutions"] += len(pairs)
                        stats["close_substitutions"] += sum(close_kind(a, b) is not None for a, b in pairs)
        stats["top_confusions"] = confusions.most_common(top)
        stats["close_by_chance"] = close_by_chance(confusions, written)
        out[lang] = stats
    return out


def close_by_chance(confusions: Mapping[str, int], written: Mapping[str, int]) -> float:
    """The share of these substitutions that would be phonetically close had each reference character been
    replaced by another character drawn as often as the system writes it (the calibration of the share
    measured): 100 x the mean over substitutions of P(close | its reference character)."""
    total = weighted = 0.0
    for pair, n in confusions.items():
        a = pair.split("->")[0]
        others = {c: k for c, k in written.items() if c != a}
        if others:
            weighted += n * sum(k for c, k in others.items() if close_kind(a, c)) / sum(others.values())
            total += n
    return 100 * weighted / total if total else float("nan")


def rate(errors: int, words: int) -> float:
    return 100 * errors / words if words else float("nan")
