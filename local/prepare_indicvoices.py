#!/usr/bin/env python3
"""Turn AI4Bharat's IndicVoices (raw release) into the recipe's Kaldi data dirs (16 kHz WAV, validated).

Layout, as the release's README says to extract it and as its `TGZ/create_indicvoices.py` walks it (the
language is `json_path.split('/')[-4]`; github.com/AI4Bharat/IndicVoices):

    <corpus_dir>/<Language>/<version>/{train,valid}/<uuid>_<n>.json    one long recording's metadata
    <corpus_dir>/<Language>/<version>/{train,valid}/<uuid>_<n>.wav     the recording (any sample rate)

`<Language>` is the capitalised English name (Hindi, Punjabi, Telugu; IndicVoices has no Italian),
`<version>` the release folder (v1, v1a, ...; exactly one per language). `--corpus_dir` may also be one
`<Language>` folder. Each JSON holds a whole recording: its participant (`speaker_id`, `gender`, ...)
and two index-aligned lists, `verbatim` (segments with `start`, `end` in seconds, `text` and the
in-recording `speaker_id`: 1 is the second voice of a conversation) and `normalized` (the same segments'
normalised `text`). As upstream's script does, each segment becomes an utterance cut out of the
recording and resampled, the normalised text is kept with its `[...]`/`(...)` tags removed, and segments
of in-recording speaker 1 are left out (they are not the participant the speaker id names). Unlike
upstream, Latin-script words stay: they are real Hindi-English code-mixing (tagged in `utt2cs`).

The release has train and valid only: valid becomes test, and dev is carved from train by speaker
(DEV_FRACTION of the segments, whole speakers, chosen by a hash of the id: the same on every run). A
participant found in both train and valid keeps only the test segments, so no speaker crosses splits. In
the messages, a JSON's "line" is its segment number (1-based).

Writes `<out_dir>/{train,dev,test}_<lang>` and the unions `<out_dir>/{train,dev,test}_all`.

Usage:
    local/prepare_indicvoices.py --corpus_dir downloads/indicvoices --out_dir data
    local/prepare_indicvoices.py --corpus_dir downloads/indicvoices/Telugu --out_dir data --langs te
"""
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_ext.data.corpus import MAX_SECONDS, MIN_SECONDS, SourceUtterance, build_data_dirs, corpus_main, language_dirs
from espnet_ext.data.kaldi import DataDirError, Utterance
from espnet_ext.languages import get_language

log = logging.getLogger("prepare_indicvoices")
SPLITS = ("train", "valid")
DEV_FRACTION = 0.05
SECOND_VOICE = 1  # verbatim[i]["speaker_id"] of a conversation's other party, dropped as upstream does
TAGS = re.compile(r"\[[^\]]*\]|\([^)]*\)")  # [noise], (unclear) ...


def find_language_dir(corpus_dir: Path, lang: str) -> Optional[Path]:
    """`<corpus_dir>/<Language>/<version>` (or `<corpus_dir>/<version>` when it is the language folder)."""
    name = get_language(lang).name
    folder = corpus_dir if corpus_dir.name == name else corpus_dir / name
    versions = sorted(p.parent for p in folder.glob("*/train") if p.is_dir())
    if len(versions) > 1:
        raise DataDirError(folder, None, f"several releases: {', '.join(v.name for v in versions)}",
                           "keep one version folder per language, or point --corpus_dir at a copy holding one")
    return versions[0] if versions else None


def read_recording(meta: Path, lang: str) -> List[SourceUtterance]:
    """One recording's segments (those of its participant), each with its normalised text."""
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
        pairs = list(zip(info["verbatim"], info["normalized"], strict=True))
        speaker = f"{lang}-iv-{info.get('speaker_id') or meta.stem}".replace(" ", "_")
        return [
            SourceUtterance(
                utt_id=f"{speaker}-{meta.stem}-{k:03d}", speaker=speaker, lang=lang,
                text=TAGS.sub(" ", norm["text"]), source=meta.with_suffix(".wav"),
                manifest=str(meta), line=k, start=float(seg["start"]), end=float(seg["end"]),
            )
            for k, (seg, norm) in enumerate(pairs, start=1)
            if seg.get("speaker_id") != SECOND_VOICE
        ]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise DataDirError(meta, None, f"not an IndicVoices metadata file ({type(err).__name__}: {err})",
                           "re-extract it from the release (verbatim and normalized: index-aligned segment "
                           "lists with start, end and text)") from None


def read_split(folder: Path, lang: str) -> List[SourceUtterance]:
    """Every recording of a split, in file name order."""
    metas = sorted(folder.glob("*.json"))
    if not metas:
        raise DataDirError(folder, None, "no <uuid>_<n>.json metadata files", "extract the split's archive here")
    return [src for meta in metas for src in read_recording(meta, lang)]


def _speaker_hash(speaker: str) -> str:
    return hashlib.sha256(speaker.encode()).hexdigest()


def carve_dev(train: List[SourceUtterance], test: List[SourceUtterance], lang: str) -> Dict[str, List[SourceUtterance]]:
    """Train without the test speakers, and a dev set of whole train speakers (DEV_FRACTION of segments)."""
    test_speakers = {src.speaker for src in test}
    shared = {src.speaker for src in train} & test_speakers
    if shared:
        log.info("%s: %d speakers are in both train and valid; their train segments are dropped", lang, len(shared))
    train = [src for src in train if src.speaker not in test_speakers]
    speakers = sorted({src.speaker for src in train}, key=_speaker_hash)
    dev_speakers, dev_count = set(), 0
    for speaker in speakers[:-1]:  # at least one speaker stays in train
        if dev_count >= DEV_FRACTION * len(train):
            break
        dev_speakers.add(speaker)
        dev_count += sum(src.speaker == speaker for src in train)
    return {f"train_{lang}": [s for s in train if s.speaker not in dev_speakers],
            f"dev_{lang}": [s for s in train if s.speaker in dev_speakers],
            f"test_{lang}": test}


def prepare_indicvoices(corpus_dir: Path, out_dir: Path, langs: Optional[Sequence[str]] = None,
                        audio_dir: Optional[Path] = None, nj: int = 2,
                        min_seconds: float = MIN_SECONDS, max_seconds: float = MAX_SECONDS,
                        ) -> Dict[str, List[Utterance]]:
    """Prepare every requested language (default: every adapter language present) and the unions."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    audio_dir = Path(audio_dir) if audio_dir is not None else out_dir / "local" / "indicvoices_wav"
    folders = language_dirs(corpus_dir, langs, lambda lang: find_language_dir(corpus_dir, lang),
                            "<Language>/<version>/{train,valid}/<uuid>_<n>.json, e.g. Hindi/v1/train/")
    sources: Dict[str, List[SourceUtterance]] = {}
    for lang, folder in folders.items():
        missing = [split for split in SPLITS if not (folder / split).is_dir()]
        if missing:
            raise DataDirError(folder, None, f"no {' or '.join(missing)} folder", "extract both splits of the release")
        sources.update(carve_dev(read_split(folder / "train", lang), read_split(folder / "valid", lang), lang))
    return build_data_dirs(out_dir, sources, audio_dir, nj, min_seconds, max_seconds, corpus="indicvoices")


def main(argv: Optional[List[str]] = None) -> None:
    corpus_main(prepare_indicvoices, __doc__, argv)


if __name__ == "__main__":
    main()
