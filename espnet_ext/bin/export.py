"""Export a language's LoRA adapter for where users serve Whisper (espnet_ext.lora.serving_export).

    python -m espnet_ext.bin.export --adapter_dir exp/<exp>/adapters --lang te --format ct2 --out_dir DIR
        the base with te's adapter merged, as a CTranslate2 model: faster_whisper.WhisperModel(DIR)
    python -m espnet_ext.bin.export --adapter_dir exp/<exp>/adapters --lang te --format peft --out_dir DIR
        a PEFT LoRA adapter: peft.PeftModel.from_pretrained(WhisperForConditionalGeneration, DIR)

`--lang all` writes every language of the bank to DIR/<lang>. Both consumers encode the 30 s window only.
Whisper adapters only (OWSM has no transformers/CTranslate2 counterpart).
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

from espnet_ext.bin.cli import exits_on_user_error, start_cli

ALL = "all"


def get_parser() -> argparse.ArgumentParser:
    from espnet_ext.lora.serving_export import FORMATS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adapter_dir", type=Path, required=True, help="<exp>/adapters of a trained exp (stage 3)")
    p.add_argument("--lang", required=True, help=f"the language whose adapter to export, or {ALL!r}: each to "
                                                  "<out_dir>/<lang>")
    p.add_argument("--format", choices=FORMATS, required=True,
                   help="ct2: merged CTranslate2 model for faster-whisper; peft: PEFT LoRA adapter for transformers")
    p.add_argument("--out_dir", type=Path, required=True, help="written whole or not at all (replaced if present)")
    p.add_argument("--model_path", default=None, help="ct2: local weights of the base, for models that need them")
    return p


def chosen_languages(adapter_dir: Path, lang: str) -> List[str]:
    """`lang`, checked against the bank in `adapter_dir`, or every language of it for `all`."""
    from espnet_ext.lora.adapter_files import bank_languages
    from espnet_ext.lora.adapter_files import AdapterFileError

    langs = bank_languages(adapter_dir)
    if lang == ALL:
        return langs
    if lang not in langs:
        raise AdapterFileError(f"--lang {lang}: {adapter_dir} holds no adapter {lang!r}; its languages are "
                               f"{', '.join(langs)} (or give --lang {ALL})")
    return [lang]


@exits_on_user_error
def main(argv: Optional[List[str]] = None) -> int:
    from espnet_ext.lora.serving_export import WINDOW_CAVEAT, export

    args = start_cli(get_parser(), argv)
    langs = chosen_languages(args.adapter_dir, args.lang)
    out_dirs = [args.out_dir / lang for lang in langs] if args.lang == ALL else [args.out_dir]
    for out in export(args.adapter_dir, langs, args.format, out_dirs, args.model_path):
        print(f"export.py: wrote {out}", file=sys.stderr)
    print(f"export.py: note: {WINDOW_CAVEAT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
