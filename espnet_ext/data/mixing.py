"""One training set from several corpora: source tags, each source's share of the hours, temperature
sampling across languages, and test sets kept per source (the project plan's experiment 1.2, domain shift).

Every choice is a subsample of whole utterances with a fixed seed, made at data preparation, so a mixed
set is a plain data dir that any stage reads; `utt2src` says where each utterance came from.

- `mix_ratio` (one share per source, in the order given): for each language, the largest total T for
  which every source can supply its share r_s * T, each source then subsampled to r_s * T hours (to within
  one utterance). A share of 0 leaves the source out of training: its test set measures cross-domain WER.
- `mix_alpha` (temperature sampling, as multilingual ASR papers do): language l's share of the training
  hours becomes proportional to h_l ** alpha. 1 keeps the natural proportions; below 1 flattens them by
  subsampling the larger languages (0: equal hours), never by repeating audio.
- A training sentence that also occurs in any source's test set of that language is reported and dropped
  before the shares are measured, so no test sentence is learned from another corpus.
"""
import json
import logging
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_ext.data.corpus import UTT2CS, UTT2SRC, code_mixed, write_validated
from espnet_ext.data.kaldi import DataDirError, Utterance, normalize_text, read_data_dir, write_list
from espnet_ext.fileio import atomic_write_text

log = logging.getLogger(__name__)
MIX_REPORT = "mix.json"


@dataclass(frozen=True)
class Source:
    """A corpus prepared alone into its own folder of data dirs (`<datadir>/<corpus>/train_hi`, ...)."""

    name: str
    folder: Path
    ratio: float


def parse_ratios(names: Sequence[str], mix_ratio: Optional[str]) -> List[float]:
    """`0.8,0.2` -> shares summing to 1, one per source; none given: equal shares."""
    if not mix_ratio:
        return [1.0 / len(names)] * len(names)
    try:
        ratios = [float(r) for r in mix_ratio.split(",")]
    except ValueError:
        ratios = []
    if len(ratios) != len(names) or min(ratios) < 0 or sum(ratios) <= 0:
        raise ValueError(f"--mix_ratio {mix_ratio}: give {len(names)} non-negative shares, one per corpus of "
                         f"--corpus ({' '.join(names)}), e.g. {','.join(['0.5'] * len(names))}")
    return [r / sum(ratios) for r in ratios]


def hours(utterances: Sequence[Utterance]) -> float:
    return sum(u.duration for u in utterances) / 3600


def shuffled(utterances: Sequence[Utterance], seed: int) -> List[Utterance]:
    """A fixed-seed order; a subsample is a prefix of it, so a smaller share is a subset of a larger one."""
    order = sorted(utterances, key=lambda u: u.utt_id)
    random.Random(seed).shuffle(order)
    return order


def take_seconds(order: Sequence[Utterance], seconds: float) -> List[Utterance]:
    """The longest prefix of `order` lasting at most `seconds` (so short of it by under one utterance)."""
    taken, total = [], 0.0
    for utt in order:
        if total + utt.duration > seconds + 1e-6:
            break
        taken.append(utt)
        total += utt.duration
    return taken


def drop_test_sentences(train: List[Utterance], tests: Sequence[Utterance], where: str) -> List[Utterance]:
    """Training utterances whose sentence is in no test set (compared as normalised, case-folded text)."""
    test_sentences = {normalize_text(u.text).casefold() for u in tests}
    kept = [u for u in train if normalize_text(u.text).casefold() not in test_sentences]
    if len(kept) < len(train):
        log.info("%s: dropped %d training utterances whose sentence is in a test set", where, len(train) - len(kept))
    return kept


def source_targets(available: Dict[str, float], ratios: Dict[str, float]) -> Dict[str, float]:
    """Seconds each source contributes: r_s * T with T the largest total every source can supply."""
    if not any(r > 0 for r in ratios.values()):
        raise ValueError(f"--mix_ratio gives a share of 0 to every corpus with this language ({', '.join(ratios)})")
    total = min(available[s] / r for s, r in ratios.items() if r > 0)
    return {s: r * total for s, r in ratios.items()}


def language_scales(per_language: Dict[str, float], alpha: float) -> Dict[str, float]:
    """The fraction of each language's hours kept so that its share is proportional to hours ** alpha."""
    weights = {lang: h ** alpha for lang, h in per_language.items()}
    total = min(per_language[lang] / weights[lang] for lang in per_language)
    return {lang: weights[lang] * total / per_language[lang] for lang in per_language}


def _split_dirs(folder: Path, prefix: str, lang: str) -> List[Path]:
    """`<prefix>_<lang>` and its kin (`test_known_<lang>`) in a source's folder."""
    return sorted(d for d in folder.glob(f"{prefix}*_{lang}") if d.is_dir())


