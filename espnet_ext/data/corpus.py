"""What every corpus preparer in local/ shares: transcript cleaning, parallel resumable audio conversion,
bad-row screening, code-mixed tagging, and writing a data dir that is validated before the stage reports
success.

A preparer only has to turn its corpus' manifest into `SourceUtterance`s (checking the manifest's form as
it reads it: a wrong header or column count stops the stage, since the whole file is then suspect);
`build_data_dirs` does the rest. A bad row (missing clip, empty sentence, audio that will not decode, an id
listed twice) is reported in the log with its manifest line and skipped; only a dir losing more than
MAX_SKIPPED_FRACTION of its rows stops the stage, because that is a broken download, not a bad row.
Converted files are written atomically and reused on a rerun when they are already valid 16 kHz WAVs, so
an interrupted stage resumes where it stopped.
"""
import argparse
import contextlib
import logging
import multiprocessing
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

from tqdm import tqdm

from espnet_ext.data.audio import AudioError, convert_audio, existing_wav_duration
from espnet_ext.data.kaldi import DataDirError, Utterance, normalize_text, write_data_dir, write_list
from espnet_ext.data.validate import validate_data_dir
from espnet_ext.languages import ADAPTER_LANGUAGES, get_language, script_fraction

PathLike = Union[str, os.PathLike]
T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
MIN_SECONDS = 0.3   # shorter: a click or an empty recording, no word to learn
MAX_SECONDS = 30.0  # longer: past Whisper's and OWSM's 30 s window, which would cut the transcript's end
MAX_SKIPPED_FRACTION = 0.5  # a dir losing more of its rows than this is an incomplete corpus: stop
UTT2CS = "utt2cs"  # code-mixed utterances: `utt <lang>-en`, e.g. Hindi with English words in Latin script
UTT2SRC = "utt2src"  # mixed training sets: the corpus each utterance came from


@dataclass(frozen=True)
class SourceUtterance:
    """One corpus utterance before conversion, with the manifest line it came from for error messages."""

    utt_id: str
    speaker: str
    text: str  # as the manifest spells it; normalised (NFC, single spaces) when screened
    lang: str
    source: Path
    manifest: str
    line: int
    start: float = 0.0  # seconds: a segment of a long recording (IndicVoices) starts here ...
    end: Optional[float] = None  # ... and ends here (None: the whole file)


@dataclass(frozen=True)
class SkippedRow:
    """A manifest row left out of the data dirs, with why and how to get it back; logged, never silent."""

    data_dir: str
    manifest: str
    line: int
    reason: str
    fix: str

    def __str__(self) -> str:
        return f"{self.manifest}:{self.line}: {self.reason}; skipped (fix: {self.fix})"


def language_dirs(corpus_dir: PathLike, langs: Optional[Sequence[str]],
                  find: Callable[[str], Optional[Path]], layout: str) -> Dict[str, Path]:
    """Each language's folder in a corpus: the requested ones must all exist; with no request, every
    adapter language of espnet_ext/languages.py that the corpus has is taken (and at least one must be)."""
    found = {get_language(lang).code: find(get_language(lang).code) for lang in (langs or ADAPTER_LANGUAGES)}
    missing = [lang for lang, folder in found.items() if folder is None]
    if langs and missing:
        raise DataDirError(corpus_dir, None, f"no folder for {', '.join(missing)} (expected {layout})",
                           "extract those languages there or leave them out of --langs")
    present = {lang: folder for lang, folder in found.items() if folder is not None}
    if not present:
        raise DataDirError(corpus_dir, None, f"no folder for any of {', '.join(found)} (expected {layout})",
                           "point --corpus_dir at the extracted corpus")
    return present


