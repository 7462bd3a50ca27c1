"""What every corpus preparer in local/ shares: transcript cleaning, parallel resumable audio conversion,
and writing a data dir that is validated before the stage reports success.

A preparer only has to turn its corpus' manifest into `SourceUtterance`s (checking the manifest as it
reads it); `build_data_dirs` does the rest. Converted files are written atomically and reused on a rerun
when they are already valid 16 kHz WAVs, so an interrupted stage resumes where it stopped.
"""
import argparse
import contextlib
import logging
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

from tqdm import tqdm

from espnet_ext.data.audio import AudioError, convert_audio, existing_wav_duration
from espnet_ext.data.kaldi import DataDirError, Utterance, normalize_text, write_data_dir
from espnet_ext.data.validate import validate_data_dir
from espnet_ext.languages import ADAPTER_LANGUAGES, get_language

PathLike = Union[str, os.PathLike]
T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
MIN_SECONDS = 0.3   # shorter: a click or an empty recording, no word to learn
MAX_SECONDS = 30.0  # longer: past Whisper's and OWSM's 30 s window, which would cut the transcript's end


@dataclass(frozen=True)
class SourceUtterance:
    """One corpus utterance before conversion, with the manifest line it came from for error messages."""

    utt_id: str
    speaker: str
    text: str
    lang: str
    source: Path
    manifest: str
    line: int


def clean_transcript(text: str, manifest: PathLike, line: int) -> str:
    """NFC, single-spaced transcript; an empty one is an error because the utterance cannot be trained on."""
    cleaned = normalize_text(text)
    if not cleaned:
        raise DataDirError(manifest, line, "empty transcript",
                           "fill in the transcript or delete the line from the manifest")
    return cleaned


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


def check_sources(sources: Sequence[SourceUtterance]) -> None:
    """Fail before converting anything on an incomplete corpus (a download that stopped half-way) or on
    an utterance listed twice, naming the manifest lines."""
    first_line: Dict[str, SourceUtterance] = {}
    for src in sources:
        if not src.source.is_file():
            raise DataDirError(src.manifest, src.line, f"audio file {src.source} not found",
                               "re-download or re-extract the corpus, or delete the line")
        earlier = first_line.setdefault(src.utt_id, src)
        if earlier is not src:
            raise DataDirError(src.manifest, src.line, f"duplicate utterance id {src.utt_id!r} (first at "
                               f"{earlier.manifest}:{earlier.line})", "delete the repeated line")


def wav_path(audio_dir: PathLike, utt_id: str, speaker: str) -> Path:
    """Where the converted audio of an utterance lives: one folder per speaker keeps folders small."""
    return Path(audio_dir).resolve() / speaker / f"{utt_id}.wav"


def _convert(job: Tuple[SourceUtterance, Path]) -> float:
    """Worker: convert one file unless a valid conversion already exists; errors name the manifest line."""
    src, dst = job
    duration = existing_wav_duration(dst)
    if duration is not None:
        return duration
    try:
        return convert_audio(src.source, dst)
    except AudioError as err:
        raise AudioError(f"{src.manifest}:{src.line}: {err} (fix: replace the file or delete the line)") from None


def convert_sources(sources: Sequence[SourceUtterance], audio_dir: PathLike, nj: int) -> List[Utterance]:
    """Convert every source to conditioned 16 kHz WAV under `audio_dir` and describe it as an Utterance."""
    jobs = [(src, wav_path(audio_dir, src.utt_id, src.speaker)) for src in sources]
    durations = run_parallel(_convert, jobs, nj, desc=f"converting audio into {audio_dir}")
    return [
        Utterance(src.utt_id, src.speaker, src.text, src.lang, str(dst), duration)
        for (src, dst), duration in zip(jobs, durations)
    ]


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


def build_data_dirs(out_dir: PathLike, sources: Dict[str, List[SourceUtterance]], audio_dir: PathLike,
                    nj: int, min_seconds: float = MIN_SECONDS, max_seconds: float = MAX_SECONDS
                    ) -> Dict[str, List[Utterance]]:
    """Check, convert, write and validate every `<split>_<lang>` dir, then the `<split>_all` unions;
    utterances outside `min_seconds`-`max_seconds` are dropped, with counts in the log (`within_bounds`).

    The manifests are read in full and every file converted before the first dir is written, so a bad
    line or a broken file anywhere stops the stage with no data dir written.
    """
    check_out_dir(out_dir)
    for name, dir_sources in sources.items():
        if not dir_sources:
            raise DataDirError(Path(out_dir) / name, None, "no utterances in this split",
                               "check that the corpus was extracted completely")
        check_sources(dir_sources)
    converted = iter(convert_sources([src for group in sources.values() for src in group], audio_dir, nj))
    written = {name: within_bounds(name, [next(converted) for _ in dir_sources], min_seconds, max_seconds)
               for name, dir_sources in sources.items()}
    for name, utterances in written.items():
        log.info("%s: %d utterances", name, len(utterances))
        write_validated(Path(out_dir) / name, utterances)
    written.update(write_unions(out_dir, written))
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
