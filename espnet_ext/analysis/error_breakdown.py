"""Where a system's word errors come from, per language: words never seen in its training text against
words it saw, word-boundary errors (two reference words written as one, or one split in two), and the
characters it confuses most. sclite counts the errors; this sorts them by kind.

Texts are compared after the scoring normaliser (espnet_ext.scoring.normalize), as sclite scored them;
the alignment is jiwer's (minimum edit distance), per utterance.
"""
from collections import Counter
from typing import Dict, Iterable, List, Mapping, Set

from espnet_ext.scoring.normalize import normalize_text


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
    substituted or deleted, word-boundary edit regions, and the `top` character substitutions (ref -> hyp)."""
    import jiwer

    out: Dict[str, Dict] = {}
    for lang in dict.fromkeys(langs[u] for u in refs if u in langs):
        utts = [u for u in sorted(refs) if langs.get(u) == lang]
        stats = {"ref_words": 0, "seen_words": 0, "seen_errors": 0, "unseen_words": 0, "unseen_errors": 0,
                 "boundary_regions": 0, "error_regions": 0}
        confusions: Counter = Counter()
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
            if hyp:
                chars = jiwer.process_characters(" ".join(ref), " ".join(hyp))
                for chunk in chars.alignments[0]:
                    if chunk.type == "substitute":
                        pairs = zip(chars.references[0][chunk.ref_start_idx:chunk.ref_end_idx],
                                    chars.hypotheses[0][chunk.hyp_start_idx:chunk.hyp_end_idx])
                        confusions.update(f"{a}->{b}" for a, b in pairs if a != " " and b != " ")
        stats["top_confusions"] = confusions.most_common(top)
        out[lang] = stats
    return out


def rate(errors: int, words: int) -> float:
    return 100 * errors / words if words else float("nan")
