"""Check a Kaldi data dir before anything trains or decodes on it.

Every problem found is reported (not only the first), each naming the file, the line and the fix, so a
broken corpus is repaired in one pass. The checks mirror what Kaldi's utils/validate_data_dir.sh and
ESPnet's loaders rely on, plus what this recipe needs: 16 kHz mono audio, NFC transcripts and a language
from espnet_ext/languages.py for every utterance.
"""
import logging
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from tqdm import tqdm

from espnet_ext.data.audio import SAMPLE_RATE, AudioError, probe_audio
from espnet_ext.data.kaldi import (
    DEFAULT_DUR_TOLERANCE, PER_UTTERANCE_FILES, REQUIRED_FILES, SEGMENTS, DataDirError, Entry, not_a_data_dir,
    read_entries, spk2utt_from_utt2spk,
)
from espnet_ext.languages import get_language
from espnet_ext.errors import UserError

PathLike = Union[str, os.PathLike]
log = logging.getLogger(__name__)

MAX_SHOWN = 30  # problems printed; a corpus-wide fault would otherwise print one line per utterance


class InvalidDataDir(UserError, ValueError):
    """A data dir failed validation; the message lists every problem found."""

    def __init__(self, data_dir: PathLike, problems: List[DataDirError]):
        super().__init__(data_dir, problems)
        self.data_dir, self.problems = str(data_dir), problems

    def __str__(self) -> str:
        lines = [f"{self.data_dir}: {len(self.problems)} problem(s)"]
        lines += [f"  {problem}" for problem in self.problems[:MAX_SHOWN]]
        if len(self.problems) > MAX_SHOWN:
            lines.append(f"  ... and {len(self.problems) - MAX_SHOWN} more (InvalidDataDir.problems has all)")
        return "\n".join(lines)


@dataclass
class Summary:
    """What a valid data dir contains, for the log line after each data stage."""

    utterances: int
    speakers: int
    hours: float
    languages: List[str]


