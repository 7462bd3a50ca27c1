#!/usr/bin/env python3
"""Turn Multilingual LibriSpeech (MLS) into the recipe's Kaldi data dirs (16 kHz WAV, validated).

Assumed layout (OpenSLR 94 as unpacked; of this recipe's languages MLS has Italian only):

    <corpus_dir>/mls_<language>[_opus]/<split>/transcripts.txt   `<spk>_<book>_<utt><TAB><text>` lines
    <corpus_dir>/mls_<language>[_opus]/<split>/audio/<spk>/<book>/<spk>_<book>_<utt>.flac  (16 kHz)
                                                                       or .opus (48 kHz, opus release)

`<language>` is the lower-case English name (mls_italian) and `<split>` one of train, dev, test.
`--corpus_dir` may also point at the `mls_<language>` folder itself. The speaker id is
`<lang>-mls-<spk>` and the utterance id `<lang>-mls-<spk>-<book>-<utt>`.

Writes `<out_dir>/{train,dev,test}_<lang>` and the unions `<out_dir>/{train,dev,test}_all`.

Usage:
    local/prepare_mls.py --corpus_dir downloads/mls --out_dir data
    local/prepare_mls.py --corpus_dir downloads/mls/mls_italian_opus --out_dir data --langs it --nj 4
"""
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_ext.data.corpus import (
    MAX_SECONDS, MIN_SECONDS, SourceUtterance, build_data_dirs, corpus_main, language_dirs,
)
from espnet_ext.data.kaldi import DataDirError, Utterance
from espnet_ext.languages import get_language

SPLITS = ("train", "dev", "test")
UTT_ID = re.compile(r"^(?P<spk>\d+)_(?P<book>\d+)_(?P<utt>\d+)$")


def find_language_dir(corpus_dir: Path, lang: str) -> Optional[Path]:
    """`mls_<language>` or `mls_<language>_opus`, below `corpus_dir` or `corpus_dir` itself."""
    name = f"mls_{get_language(lang).name.lower()}"
    if corpus_dir.name in (name, f"{name}_opus"):
        return corpus_dir
    candidates = [p for p in (corpus_dir / name, corpus_dir / f"{name}_opus") if p.is_dir()]
    if len(candidates) > 1:
        raise DataDirError(corpus_dir, None, f"both {name} and {name}_opus are present",
                           "point --corpus_dir at the one to use")
    return candidates[0] if candidates else None


def read_split(split_dir: Path, lang: str) -> List[SourceUtterance]:
    """One split's transcript lines, each checked, with the audio path the layout gives."""
    transcripts = split_dir / "transcripts.txt"
    if not transcripts.is_file():
        raise DataDirError(transcripts, None, "transcripts file not found", "extract the full MLS release")
    suffix = ".opus" if split_dir.parent.name.endswith("_opus") else ".flac"
    sources = []
    for line, raw in enumerate(transcripts.read_text(encoding="utf-8").splitlines(), start=1):
        fields = raw.strip().split(maxsplit=1)
        if not fields:
            continue
        match = UTT_ID.match(fields[0])
        if match is None:
            raise DataDirError(transcripts, line, f"unexpected id {fields[0]!r}",
                               "lines must start with <speaker>_<book>_<utterance> (digits)")
        speaker = f"{lang}-mls-{match['spk']}"
        sources.append(SourceUtterance(
            utt_id=f"{speaker}-{match['book']}-{match['utt']}", speaker=speaker, lang=lang,
            text=fields[1] if len(fields) > 1 else "",
            source=split_dir / "audio" / match["spk"] / match["book"] / f"{fields[0]}{suffix}",
            manifest=str(transcripts), line=line,
        ))
    return sources


def prepare_mls(corpus_dir: Path, out_dir: Path, langs: Optional[Sequence[str]] = None,
                audio_dir: Optional[Path] = None, nj: int = 2,
                min_seconds: float = MIN_SECONDS, max_seconds: float = MAX_SECONDS,
                ) -> Dict[str, List[Utterance]]:
    """Prepare every requested language (default: every known language present) and the unions."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    audio_dir = Path(audio_dir) if audio_dir is not None else out_dir / "local" / "mls_wav"
    folders = language_dirs(corpus_dir, langs, lambda lang: find_language_dir(corpus_dir, lang),
                            "mls_<language>/<split>/transcripts.txt")
    sources = {f"{split}_{lang}": read_split(folder / split, lang)
               for lang, folder in folders.items() for split in SPLITS}
    return build_data_dirs(out_dir, sources, audio_dir, nj, min_seconds, max_seconds, corpus="mls")


def main(argv: Optional[List[str]] = None) -> None:
    corpus_main(prepare_mls, __doc__, argv)


if __name__ == "__main__":
    main()
