#!/usr/bin/env python3
"""Turn a Mozilla Common Voice release into the recipe's Kaldi data dirs (16 kHz WAV, validated).

Assumed layout (what every release since Common Voice 5 unpacks to; the locale folder is the language
code, sometimes with a region, e.g. `pa-IN` for Punjabi):

    <corpus_dir>/<locale>/train.tsv, dev.tsv, test.tsv   tab-separated, header first; the columns used
                                                         are client_id, path and sentence (others ignored)
    <corpus_dir>/<locale>/clips/<path>                   MP3, 32/48 kHz

Each speaker is a `client_id` (a hash; its first 16 hex digits are kept, collisions are refused); the
utterance id is `<lang>-cv-<client>-<clip name>`. The MP3s are decoded with soundfile (libsndfile >= 1.1
reads MP3) and written as conditioned 16 kHz mono WAV under `<audio_dir>/<speaker>/`.

Writes `<out_dir>/{train,dev,test}_<lang>` for every language found (or asked for) and the unions
`<out_dir>/{train,dev,test}_all`.

Usage:
    local/prepare_commonvoice.py --corpus_dir downloads/commonvoice --out_dir data
    local/prepare_commonvoice.py --corpus_dir cv-corpus-17.0-2024-03-15 --out_dir data --langs hi pa --nj 4
"""
import csv
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_ext.data.corpus import (
    MAX_SECONDS, MIN_SECONDS, SourceUtterance, build_data_dirs, corpus_main, language_dirs,
)
from espnet_ext.data.kaldi import DataDirError, Utterance

SPLITS = ("train", "dev", "test")
REQUIRED_COLUMNS = ("client_id", "path", "sentence")
CLIENT_ID_CHARS = 16


def find_locale_dir(corpus_dir: Path, lang: str) -> Optional[Path]:
    """`<corpus_dir>/<lang>` or the one `<corpus_dir>/<lang>-<REGION>`; None when the release lacks it."""
    candidates = [p for p in [corpus_dir / lang, *sorted(corpus_dir.glob(f"{lang}-*"))] if p.is_dir()]
    if len(candidates) > 1:
        raise DataDirError(corpus_dir, None, f"several folders for {lang!r}: {[c.name for c in candidates]}",
                           "keep one, or point --corpus_dir at a folder holding only one")
    return candidates[0] if candidates else None


def read_split(tsv: Path, lang: str, speakers: Dict[str, str]) -> List[SourceUtterance]:
    """Rows of one split; `speakers` maps short speaker ids to full client ids across splits."""
    if not tsv.is_file():
        raise DataDirError(tsv, None, "split file not found", "extract the full Common Voice release")
    sources = []
    with open(tsv, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)  # sentences may contain quotes
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataDirError(tsv, 1, f"header lacks column(s) {', '.join(missing)}",
                               "this is not a Common Voice split file; use train.tsv/dev.tsv/test.tsv")
        for row in reader:
            line = reader.line_num
            if None in row or any(row[c] is None for c in REQUIRED_COLUMNS):
                raise DataDirError(tsv, line, "wrong number of tab-separated fields",
                                   "repair the line (a tab inside a sentence?) or delete it")
            speaker = _speaker_id(lang, row["client_id"], speakers, tsv, line)
            clip = Path(row["path"])
            sources.append(SourceUtterance(
                utt_id=f"{speaker}-{clip.stem}", speaker=speaker, lang=lang,
                text=row["sentence"],
                source=tsv.parent / "clips" / clip, manifest=str(tsv), line=line,
            ))
    return sources


def _speaker_id(lang: str, client_id: str, speakers: Dict[str, str], tsv: Path, line: int) -> str:
    """Shorten the 128-hex-digit client id, refusing the (unlikely) case of two clients colliding."""
    if not client_id:
        raise DataDirError(tsv, line, "empty client_id", "delete the line or restore the client_id")
    speaker = f"{lang}-cv-{client_id[:CLIENT_ID_CHARS]}"
    if speakers.setdefault(speaker, client_id) != client_id:
        raise DataDirError(tsv, line, f"two client ids share the prefix {client_id[:CLIENT_ID_CHARS]!r}",
                           "raise CLIENT_ID_CHARS in local/prepare_commonvoice.py")
    return speaker


def prepare_commonvoice(corpus_dir: Path, out_dir: Path, langs: Optional[Sequence[str]] = None,
                        audio_dir: Optional[Path] = None, nj: int = 2,
                        min_seconds: float = MIN_SECONDS, max_seconds: float = MAX_SECONDS,
                        ) -> Dict[str, List[Utterance]]:
    """Prepare every requested language (default: every known language present) and the unions."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    audio_dir = Path(audio_dir) if audio_dir is not None else out_dir / "local" / "commonvoice_wav"
    locales = language_dirs(corpus_dir, langs, lambda lang: find_locale_dir(corpus_dir, lang),
                            "<locale>/train.tsv")
    sources = {}
    for lang, locale_dir in locales.items():
        speakers: Dict[str, str] = {}
        for split in SPLITS:
            sources[f"{split}_{lang}"] = read_split(locale_dir / f"{split}.tsv", lang, speakers)
    return build_data_dirs(out_dir, sources, audio_dir, nj, min_seconds, max_seconds, corpus="commonvoice")


def main(argv: Optional[List[str]] = None) -> None:
    corpus_main(prepare_commonvoice, __doc__, argv)


if __name__ == "__main__":
    main()
