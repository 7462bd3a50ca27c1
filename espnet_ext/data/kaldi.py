"""Kaldi data directories: the one format every corpus is turned into before training or decoding.

A data dir holds one `key value` line per utterance in each of `wav.scp text utt2spk utt2lang utt2dur`
(and `spk2utt`, one line per speaker), plus an optional `segments` that cuts utterances out of longer
recordings. Kaldi and ESPnet merge these files line by line, so every file is sorted by its key in C
locale byte order (what `LC_ALL=C sort` gives) and every utterance id starts with its speaker id, which
makes the utterance order and the speaker order agree. For UTF-8 text, byte order equals code point
order, so Python's own string sort is the C sort.

Writing goes through a staging directory that replaces the old one only when complete, so a crash never
leaves a mixture of old and new files behind.
"""
import json
import logging
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

import soundfile as sf

from espnet_ext.errors import UserError
from espnet_ext.fileio import atomic_directory, atomic_write_text
from espnet_ext.languages import UnknownLanguage, get_language

PathLike = Union[str, os.PathLike]
log = logging.getLogger(__name__)

PER_UTTERANCE_FILES = ("wav.scp", "text", "utt2spk", "utt2lang", "utt2dur")
REQUIRED_FILES = PER_UTTERANCE_FILES + ("spk2utt",)
SEGMENTS = "segments"
DEFAULT_DUR_TOLERANCE = 0.05  # seconds; utt2dur is written with 3 decimals, so real drift is far above this


class DataDirError(UserError, ValueError):
    """A problem in a data dir (or a corpus manifest), located at `path:line`, with how to fix it."""

    def __init__(self, path: PathLike, line: Optional[int], message: str, fix: str):
        super().__init__(path, line, message, fix)  # keeps the exception picklable across processes
        self.path, self.line, self.message, self.fix = str(path), line, message, fix

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message} (fix: {self.fix})"


@dataclass(frozen=True)
class Segment:
    """Where an utterance lies inside a longer recording listed in wav.scp."""

    recording_id: str
    start: float
    end: float


@dataclass(frozen=True)
class Utterance:
    """Everything the recipe knows about one utterance; `wav` is the audio path of it (or its recording)."""

    utt_id: str
    speaker: str
    text: str
    lang: str
    wav: str
    duration: float
    segment: Optional[Segment] = None


@dataclass(frozen=True)
class Entry:
    """One `key value` line of a Kaldi list file, with its 1-based line number for error messages."""

    line: int
    key: str
    value: str


def normalize_text(text: str) -> str:
    """NFC with single spaces: the one spelling of a transcript that scoring and tokenisers agree on."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def read_entries(path: PathLike) -> List[Entry]:
    """Read a Kaldi list file in file order, splitting each line at its first whitespace run.

    No ordering or uniqueness checks happen here, so that the validator can report every problem;
    blank lines are errors because Kaldi tools would read them as an empty key.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataDirError(path, None, f"not valid UTF-8 ({err})", "re-encode the file as UTF-8") from None
    entries = []
    for number, line in enumerate(lines, start=1):
        fields = line.strip().split(maxsplit=1)
        if not fields:
            raise DataDirError(path, number, "blank line", "delete the blank line")
        entries.append(Entry(number, fields[0], fields[1] if len(fields) > 1 else ""))
    return entries


def write_list(path: PathLike, pairs: Mapping[str, str]) -> None:
    """Write `key value` lines sorted by key in C byte order, atomically."""
    lines = [f"{key} {pairs[key]}\n" for key in sorted(pairs)]
    atomic_write_text(path, "".join(lines))


def spk2utt_from_utt2spk(utt2spk: Mapping[str, str]) -> Dict[str, List[str]]:
    """Group utterances by speaker, each list in sorted order (what utils/utt2spk_to_spk2utt.pl gives)."""
    spk2utt: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return spk2utt


