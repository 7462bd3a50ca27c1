#!/usr/bin/env python3
"""Turn AI4Bharat's Kathbath (the IndicSUPERB ASR corpus) into the recipe's Kaldi data dirs.

Assumed layout, as the release's audio and transcript archives unpack (both into the same folder; the
`kb_data_clean_m4a/` level is optional, and the noisy release's `kb_data_noisy_m4a/` works alike):

    <corpus_dir>/[kb_data_clean_m4a/]<language>/<split>/transcription_n2w.txt
    <corpus_dir>/[kb_data_clean_m4a/]<language>/<split>/**/<file>.m4a

`<language>` is the lower-case English name (hindi, punjabi, telugu: Kathbath has no Italian) and
`<split>` one of train, valid, test_known, test_unknown. Each transcript line is `<file>.m4a`, a tab (or
spaces), then the number-to-words transcript. Audio may sit directly in the split folder, in `audio/`,
or in per-speaker sub-folders (releases differ); it is found by file name anywhere below the split, and
a `.wav` of the same name (from IndicSUPERB's own m4a-to-wav script) is accepted in place of the `.m4a`.
File names are `<utterance number>-<speaker number>-<m|f>.m4a`.

AAC `.m4a` is decoded with PyAV (libsndfile cannot read it). Splits map to data dirs as train -> train,
valid -> dev, test_unknown -> test (unseen speakers, like the TTS corpus' unseen-voice test) and
test_known -> test_known, each `<split>_<lang>`, plus the `<split>_all` unions.

Usage:
    local/prepare_kathbath.py --corpus_dir downloads/kathbath --out_dir data
    local/prepare_kathbath.py --corpus_dir downloads/kathbath --out_dir data --langs te --nj 4
"""
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_ext.data.corpus import (
    MAX_SECONDS, MIN_SECONDS, SourceUtterance, build_data_dirs, corpus_main, language_dirs,
)
from espnet_ext.data.kaldi import DataDirError, Utterance
from espnet_ext.languages import get_language

SPLITS = {"train": "train", "valid": "dev", "test_known": "test_known", "test_unknown": "test"}
TRANSCRIPT = "transcription_n2w.txt"
AUDIO_SUFFIXES = (".m4a", ".wav")
FILE_NAME = re.compile(r"^(?P<utt>\d+)-(?P<speaker>\d+)-(?P<gender>[mf])\.m4a$")


def find_language_dir(corpus_dir: Path, lang: str) -> Optional[Path]:
    """`<corpus_dir>/<language>` or `<corpus_dir>/<one level>/<language>`."""
    name = get_language(lang).name.lower()
    candidates = [p for p in [corpus_dir / name, *sorted(corpus_dir.glob(f"*/{name}"))] if p.is_dir()]
    if len(candidates) > 1:
        raise DataDirError(corpus_dir, None, f"several {name} folders: {[str(c) for c in candidates]}",
                           "point --corpus_dir at one release (clean or noisy)")
    return candidates[0] if candidates else None


def index_audio(split_dir: Path) -> Dict[str, Path]:
    """File name (as the transcript spells it, .m4a) -> path, for the audio anywhere below the split."""
    index: Dict[str, Path] = {}
    for path in sorted(split_dir.rglob("*")):
        if path.suffix in AUDIO_SUFFIXES and path.is_file():
            key = path.with_suffix(".m4a").name
            if key in index and index[key].suffix == ".m4a":
                continue  # prefer the original over a converted copy
            index[key] = path
    return index


def read_split(split_dir: Path, lang: str) -> List[SourceUtterance]:
    """One split's transcript lines, each checked and matched to its audio file."""
    transcript = split_dir / TRANSCRIPT
    if not transcript.is_file():
        raise DataDirError(transcript, None, "transcript file not found",
                           "extract Kathbath's transcript archive into the same folder as the audio")
    audio = index_audio(split_dir)
    sources = []
    for line, raw in enumerate(transcript.read_text(encoding="utf-8").splitlines(), start=1):
        fields = raw.strip().split(maxsplit=1)
        if not fields:
            continue
        match = FILE_NAME.match(fields[0])
        if match is None:
            raise DataDirError(transcript, line, f"unexpected file name {fields[0]!r}",
                               "lines must start with <utterance>-<speaker>-<m|f>.m4a")
        speaker = f"{lang}-kb-{match['speaker']}"
        sources.append(SourceUtterance(
            utt_id=f"{speaker}-{match['utt']}", speaker=speaker, lang=lang,
            text=fields[1] if len(fields) > 1 else "",
            source=audio.get(fields[0], split_dir / "audio" / fields[0]), manifest=str(transcript), line=line,
        ))
    return sources


def prepare_kathbath(corpus_dir: Path, out_dir: Path, langs: Optional[Sequence[str]] = None,
                     audio_dir: Optional[Path] = None, nj: int = 2,
                     min_seconds: float = MIN_SECONDS, max_seconds: float = MAX_SECONDS,
                     ) -> Dict[str, List[Utterance]]:
    """Prepare every requested language (default: every known language present) and the unions."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    audio_dir = Path(audio_dir) if audio_dir is not None else out_dir / "local" / "kathbath_wav"
    folders = language_dirs(corpus_dir, langs, lambda lang: find_language_dir(corpus_dir, lang),
                            "[kb_data_clean_m4a/]<language>/<split>/transcription_n2w.txt")
    sources = {}
    for lang, folder in folders.items():
        for split, name in SPLITS.items():
            if not (folder / split).is_dir():
                raise DataDirError(folder / split, None, "split folder not found",
                                   f"extract every Kathbath split ({', '.join(SPLITS)}) for this language")
            sources[f"{name}_{lang}"] = read_split(folder / split, lang)
    return build_data_dirs(out_dir, sources, audio_dir, nj, min_seconds, max_seconds, corpus="kathbath")


def main(argv: Optional[List[str]] = None) -> None:
    corpus_main(prepare_kathbath, __doc__, argv)


if __name__ == "__main__":
    main()