class _Checker:
    """Collects the problems of one data dir; each check reads what earlier checks parsed."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.problems: List[DataDirError] = []
        self.lists: Dict[str, Dict[str, Entry]] = {}

    def add(self, name: str, line: Optional[int], message: str, fix: str) -> None:
        self.problems.append(DataDirError(self.data_dir / name, line, message, fix))

    def load(self, name: str) -> None:
        """Parse one list, reporting unsorted and duplicate keys; keeps the first of duplicates."""
        try:
            entries = read_entries(self.data_dir / name)
        except DataDirError as err:
            self.problems.append(err)
            return
        kept: Dict[str, Entry] = {}
        previous: Optional[Entry] = None
        disorder_reported = False  # one sort fix repairs the whole file: report the first disorder only
        for entry in entries:
            if entry.key in kept:
                self.add(name, entry.line, f"duplicate id {entry.key!r} (first on line {kept[entry.key].line})",
                         "utterance and speaker ids must be unique: rename or remove the duplicate")
                continue
            if not disorder_reported and previous is not None and entry.key < previous.key:
                self.add(name, entry.line, f"not sorted: {entry.key!r} comes after {previous.key!r}",
                         f"sort in C byte order: LC_ALL=C sort -k1,1 -o {name} {name}")
                disorder_reported = True
            kept[entry.key] = entry
            previous = entry
        self.lists[name] = kept

    def check_same_ids(self, reference: str, names: List[str]) -> None:
        """Every per-utterance list must hold exactly the ids of `reference`."""
        ids = set(self.lists[reference])
        for name in names:
            if name not in self.lists or name == reference:
                continue
            for key in sorted(ids - set(self.lists[name])):
                self.add(name, None, f"utterance {key!r} of {reference} is missing here",
                         f"add it to {name} or remove it from every file (utils/fix_data_dir.sh)")
            for key in sorted(set(self.lists[name]) - ids):
                self.add(name, self.lists[name][key].line, f"utterance {key!r} is not in {reference}",
                         f"add it to {reference} or remove it from every file (utils/fix_data_dir.sh)")

    def check_text(self) -> None:
        """Transcripts must be non-empty and NFC (scoring compares strings code point by code point)."""
        for entry in self.lists.get("text", {}).values():
            if not entry.value.strip():
                self.add("text", entry.line, f"empty transcript for {entry.key!r}",
                         "supply the transcript or drop the utterance from every file")
            elif unicodedata.normalize("NFC", entry.value) != entry.value:
                self.add("text", entry.line, f"transcript of {entry.key!r} is not NFC",
                         "normalise with unicodedata.normalize('NFC', text) (the preparers do this)")

    def check_languages(self) -> None:
        """Every language must be in espnet_ext/languages.py: adapters and LID are keyed by it."""
        for entry in self.lists.get("utt2lang", {}).values():
            try:
                get_language(entry.value)
            except ValueError as err:
                self.add("utt2lang", entry.line, f"{entry.key!r}: {err}",
                         "use a code from espnet_ext/languages.py or add the language there")

    def check_speakers(self) -> None:
        """spk2utt must be utt2spk inverted, and utterance order must agree with speaker order."""
        if "spk2utt" not in self.lists or "utt2spk" not in self.lists:
            return
        utt2spk = {key: entry.value for key, entry in self.lists["utt2spk"].items()}
        expected = spk2utt_from_utt2spk(utt2spk)
        spk2utt = self.lists["spk2utt"]
        for spk, entry in spk2utt.items():
            if entry.value.split() != expected.get(spk):
                self.add("spk2utt", entry.line, f"speaker {spk!r} does not match utt2spk",
                         "regenerate it: utils/utt2spk_to_spk2utt.pl utt2spk > spk2utt")
        for spk in sorted(set(expected) - set(spk2utt)):
            self.add("spk2utt", None, f"speaker {spk!r} of utt2spk is missing",
                     "regenerate it: utils/utt2spk_to_spk2utt.pl utt2spk > spk2utt")
        by_speaker = sorted(utt2spk, key=lambda utt: (utt2spk[utt], utt))
        if by_speaker != sorted(utt2spk):
            first = next(a for a, b in zip(by_speaker, sorted(utt2spk)) if a != b)
            self.add("utt2spk", self.lists["utt2spk"][first].line,
                     f"sorting by speaker and by utterance disagree at {first!r}",
                     "prefix every utterance id with its speaker id (Kaldi convention)")

    def durations(self) -> Dict[str, float]:
        """utt2dur values as floats; unparsable or non-positive ones are reported."""
        result = {}
        for entry in self.lists.get("utt2dur", {}).values():
            try:
                value = float(entry.value)
            except ValueError:
                value = float("nan")
            if value > 0:
                result[entry.key] = value
            else:
                self.add("utt2dur", entry.line, f"bad duration {entry.value!r} for {entry.key!r}",
                         "write the duration in seconds, > 0")
        return result

    def segment_spans(self) -> Dict[str, Tuple[str, float, float]]:
        """segments as utt -> (recording, start, end); also checks that recordings exist in wav.scp."""
        spans = {}
        for entry in self.lists.get(SEGMENTS, {}).values():
            fields = entry.value.split()
            try:
                recording, start, end = fields[0], float(fields[1]), float(fields[2])
            except (IndexError, ValueError):
                self.add(SEGMENTS, entry.line, f"bad segment {entry.value!r}",
                         "write '<utt> <recording> <start> <end>' with times in seconds")
                continue
            if not 0 <= start < end:
                self.add(SEGMENTS, entry.line, f"bad times {start} .. {end}", "need 0 <= start < end")
            if recording not in self.lists.get("wav.scp", {}):
                self.add(SEGMENTS, entry.line, f"recording {recording!r} is not in wav.scp",
                         "add the recording to wav.scp")
            spans[entry.key] = (recording, start, end)
        return spans

    def check_audio(self, tolerance: float) -> None:
        """Decode every file: it must exist, decode, be 16 kHz mono and as long as utt2dur says."""
        durations = self.durations()
        spans = self.segment_spans()
        recording_lengths: Dict[str, float] = {}
        for entry in tqdm(self.lists.get("wav.scp", {}).values(), desc=f"checking audio of {self.data_dir}",
                          unit="file", leave=False, disable=None):  # no bar in log files
            length = self._audio_length(entry)
            if length is not None:
                recording_lengths[entry.key] = length
        for utt, expected in durations.items():
            recording, start, end = spans.get(utt, (utt, 0.0, None))
            if recording not in recording_lengths:
                continue
            actual = (end if end is not None else recording_lengths[recording]) - start
            if abs(actual - expected) > tolerance:
                self.add("utt2dur", self.lists["utt2dur"][utt].line,
                         f"{utt!r} says {expected:.3f} s but the audio is {actual:.3f} s",
                         "recompute utt2dur from the audio (rerun the preparer)")
            if end is not None and end > recording_lengths[recording] + tolerance:
                self.add(SEGMENTS, self.lists[SEGMENTS][utt].line,
                         f"segment ends at {end} s, after the end of {recording!r}",
                         "fix the segment times")

    def _audio_length(self, entry: Entry) -> Optional[float]:
        """Length in seconds of one wav.scp entry, or None after reporting why it is unusable."""
        if entry.value.rstrip().endswith("|") or len(entry.value.split()) != 1:
            self.add("wav.scp", entry.line, f"{entry.key!r} is not a single file path",
                     "write the audio to 16 kHz WAV files and list their paths (the preparers do)")
            return None
        try:
            info = probe_audio(entry.value)
        except AudioError as err:
            self.add("wav.scp", entry.line, str(err),
                     "restore the file or rerun the preparer, which rewrites missing/broken files")
            return None
        if info.sample_rate != SAMPLE_RATE:
            self.add("wav.scp", entry.line, f"{entry.value} is {info.sample_rate} Hz, not {SAMPLE_RATE}",
                     f"resample: sox IN -r {SAMPLE_RATE} -b 16 OUT (the local/prepare_*.py preparers "
                     "resample automatically)")
        if info.channels != 1:
            self.add("wav.scp", entry.line, f"{entry.value} has {info.channels} channels, not 1",
                     "downmix: sox IN -c 1 OUT (the preparers downmix automatically)")
        return info.duration


def find_problems(data_dir: PathLike, check_audio: bool = True,
                  dur_tolerance: float = DEFAULT_DUR_TOLERANCE) -> List[DataDirError]:
    """Every problem of `data_dir`, in a stable order; an empty list means valid."""
    checker = _Checker(Path(data_dir))
    problem = not_a_data_dir(checker.data_dir)
    if problem:
        return [problem]
    for name in REQUIRED_FILES:
        if not (checker.data_dir / name).is_file():
            checker.add(name, None, "missing", "rerun the data preparation stage that writes this dir")
    names = [n for n in REQUIRED_FILES + (SEGMENTS,) if (checker.data_dir / n).is_file()]
    for name in names:
        checker.load(name)
    if "text" in checker.lists:
        utterance_lists = [n for n in PER_UTTERANCE_FILES if n != "wav.scp"]
        if SEGMENTS in checker.lists:
            utterance_lists.append(SEGMENTS)
        else:
            utterance_lists.append("wav.scp")
        checker.check_same_ids("text", utterance_lists)
    checker.check_text()
    checker.check_languages()
    checker.check_speakers()
    if check_audio:
        checker.check_audio(dur_tolerance)
    return checker.problems


def summarize(data_dir: PathLike) -> Summary:
    """Counts for a dir that passed validation."""
    data_dir = Path(data_dir)
    utt2spk = {e.key: e.value for e in read_entries(data_dir / "utt2spk")}
    durations = [float(e.value) for e in read_entries(data_dir / "utt2dur")]
    languages = sorted({e.value for e in read_entries(data_dir / "utt2lang")})
    return Summary(len(utt2spk), len(set(utt2spk.values())), sum(durations) / 3600, languages)


def validate_data_dir(data_dir: PathLike, check_audio: bool = True,
                      dur_tolerance: float = DEFAULT_DUR_TOLERANCE) -> Summary:
    """Raise InvalidDataDir listing every problem, or return the dir's summary and log it."""
    problems = find_problems(data_dir, check_audio=check_audio, dur_tolerance=dur_tolerance)
    if problems:
        raise InvalidDataDir(data_dir, problems)
    summary = summarize(data_dir)
    log.info("%s: valid (%d utterances, %d speakers, %.1f min, languages %s)", data_dir, summary.utterances,
             summary.speakers, summary.hours * 60, ",".join(summary.languages))
    return summary