def check_utterances(utterances: Sequence[Utterance], where: str) -> None:
    """Refuse utterances that would make an invalid data dir, before any file is written."""
    if len({utt.segment is None for utt in utterances}) > 1:
        raise DataDirError(where, None, "some utterances have segments and others not",
                           "Kaldi needs all or none: give unsegmented ones a whole-recording segment")
    seen = set()
    for utt in utterances:
        if utt.utt_id in seen:
            raise DataDirError(where, None, f"duplicate utterance id {utt.utt_id!r}",
                               "give every utterance a unique id")
        seen.add(utt.utt_id)
        if any(ch.isspace() for ch in utt.utt_id + utt.speaker + utt.wav):
            raise DataDirError(where, None, f"whitespace in the id, speaker or path of {utt.utt_id!r}",
                               "Kaldi lists split on whitespace: remove it from ids and audio paths")
        if not utt.utt_id.startswith(utt.speaker):
            raise DataDirError(where, None, f"utterance id {utt.utt_id!r} does not start with its speaker "
                               f"id {utt.speaker!r}", "prefix utterance ids with the speaker id")
        if not normalize_text(utt.text):
            raise DataDirError(where, None, f"empty transcript for {utt.utt_id!r}",
                               "drop the utterance or supply its transcript")
        get_language(utt.lang)
        if not utt.duration > 0:
            raise DataDirError(where, None, f"non-positive duration for {utt.utt_id!r}",
                               "drop empty audio before writing the data dir")


def _data_dir_files(utterances: Sequence[Utterance]) -> Dict[str, Dict[str, str]]:
    """The contents of every list file, as key -> value maps."""
    files: Dict[str, Dict[str, str]] = {name: {} for name in PER_UTTERANCE_FILES}
    segments: Dict[str, str] = {}
    for utt in utterances:
        files["text"][utt.utt_id] = normalize_text(utt.text)
        files["utt2spk"][utt.utt_id] = utt.speaker
        files["utt2lang"][utt.utt_id] = utt.lang
        files["utt2dur"][utt.utt_id] = f"{utt.duration:.3f}"
        if utt.segment is None:
            files["wav.scp"][utt.utt_id] = utt.wav
        else:
            seg = utt.segment
            files["wav.scp"][seg.recording_id] = utt.wav
            segments[utt.utt_id] = f"{seg.recording_id} {seg.start:.3f} {seg.end:.3f}"
    utt2spk = files["utt2spk"]
    files["spk2utt"] = {spk: " ".join(utts) for spk, utts in spk2utt_from_utt2spk(utt2spk).items()}
    if segments:
        files[SEGMENTS] = segments
    return files


def write_data_dir(data_dir: PathLike, utterances: Iterable[Utterance]) -> None:
    """Write a complete, sorted data dir (spk2utt derived from utt2spk), replacing any previous one."""
    data_dir = Path(data_dir)
    utterances = list(utterances)
    check_utterances(utterances, where=str(data_dir))
    with atomic_directory(data_dir) as staging:
        for name, pairs in _data_dir_files(utterances).items():
            write_list(staging / name, pairs)
    speakers = len({utt.speaker for utt in utterances})
    log.info("wrote %s: %d utterances, %d speakers", data_dir, len(utterances), speakers)


def _as_map(data_dir: Path, name: str) -> Dict[str, str]:
    """A list file as a dict; a duplicate key is an error because the later line would silently win."""
    result: Dict[str, str] = {}
    for entry in read_entries(data_dir / name):
        if entry.key in result:
            raise DataDirError(data_dir / name, entry.line, f"duplicate key {entry.key!r}",
                               "remove the duplicate line")
        result[entry.key] = entry.value
    return result


def _lookup(maps: Mapping[str, Dict[str, str]], data_dir: Path, name: str, key: str) -> str:
    """Value of `key` in list `name`, or an error that names the list missing it."""
    try:
        return maps[name][key]
    except KeyError:
        raise DataDirError(data_dir / name, None, f"no entry for {key!r}",
                           "run python -m espnet_ext.bin.validate_data_dir on the dir and fix what it "
                           "reports") from None


def _parse_segment(data_dir: Path, utt_id: str, value: str) -> Segment:
    """A `segments` value `<recording> <start> <end>`."""
    fields = value.split()
    try:
        return Segment(fields[0], float(fields[1]), float(fields[2]))
    except (IndexError, ValueError):
        raise DataDirError(data_dir / SEGMENTS, None, f"bad segment for {utt_id!r}: {value!r}",
                           "write '<utt> <recording> <start> <end>' with times in seconds") from None


