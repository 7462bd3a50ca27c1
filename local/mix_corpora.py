#!/usr/bin/env python3
"""Mix corpora prepared alone (`<datadir>/<corpus>/train_hi`, ...) into the recipe's data dirs: one
training set per language with source tags (utt2src), each source's share of the hours (--mix_ratio),
temperature sampling across languages (--mix_alpha), and the test sets kept per source
(`test_hi_kathbath`, `test_hi_commonvoice`). See espnet_ext/data/mixing.py for the rules.

Usage (what stage 1 runs for `./run.sh --corpus "kathbath commonvoice" --mix_ratio 0.8,0.2`):
    local/mix_corpora.py --out_dir data --corpora kathbath commonvoice --mix_ratio 0.8,0.2 --langs hi
"""
import argparse
import logging
from pathlib import Path

from espnet_ext.data.corpus import LOG_FORMAT, exit_on_bad_input
from espnet_ext.data.mixing import MIX_REPORT, Source, mix_corpora, parse_ratios
from espnet_ext.languages import get_language


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", type=Path, required=True, help="data/: each corpus is prepared in data/<corpus>")
    parser.add_argument("--corpora", nargs="+", required=True, help="corpus names (their folders under --out_dir)")
    parser.add_argument("--langs", nargs="+", required=True, help="language codes to mix")
    parser.add_argument("--mix_ratio", default=None, help="each corpus' share of the training hours, e.g. 0.8,0.2 "
                                                          "(default: equal shares)")
    parser.add_argument("--mix_alpha", type=float, default=1.0,
                        help="temperature sampling across languages: shares ~ hours**alpha (1: as they are)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsampling")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    with exit_on_bad_input(parser.prog):
        if args.mix_alpha < 0:
            raise ValueError(f"--mix_alpha {args.mix_alpha:g}: give 0 (equal hours per language) to 1 (as they are)")
        langs = [get_language(lang).code for lang in args.langs]
        ratios = parse_ratios(args.corpora, args.mix_ratio)
        sources = [Source(name, args.out_dir / name, ratio) for name, ratio in zip(args.corpora, ratios)]
        mix_corpora(args.out_dir, sources, langs, args.mix_alpha, args.seed)
    logging.info("mixed %s into %s (hours: %s)", " + ".join(args.corpora), args.out_dir, args.out_dir / MIX_REPORT)


if __name__ == "__main__":
    main()
