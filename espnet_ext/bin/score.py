"""Score a decode dir with NIST sclite: WER and CER, overall and per language.

    python -m espnet_ext.bin.score --decode_dir exp/M/decode_test_oracle --ref_text data/test/text

reads `<decode_dir>/text` (Kaldi `uttid hypothesis`) and writes ref.trn, hyp.trn, score_wer/result.txt,
score_cer/result.txt, scores.json and result.txt into the decode dir (see espnet_ext.scoring.report).
"""
import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet_ext.scoring import ScoringError
from espnet_ext.scoring.report import format_rate, score_decode_dir
from espnet_ext.bin.cli import exits_on_user_error


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decode_dir", type=Path, required=True, help="dir holding the hypotheses `text`")
    parser.add_argument("--ref_text", type=Path, required=True, help="reference: the data dir's `text`")
    parser.add_argument("--utt2spk", type=Path, help="speakers for sclite's summary (default: beside --ref_text)")
    parser.add_argument(
        "--utt2lang", type=Path,
        help="languages for per-language scores (default: beside --ref_text if there; else overall only)",
    )
    parser.add_argument("--sclite", help="sclite binary (default: sclite on PATH, else /usr/lib/sctk/bin/sclite)")
    return parser


@exits_on_user_error
def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="score.py: %(levelname)s: %(message)s")
    if args.ref_text.is_dir():
        raise ScoringError(f"--ref_text {args.ref_text} is a directory; give {args.ref_text / 'text'}, its reference "
                           "transcripts")
    data_dir = args.ref_text.parent
    utt2lang = args.utt2lang
    if utt2lang is None and (data_dir / "utt2lang").is_file():
        utt2lang = data_dir / "utt2lang"
    scores = score_decode_dir(args.decode_dir, args.ref_text, args.utt2spk or data_dir / "utt2spk", utt2lang, args.sclite)
    overall = scores["scores"]["all"]
    logging.info(
        "%s: WER %s%% CER %s%% over %d utterances; details in %s",
        args.decode_dir, format_rate(overall["wer"]), format_rate(overall["cer"]),
        overall["utterances"], args.decode_dir / "result.txt",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
