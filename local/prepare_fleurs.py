#!/usr/bin/env python3
"""Turn Google's FLEURS into the recipe's Kaldi data dirs (16 kHz WAV, validated).

Layout, as the Hugging Face dataset repo google/fleurs holds it (`data/<code>/`) with each audio
archive extracted where it lies (its `fleurs.py` loader joins `audio/<split>/<file_name>`):

    <corpus_dir>/<code>/{train,dev,test}.tsv
    <corpus_dir>/<code>/audio/{train,dev,test}/<file_name>.wav     (from audio/<split>.tar.gz)

`<code>` is FLEURS' `<iso>_<region>`: hi_in, pa_in, te_in, it_it (FLEURS_CODES). `--corpus_dir` may also
point at the repo's `data/` folder or at one `<code>` folder. Each TSV line has no header and 7 tab-separated
fields (the loader's order): id, file_name, raw_transcription, transcription, the character sequence,
num_samples, gender. The raw transcription (cased, punctuated) is kept, as for the other corpora; the
scorer normalises. `id` is the sentence's, shared by every recording of it, and FLEURS gives no speaker
ids, so each recording is its own speaker (`<lang>-fleurs-<file stem>`) and the official splits are kept.

Writes `<out_dir>/{train,dev,test}_<lang>` and the unions `<out_dir>/{train,dev,test}_all`.

Usage:
    local/prepare_fleurs.py --corpus_dir downloads/fleurs --out_dir data
    local/prepare_fleurs.py --corpus_dir downloads/fleurs/data/te_in --out_dir data --langs te
"""
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_ext.data.corpus import (
    MAX_SECONDS, MIN_SECONDS, SourceUtterance, build_data_dirs, corpus_main, language_dirs,
)
from espnet_ext.data.kaldi import DataDirError, Utterance

SPLITS = ("train", "dev", "test")
FLEURS_CODES = {"hi": "hi_in", "pa": "pa_in", "te": "te_in", "it": "it_it", "en": "en_us", "mr": "mr_in",
                "ne": "ne_np", "ta": "ta_in", "kn": "kn_in", "es": "es_419", "fr": "fr_fr"}
FIELDS = 7


def find_language_dir(corpus_dir: Path, lang: str) -> Optional[Path]:
    """`<code>` below `corpus_dir` or below its `data/`, or `corpus_dir` itself."""
    code = FLEURS_CODES.get(lang)
    if code is None:
        return None
    if corpus_dir.name == code:
        return corpus_dir
    return next((p for p in (corpus_dir / code, corpus_dir / "data" / code) if p.is_dir()), None)


def read_split(folder: Path, split: str, lang: str) -> List[SourceUtterance]:
    """One split's TSV lines, each checked, with the audio path the layout gives."""
    tsv = folder / f"{split}.tsv"
    if not tsv.is_file():
        raise DataDirError(tsv, None, "split file not found", "download the split's .tsv from google/fleurs")
    sources = []
    for line, raw in enumerate(tsv.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        fields = raw.split("\t")
        if len(fields) != FIELDS or not fields[1].endswith(".wav"):
            raise DataDirError(tsv, line, f"expected {FIELDS} tab-separated fields with a .wav file name second, "
                                          f"got {len(fields)}", "use the TSV as google/fleurs ships it")
        speaker = f"{lang}-fleurs-{Path(fields[1]).stem}"
        sources.append(SourceUtterance(
            utt_id=speaker, speaker=speaker, lang=lang, text=fields[2],
            source=folder / "audio" / split / fields[1], manifest=str(tsv), line=line,
        ))
    return sources


def prepare_fleurs(corpus_dir: Path, out_dir: Path, langs: Optional[Sequence[str]] = None,
                   audio_dir: Optional[Path] = None, nj: int = 2,
                   min_seconds: float = MIN_SECONDS, max_seconds: float = MAX_SECONDS,
                   ) -> Dict[str, List[Utterance]]:
    """Prepare every requested language (default: every adapter language present) and the unions."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    audio_dir = Path(audio_dir) if audio_dir is not None else out_dir / "local" / "fleurs_wav"
    folders = language_dirs(corpus_dir, langs, lambda lang: find_language_dir(corpus_dir, lang),
                            "<code>/{train,dev,test}.tsv, e.g. hi_in/train.tsv")
    sources = {f"{split}_{lang}": read_split(folder, split, lang)
               for lang, folder in folders.items() for split in SPLITS}
    return build_data_dirs(out_dir, sources, audio_dir, nj, min_seconds, max_seconds, corpus="fleurs")


def main(argv: Optional[List[str]] = None) -> None:
    corpus_main(prepare_fleurs, __doc__, argv)


if __name__ == "__main__":
    main()
