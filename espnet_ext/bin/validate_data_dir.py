"""Validate Kaldi data dirs; run after every data stage so that training never meets a broken corpus.

Usage:
    python -m espnet_ext.bin.validate_data_dir data/train_hi [data/dev_hi ...]
    python -m espnet_ext.bin.validate_data_dir --no_audio --dur_tolerance 0.1 data/train_all

Exits 0 when every dir is valid; otherwise prints each problem as `file:line: problem (fix: ...)` and
exits 1.
"""
import argparse
import logging
import sys
from typing import List, Optional

from espnet_ext.data.corpus import LOG_FORMAT
from espnet_ext.data.validate import DEFAULT_DUR_TOLERANCE, InvalidDataDir, validate_data_dir
from espnet_ext.bin.cli import exits_on_user_error


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dirs", nargs="+", help="Kaldi data dirs to check")
    parser.add_argument("--no_audio", action="store_true",
                        help="skip decoding the audio (lists, transcripts and languages are still checked)")
    parser.add_argument("--dur_tolerance", type=float, default=DEFAULT_DUR_TOLERANCE,
                        help="allowed difference in seconds between utt2dur and the audio")
    return parser


@exits_on_user_error
def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    failed = 0
    for data_dir in args.data_dirs:
        try:
            validate_data_dir(data_dir, check_audio=not args.no_audio, dur_tolerance=args.dur_tolerance)
        except InvalidDataDir as err:
            print(err, file=sys.stderr)
            failed += 1
    if failed:
        logging.error("%d of %d data dir(s) invalid", failed, len(args.data_dirs))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
