#!/usr/bin/env python3
"""Transcribe your own recordings with a trained system: language ID, per-segment routing, transcript.

    espnet-lora-transcribe --exp egs2/multilingual_lora/asr1/exp/whisper_base_all_r16 a.wav b.flac
    espnet-lora-transcribe --exp ... --json a.wav > a.jsonl       # one JSON object per file

Prints per file the language posteriors, the routing decision, the segments where the language changes
(start-end seconds, language, confidence) and the transcript. The base, the adapters and the LID head
load once; files are read in any format soundfile (or PyAV) reads and resampled to 16 kHz; recordings
longer than 30 s are cut at low-energy points (espnet_ext.decode.service). A file that cannot be read
is reported on one line, naming it, and the others are still transcribed (exit status 1 then).
"""
import argparse
import json
import logging
import sys
from pathlib import Path

from espnet_ext.bin.cli import exits_on_user_error, start_cli
from espnet_ext.data.audio import AudioError
from espnet_ext.decode.service import UNKNOWN, FileResult, Transcriber
from espnet_ext.lid.segments import DEFAULT_MIN_SEGMENT_S
from espnet_ext.routing.routers import DEFAULT_TAU


def add_system_arguments(p: argparse.ArgumentParser) -> None:
    """The options that say which trained system transcribes (this command's and espnet-lora-demo's)."""
    p.add_argument("--exp", type=Path, required=True, help="a trained exp dir holding adapters/ and lid/<head>/")
    p.add_argument("--lid_head", default=None,
                   help="which head under <exp>/lid/ finds the segments (default: the frame tagger if stage 4 "
                        "trained one, else asp)")
    p.add_argument("--model_path", default=None, help="local weights for models that need them")
    p.add_argument("--switch_penalty", type=float, default=None,
                   help="Viterbi penalty per language switch (nats): higher, fewer segments (default: the one "
                        "chosen on dev for the head's track)")
    p.add_argument("--min_segment", type=float, default=DEFAULT_MIN_SEGMENT_S,
                   help="shortest language segment (s): longer, fewer segments")
    p.add_argument("--min_confidence", type=float, default=DEFAULT_TAU,
                   help=f"segments below this mean top posterior are marked {UNKNOWN!r}")


def load_system(args: argparse.Namespace) -> Transcriber:
    """The Transcriber those options name (loaded once)."""
    return Transcriber(args.exp, args.lid_head, args.model_path, args.switch_penalty, args.min_segment,
                       args.min_confidence)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="espnet-lora-transcribe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_system_arguments(p)
    p.add_argument("--json", action="store_true", help="one JSON line per file instead of text")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("files", nargs="+", type=Path)
    return p


def describe(result: FileResult) -> str:
    top = sorted(result.posteriors.items(), key=lambda kv: -kv[1])
    lines = [f"{result.file} ({result.duration:.1f} s): language {result.lang}",
             "  posteriors: " + ", ".join(f"{lang} {p:.2f}" for lang, p in top),
             f"  routing: {result.routing}"]
    lines += [f"  {s.start:6.2f}-{s.end:6.2f} s  {s.lang}{' (' + UNKNOWN + ')' if s.low_confidence else ''}  "
              f"p={s.confidence:.2f}  {s.text}" for s in result.segments]
    lines.append(f"  transcript: {result.text}")
    return "\n".join(lines)


@exits_on_user_error
def main(argv=None) -> None:
    args = start_cli(get_parser(), argv, logging.WARNING)
    transcriber = load_system(args)
    failed = 0
    for path in args.files:
        try:
            result = transcriber.transcribe_file(path)
        except AudioError as err:
            print(f"espnet-lora-transcribe: {err} (give a readable audio file: wav, flac, ogg, mp3, ...)",
                  file=sys.stderr)
            failed += 1
            continue
        print(json.dumps(result.as_dict(), ensure_ascii=False) if args.json else describe(result), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