def _write(out_dir: Path, name: str, utterances: List[Utterance], utt2src: Dict[str, str]) -> None:
    """A validated data dir with its utt2src, and utt2cs where it holds code-mixed utterances."""
    write_validated(out_dir / name, utterances)
    write_list(out_dir / name / UTT2SRC, {u.utt_id: utt2src[u.utt_id] for u in utterances})
    tags = {u.utt_id: tag for u in utterances if (tag := code_mixed(u.text, u.lang))}
    if tags:
        write_list(out_dir / name / UTT2CS, tags)


def _test_sets(out_dir: Path, sources: Sequence[Source], lang: str) -> Dict[str, List[Utterance]]:
    """Each source's test sets of `lang`, written as `<set>_<source>` (test_hi_kathbath); by set name."""
    written = {}
    for s in sources:
        for test_dir in _split_dirs(s.folder, "test", lang):
            name = f"{test_dir.name}_{s.name}"
            written[name] = read_data_dir(test_dir)
            _write(out_dir, name, written[name], {u.utt_id: s.name for u in written[name]})
    return written


def _train_pools(sources: Sequence[Source], lang: str, tests: Sequence[Utterance], seed: int
                 ) -> Dict[str, List[Utterance]]:
    """Each source's training utterances of `lang` without test sentences, in a fixed-seed order."""
    pools = {}
    for s in sources:
        train_dir = s.folder / f"train_{lang}"
        if train_dir.is_dir():
            pools[s.name] = shuffled(drop_test_sentences(read_data_dir(train_dir), tests, f"{s.name} train_{lang}"),
                                     seed)
        else:  # Kathbath has no Italian: the other sources share that language's training
            log.info("%s has no %s training set; the other sources' shares of %s are kept", s.name, lang, lang)
    if not pools:
        raise DataDirError(sources[0].folder / f"train_{lang}", None, f"no corpus has a {lang} training set",
                           f"add a corpus with {lang} to --corpus, or --lang another language")
    return pools


def mix_corpora(out_dir: Path, sources: Sequence[Source], langs: Sequence[str], alpha: float = 1.0,
                seed: int = 0) -> dict:
    """Write the mixed `train_<lang>` and `dev_<lang>` (with utt2src), each source's test sets as
    `<set>_<source>` (e.g. test_hi_kathbath), its code-switched sets, the `_all` unions of several
    languages, and `<out_dir>/mix.json`: hours per language and source, available and trained on."""
    out_dir = Path(out_dir)
    chosen: Dict[str, Dict[str, List[Utterance]]] = {}
    report: dict = {"sources": [s.name for s in sources], "ratios": [s.ratio for s in sources], "alpha": alpha,
                    "seed": seed, "languages": {}}
    dev: Dict[str, List[Tuple[Utterance, str]]] = {}
    unions: Dict[str, List[Tuple[Utterance, str]]] = {"train_all": [], "dev_all": []}
    for lang in langs:
        tests = _test_sets(out_dir, sources, lang)
        for name, utts in tests.items():  # test_hi_kathbath -> test_all_kathbath
            source = name.rsplit("_", 1)[1]
            unions.setdefault(name.replace(f"_{lang}_", "_all_"), []).extend((u, source) for u in utts)
        pools = _train_pools(sources, lang, [u for utts in tests.values() for u in utts], seed)
        available = {name: hours(utts) * 3600 for name, utts in pools.items()}
        targets = source_targets(available, {s.name: s.ratio for s in sources if s.name in pools})
        chosen[lang] = {name: take_seconds(pools[name], targets[name]) for name in pools}
        report["languages"][lang] = {"available_hours": {n: sec / 3600 for n, sec in available.items()}}
        dev[lang] = [(u, s.name) for s in sources if (s.folder / f"dev_{lang}").is_dir()
                     for u in read_data_dir(s.folder / f"dev_{lang}")]
    scales = language_scales({lang: sum(hours(u) for u in by_src.values()) for lang, by_src in chosen.items()},
                             alpha)
    for lang in langs:
        train = [(u, name) for name, utts in chosen[lang].items()
                 for u in take_seconds(utts, hours(utts) * 3600 * scales[lang])]
        for split, pairs in (("train", train), ("dev", dev[lang])):
            _write(out_dir, f"{split}_{lang}", [u for u, _ in pairs], {u.utt_id: n for u, n in pairs})
            unions[f"{split}_all"] += pairs
        trained = {name: sum(u.duration for u, n in train if n == name) / 3600 for name in chosen[lang]}
        report["languages"][lang]["train_hours"] = trained
        log.info("train_%s: %s", lang, ", ".join(f"{n} {h:.3f} h" for n, h in trained.items()))
    if len(langs) > 1:
        for name, pairs in unions.items():
            _write(out_dir, name, [u for u, _ in pairs], {u.utt_id: n for u, n in pairs})
    for s in sources:
        for cs_dir in sorted(s.folder.glob("test_cs_*")):
            if (out_dir / cs_dir.name).exists():
                shutil.rmtree(out_dir / cs_dir.name)
            shutil.copytree(cs_dir, out_dir / cs_dir.name)
    atomic_write_text(out_dir / MIX_REPORT, json.dumps(report, indent=1) + "\n")
    return report