def _measure_durations(data_dir: Path, maps: Mapping[str, Dict[str, str]]) -> Dict[str, str]:
    """utt2dur of a dir that lacks it: from `segments`, else from each file's header (soundfile) or its
    decoding; written to `<data_dir>/utt2dur` where the dir is writable, so it is measured once."""
    from espnet_ext.data.audio import read_audio

    durations = {}
    for utt_id in maps["text"]:
        if SEGMENTS in maps:
            segment = _parse_segment(data_dir, utt_id, _lookup(maps, data_dir, SEGMENTS, utt_id))
            durations[utt_id] = f"{segment.end - segment.start:.3f}"
            continue
        path = _lookup(maps, data_dir, "wav.scp", utt_id)
        try:
            info = sf.info(path)
            seconds = info.frames / info.samplerate
        except (RuntimeError, sf.LibsndfileError):
            wave, rate = read_audio(path)
            seconds = len(wave) / rate
        durations[utt_id] = f"{seconds:.3f}"
    if os.access(data_dir, os.W_OK):
        atomic_write_text(data_dir / "utt2dur", "".join(f"{u} {d}\n" for u, d in sorted(durations.items())))
        log.info("%s/utt2dur was missing: measured %d durations and wrote it", data_dir, len(durations))
    else:
        log.info("%s/utt2dur is missing and the dir is read-only: measured %d durations", data_dir, len(durations))
    return durations


def not_a_data_dir(data_dir: Path) -> Optional[DataDirError]:
    """Why `data_dir` cannot be a data dir at all (absent, or a file given for it); None for a directory."""
    if data_dir.is_dir():
        return None
    if data_dir.exists():
        return DataDirError(data_dir, None, "is a file, not a data dir",
                            "give the directory that holds wav.scp, text, utt2lang, ...")
    return DataDirError(data_dir, None, "data dir does not exist", "run the data preparation stage first")


def _language(data_dir: Path, utt_id: str, code: str) -> str:
    """utt2lang's code of `utt_id`, refused here when the language table lacks it: adapters, LID classes
    and prompts are keyed by it, so it would otherwise fail only after a model has loaded."""
    try:
        return get_language(code).code
    except UnknownLanguage as err:
        raise UnknownLanguage(f"{data_dir / 'utt2lang'}: utterance {utt_id}: {err}") from None


def read_data_dir(data_dir: PathLike) -> List[Utterance]:
    """Read a data dir into utterances in sorted order (validate it first for full error reports)."""
    data_dir = Path(data_dir)
    problem = not_a_data_dir(data_dir)
    if problem:
        raise problem
    derivable = ("utt2dur", "spk2utt")  # Kaldi dirs often lack them; utt2dur is measured, spk2utt unused here
    for name in REQUIRED_FILES:
        if not (data_dir / name).is_file() and name not in derivable:
            raise DataDirError(data_dir / name, None, "missing", "rerun the data preparation stage")
    names = PER_UTTERANCE_FILES + ((SEGMENTS,) if (data_dir / SEGMENTS).is_file() else ())
    maps = {name: _as_map(data_dir, name) for name in names if name != "utt2dur" or (data_dir / name).is_file()}
    if "utt2dur" not in maps:
        maps["utt2dur"] = _measure_durations(data_dir, maps)
    utterances = []
    for utt_id in sorted(maps["text"]):
        segment = None
        if SEGMENTS in maps:
            segment = _parse_segment(data_dir, utt_id, _lookup(maps, data_dir, SEGMENTS, utt_id))
        wav_key = utt_id if segment is None else segment.recording_id
        duration = _lookup(maps, data_dir, "utt2dur", utt_id)
        utterances.append(Utterance(
            utt_id=utt_id,
            speaker=_lookup(maps, data_dir, "utt2spk", utt_id),
            text=maps["text"][utt_id],
            lang=_language(data_dir, utt_id, _lookup(maps, data_dir, "utt2lang", utt_id)),
            wav=_lookup(maps, data_dir, "wav.scp", wav_key),
            duration=float(duration),
            segment=segment,
        ))
    return utterances


def combine_data_dirs(out_dir: PathLike, src_dirs: Sequence[PathLike]) -> List[Utterance]:
    """Union of data dirs (e.g. all languages' train sets), like Kaldi's utils/combine_data.sh."""
    utterances = [utt for src in src_dirs for utt in read_data_dir(src)]
    write_data_dir(out_dir, utterances)
    return utterances


SEGMENTS_LANG = "segments_lang"  # code-switched sets: `utt start end lang`, the true language segments
SEGMENT_DECIMALS = 7  # seconds to 1e-7: every multiple of 1/16000 s is written exactly


@dataclass(frozen=True)
class LanguageSegment:
    """A stretch of one language inside an utterance, in seconds from its start."""

    start: float
    end: float
    lang: str


def write_segments_lang(data_dir: PathLike, segments: Mapping[str, Sequence[LanguageSegment]]) -> None:
    """`<data_dir>/segments_lang`, sorted by utterance, each utterance's segments in time order."""
    lines = [f"{utt} {s.start:.{SEGMENT_DECIMALS}f} {s.end:.{SEGMENT_DECIMALS}f} {s.lang}\n"
             for utt in sorted(segments) for s in sorted(segments[utt], key=lambda s: s.start)]
    atomic_write_text(Path(data_dir) / SEGMENTS_LANG, "".join(lines))