def run_parallel(fn: Callable[[T], R], items: Sequence[T], nj: int, desc: str) -> List[R]:
    """`[fn(x) for x in items]` over `nj` processes, in order, with a progress bar."""
    if nj <= 1 or len(items) <= 1:
        return [fn(item) for item in tqdm(items, desc=desc, unit="utt")]
    chunksize = max(1, min(16, len(items) // (4 * nj)))
    # fork, not spawn: workers start instantly and can run functions of a local/ script run as __main__
    with multiprocessing.get_context("fork").Pool(nj) as pool:
        return list(tqdm(pool.imap(fn, items, chunksize=chunksize), total=len(items), desc=desc, unit="utt"))


def screen_sources(sources: Dict[str, List[SourceUtterance]]
                   ) -> Tuple[Dict[str, List[SourceUtterance]], List[SkippedRow]]:
    """Each dir's rows that can be converted (transcripts normalised), and the rows skipped: an empty
    transcript, a missing audio file, an utterance id listed before (in any dir)."""
    first: Dict[str, SourceUtterance] = {}
    kept: Dict[str, List[SourceUtterance]] = {name: [] for name in sources}
    skipped: List[SkippedRow] = []
    for name, group in sources.items():
        for src in group:
            text = normalize_text(src.text)
            earlier = first.setdefault(src.utt_id, src)
            if not text:
                problem = ("empty transcript", "fill in the transcript or delete the line")
            elif not src.source.is_file():
                problem = (f"audio file {src.source} not found", "re-download or re-extract the corpus")
            elif earlier is not src:
                problem = (f"duplicate utterance id {src.utt_id!r} (first at {earlier.manifest}:{earlier.line})",
                           "delete the repeated line")
            else:
                kept[name].append(replace(src, text=text))
                continue
            skipped.append(SkippedRow(name, src.manifest, src.line, *problem))
    return kept, skipped


def check_skipped(sources: Dict[str, List[SourceUtterance]], skipped: Sequence[SkippedRow]) -> None:
    """Stop when a dir lost more than MAX_SKIPPED_FRACTION of its rows: that is a broken download."""
    for name, group in sources.items():
        lost = [row for row in skipped if row.data_dir == name]
        if len(lost) > MAX_SKIPPED_FRACTION * len(group):
            raise DataDirError(lost[0].manifest, None, f"{len(lost)} of {len(group)} rows of {name} are unusable "
                               f"(first: line {lost[0].line}, {lost[0].reason})",
                               "the corpus is incomplete or damaged: re-download or re-extract it")


def hold_out_test_speakers(sources: Dict[str, List[SourceUtterance]]) -> Dict[str, List[SourceUtterance]]:
    """`train_<lang>` and `dev_<lang>` without the speakers of `test_<lang>`, so the test set's voices are
    unseen (each drop logged). The corpora's own splits already keep them apart (Common Voice, MLS,
    Kathbath's test_unknown); this makes sure of it. `test_known` is left alone: its voices are seen."""
    kept = dict(sources)
    for name, group in sources.items():
        split, lang = name.rsplit("_", 1)
        if split not in ("train", "dev") or f"test_{lang}" not in sources:
            continue
        test_speakers = {src.speaker for src in sources[f"test_{lang}"]}
        kept[name] = [src for src in group if src.speaker not in test_speakers]
        if len(kept[name]) < len(group):
            log.info("%s: dropped %d utterances of speakers who are in test_%s", name, len(group) - len(kept[name]),
                     lang)
        if group and not kept[name]:
            raise DataDirError(group[0].manifest, None, f"every speaker of {name} is also in test_{lang}",
                               "use the corpus' official splits, whose test speakers are unseen")
    return kept


def log_skipped(sources: Dict[str, List[SourceUtterance]], skipped: Sequence[SkippedRow]) -> None:
    """One warning per skipped row (manifest line, reason, fix), then each dir's count."""
    for row in skipped:
        log.warning("%s", row)
    for name, group in sources.items():
        lost = sum(row.data_dir == name for row in skipped)
        if lost:
            log.warning("%s: skipped %d of %d rows (reasons above)", name, lost, len(group))


def wav_path(audio_dir: PathLike, utt_id: str, speaker: str) -> Path:
    """Where the converted audio of an utterance lives: one folder per speaker keeps folders small."""
    return Path(audio_dir).resolve() / speaker / f"{utt_id}.wav"


def _convert(job: Tuple[SourceUtterance, Path]) -> Union[float, str]:
    """Worker: convert one file (or segment) unless a valid conversion already exists; returns its
    duration, or why it cannot be converted (a message: the row is skipped, the run goes on)."""
    src, dst = job
    duration = existing_wav_duration(dst)
    if duration is not None:
        return duration
    try:
        return convert_audio(src.source, dst, src.start, src.end)
    except AudioError as err:
        return str(err)


def convert_sources(sources: Dict[str, List[SourceUtterance]], audio_dir: PathLike, nj: int
                    ) -> Tuple[Dict[str, List[Utterance]], List[SkippedRow]]:
    """Convert every source to conditioned 16 kHz WAV under `audio_dir`, each dir's as Utterances, and
    the rows whose audio would not convert."""
    jobs = [(name, src, wav_path(audio_dir, src.utt_id, src.speaker)) for name, group in sources.items()
            for src in group]
    results = run_parallel(_convert, [(src, dst) for _, src, dst in jobs], nj,
                           desc=f"converting audio into {audio_dir}")
    converted: Dict[str, List[Utterance]] = {name: [] for name in sources}
    failed = []
    for (name, src, dst), result in zip(jobs, results):
        if isinstance(result, str):
            failed.append(SkippedRow(name, src.manifest, src.line, result, "replace the file or delete the line"))
        else:
            converted[name].append(Utterance(src.utt_id, src.speaker, src.text, src.lang, str(dst), result))
    return converted, failed


def check_out_dir(out_dir: PathLike) -> None:
    """Refuse an --out_dir that is an existing file, before any audio is written under it."""
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise DataDirError(out_dir, None, "is a file, not a directory",
                           "give --out_dir the directory the data dirs go into (data/), or move the file away")


def write_validated(data_dir: PathLike, utterances: Sequence[Utterance]) -> None:
    """Write a data dir and validate it at once, so that a stage never ends on a broken dir."""
    write_data_dir(data_dir, utterances)
    validate_data_dir(data_dir)


def write_unions(out_dir: PathLike, written: Dict[str, List[Utterance]]) -> Dict[str, List[Utterance]]:
    """From dirs named `<split>_<lang>`, write each split's union of all languages as `<split>_all`."""
    by_split: Dict[str, List[Utterance]] = {}
    for name in sorted(written):
        by_split.setdefault(name.rsplit("_", 1)[0], []).extend(written[name])
    unions = {f"{split}_all": utterances for split, utterances in by_split.items()}
    for name, utterances in unions.items():
        write_validated(Path(out_dir) / name, utterances)
    return unions


def within_bounds(name: str, utterances: List[Utterance], min_seconds: float, max_seconds: float) -> List[Utterance]:
    """The utterances of data dir `name` lasting `min_seconds` to `max_seconds`; what is dropped is logged
    with its counts, and a dir left empty is an error naming the bounds."""
    kept = [u for u in utterances if min_seconds <= u.duration <= max_seconds]
    if len(kept) < len(utterances):
        short = sum(u.duration < min_seconds for u in utterances)
        log.info("%s: dropped %d of %d utterances outside %g-%g s (%d shorter, %d longer)", name,
                 len(utterances) - len(kept), len(utterances), min_seconds, max_seconds, short,
                 len(utterances) - len(kept) - short)
    if not kept:
        raise DataDirError(name, None, f"every utterance lies outside {min_seconds:g}-{max_seconds:g} s",
                           "widen --min_duration/--max_duration")
    return kept


def code_mixed(text: str, lang: str) -> Optional[str]:
    """`<lang>-en` when a transcript of a language not written in Latin script has Latin-script words
    (Hindi-English above all: "मेरा phone खो गया"), else None. Such speech is real code-switching,
    kept and tagged rather than dropped by a script filter."""
    if get_language(lang).script == "Latin":
        return None
    latin = [w for w in text.split() if any(c.isalpha() for c in w) and script_fraction(w, "en") == 1.0]
    return f"{lang}-en" if latin else None


def write_code_mixed(out_dir: Path, written: Dict[str, List[Utterance]], corpus: str) -> None:
    """`utt2cs` in every dir holding code-mixed utterances, and the test splits' ones gathered into
    `test_cs_<corpus>`: a real code-switched test set (no `segments_lang`: where the switches fall is
    not known), which stays beside the per-language test sets it is drawn from."""
    gathered: List[Utterance] = []
    for name, utterances in written.items():
        tags = {u.utt_id: tag for u in utterances if (tag := code_mixed(u.text, u.lang))}
        if tags:
            write_list(out_dir / name / UTT2CS, tags)
            log.info("%s: %d code-mixed utterances tagged in %s", name, len(tags), UTT2CS)
            if name.startswith("test") and not name.endswith("_all"):
                gathered.extend(u for u in utterances if u.utt_id in tags)
    if gathered:
        name = f"test_cs_{corpus}"
        write_validated(out_dir / name, gathered)
        write_list(out_dir / name / UTT2CS, {u.utt_id: code_mixed(u.text, u.lang) for u in gathered})
        written[name] = gathered


def build_data_dirs(out_dir: PathLike, sources: Dict[str, List[SourceUtterance]], audio_dir: PathLike,
                    nj: int, min_seconds: float = MIN_SECONDS, max_seconds: float = MAX_SECONDS,
                    corpus: str = "corpus") -> Dict[str, List[Utterance]]:
    """Screen, convert, write and validate every `<split>_<lang>` dir (test speakers held out of train and
    dev: `hold_out_test_speakers`), then the `<split>_all` unions and
    the code-mixed tags and set (`write_code_mixed`). Bad rows are reported and skipped (module doc);
    utterances outside `min_seconds`-`max_seconds` are dropped, with counts in the log (`within_bounds`).

    Every file is converted before the first dir is written, so a stage that stops (a corpus too damaged
    to use) leaves no data dir behind.
    """
    check_out_dir(out_dir)
    for name, dir_sources in sources.items():
        if not dir_sources:
            raise DataDirError(Path(out_dir) / name, None, "no utterances in this split",
                               "check that the corpus was extracted completely")
    screened, skipped = screen_sources(sources)
    screened = hold_out_test_speakers(screened)
    check_skipped(sources, skipped)  # an incomplete download stops here, before hours of conversion
    converted, failed = convert_sources(screened, audio_dir, nj)
    log_skipped(sources, skipped + failed)
    check_skipped(sources, skipped + failed)
    written = {name: within_bounds(name, utterances, min_seconds, max_seconds)
               for name, utterances in converted.items()}
    for name, utterances in written.items():
        log.info("%s: %d utterances", name, len(utterances))
        write_validated(Path(out_dir) / name, utterances)
    written.update(write_unions(out_dir, written))
    write_code_mixed(Path(out_dir), written, corpus)
    return written


def corpus_main(prepare: Callable[..., Dict[str, List[Utterance]]], doc: str,
                argv: Optional[List[str]] = None) -> None:
    """The command line shared by the real-corpus preparers: same options, same logging."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus_dir", type=Path, required=True, help="the extracted corpus (layout above)")
    parser.add_argument("--out_dir", type=Path, required=True, help="where the Kaldi data dirs go (data/)")
    parser.add_argument("--langs", nargs="+", default=None, help="language codes (default: all present)")
    parser.add_argument("--audio_dir", type=Path, default=None,
                        help="where converted WAVs go (default: <out_dir>/local/<corpus>_wav)")
    parser.add_argument("--nj", type=int, default=2, help="parallel conversion processes")
    parser.add_argument("--min_duration", type=float, default=MIN_SECONDS, help="seconds; shorter ones are dropped")
    parser.add_argument("--max_duration", type=float, default=MAX_SECONDS, help="seconds; longer ones are dropped")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    with exit_on_bad_input(parser.prog):
        written = prepare(args.corpus_dir, args.out_dir, args.langs, args.audio_dir, args.nj,
                          min_seconds=args.min_duration, max_seconds=args.max_duration)
    log.info("wrote %d data dirs under %s", len(written), args.out_dir)


@contextlib.contextmanager
def exit_on_bad_input(prog: str) -> Iterator[None]:
    """Turn a bad-input error (all are ValueErrors naming file, line and fix) into a one-line exit 1
    instead of a traceback, which would bury the message."""
    try:
        yield
    except ValueError as err:
        raise SystemExit(f"{prog}: error: {err}") from None
