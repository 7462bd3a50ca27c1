#!/usr/bin/env python3
"""Answers the recipe driver's small questions so that no such logic lives in shell.

    python -m espnet_ext.bin.recipe_info langs --lang all     # -> "hi pa te it"
    python -m espnet_ext.bin.recipe_info threads --nj 2       # torch threads per job on this machine
"""
import argparse
import os

from espnet_ext.languages import LANGUAGES, get_language


def langs(lang: str) -> str:
    """Expand `--lang` (a code or `all`) into the language codes it covers, failing on unknown ones."""
    return " ".join(LANGUAGES) if lang == "all" else get_language(lang).code


def threads(nj: int) -> int:
    """Split this machine's cores evenly between `nj` parallel jobs (at least one each)."""
    return max(1, (os.cpu_count() or 1) // max(1, nj))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="question", required=True)
    sub.add_parser("langs").add_argument("--lang", required=True)
    sub.add_parser("threads").add_argument("--nj", type=int, required=True)
    args = p.parse_args(argv)
    try:
        print(langs(args.lang) if args.question == "langs" else threads(args.nj))
    except ValueError as e:
        raise SystemExit(f"recipe: {e}")


if __name__ == "__main__":
    main()