def _language_segment(fields, path: Path, line: Optional[int], utt: str, layout: str,
                      fix: str) -> LanguageSegment:
    """One `start end lang` of a segments file (`layout`), refused unless the times are numbers with
    0 <= start < end and the language is in the table; errors name the file, line or utterance."""
    try:
        start, end, lang = fields
        start, end, lang = float(start), float(end), get_language(lang).code
    except (TypeError, ValueError) as err:
        raise DataDirError(path, line, f"not {layout}: utterance {utt!r} has {fields!r} ({err})", fix) from None
    if not 0 <= start < end:
        raise DataDirError(path, line, f"utterance {utt!r}: segment {start:g}-{end:g} s is empty or negative",
                           "make 0 <= start < end")
    return LanguageSegment(start, end, lang)


def read_segments_lang(data_dir: PathLike) -> Dict[str, List[LanguageSegment]]:
    """Utterance -> its language segments in time order; errors name the line and the fix."""
    path = Path(data_dir) / SEGMENTS_LANG
    if not path.is_file():
        raise DataDirError(path, None, "missing", "build the code-switched set with local/make_codeswitch.py")
    segments: Dict[str, List[LanguageSegment]] = {}
    for entry in read_entries(path):
        segment = _language_segment(entry.value.split(), path, entry.line, entry.key, "`utt start end lang`",
                                    "write each line as `<utt> <start s> <end s> <language code>`")
        segments.setdefault(entry.key, []).append(segment)
    return {utt: sorted(parts, key=lambda s: s.start) for utt, parts in segments.items()}


def write_segments_json(path: PathLike, segments: Mapping[str, Sequence[LanguageSegment]]) -> None:
    """Predicted segments as JSON, `{utt: [[start, end, lang], ...]}` (what decode.py --segments reads)."""
    table = {utt: [[s.start, s.end, s.lang] for s in parts] for utt, parts in segments.items()}
    atomic_write_text(path, json.dumps(table, indent=1) + "\n")


def read_segments_json(path: PathLike) -> Dict[str, List[LanguageSegment]]:
    """The inverse of write_segments_json, every segment checked (_language_segment); a malformed file
    raises DataDirError naming it and the utterance."""
    path, layout = Path(path), "a segments JSON {utt: [[start, end, lang], ...]}"
    fix = "give the segments.json that espnet_ext.bin.codeswitch_lid wrote for this data dir"
    if not path.is_file():
        raise DataDirError(path, None, "no such file", fix)
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise DataDirError(path, None, f"not {layout} ({err})", fix) from None
    if not isinstance(table, dict):
        raise DataDirError(path, None, f"not {layout}: it holds a {type(table).__name__}, not an object", fix)
    segments = {}
    for utt, parts in table.items():
        if not isinstance(parts, list):
            raise DataDirError(path, None, f"not {layout}: utterance {utt!r} has {parts!r}, not a list", fix)
        segments[utt] = [_language_segment(part, path, None, utt, layout, fix) for part in parts]
    return segments


def check_segments(segments: Mapping[str, Sequence[LanguageSegment]], utterances: Sequence[Utterance],
                   data_dir: PathLike, source: PathLike, tolerance: float = DEFAULT_DUR_TOLERANCE) -> None:
    """Refuse language segments (read from `source`) that do not fit the utterances of `data_dir` they
    will cut: each utterance needs its own, ending within its audio (utt2dur, give or take `tolerance`).
    Segments of other utterances are ignored: one file may cover more sets than this one."""
    fix = (f"give segments made for {data_dir}: espnet_ext.bin.codeswitch_lid's JSON, or its segments_lang "
           "from local/make_codeswitch.py")
    missing = [u.utt_id for u in utterances if not segments.get(u.utt_id)]
    if missing:
        raise DataDirError(source, None, f"no segments for {len(missing)} of the {len(utterances)} utterances of "
                           f"{data_dir} (e.g. {missing[0]!r})", fix)
    for utt in utterances:
        end = max(s.end for s in segments[utt.utt_id])
        if end > utt.duration + tolerance:
            raise DataDirError(source, None, f"utterance {utt.utt_id!r}: a segment ends at {end:g} s, after the "
                               f"{utt.duration:g} s of its audio (utt2dur)", fix)
