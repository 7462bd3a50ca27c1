#!/usr/bin/env python3
"""Write the first N utterances of a one-language Kaldi dir, taken round-robin over its speakers (the few-shot
study's training subsets: many voices in a small subset, each smaller subset inside every larger one); with
--per_language, N of each language of a multi-language dir (the robustness study's test_q).

    local/subset_data_dir.py data/train_te 25 data/train_te_n25
    local/subset_data_dir.py --per_language data/test_all 25 data/test_q
"""
import argparse
from pathlib import Path

from espnet_ext.analysis.subsets import probe_subset
from espnet_ext.analysis.transfer import few_shot_subset
from espnet_ext.bin.cli import exits_on_user_error


@exits_on_user_error
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="one language's Kaldi dir (data/train_<lang>)")
    parser.add_argument("n", type=int, help="utterances to keep")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--per_language", action="store_true",
                        help="keep n utterances of each language of data_dir (any number of languages)")
    args = parser.parse_args(argv)
    (probe_subset if args.per_language else few_shot_subset)(args.data_dir, args.n, args.out_dir)


if __name__ == "__main__":
    main()
