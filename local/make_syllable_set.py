#!/usr/bin/env python3
"""Write the phonetic probe set: synthesised syllables whose phonetic features are known by construction
(espnet_ext/analysis/phonetic.py: every consonant before each vowel, and the vowels alone), spoken by
espeak-ng from phoneme input in the dev voices of each adapter language, as a Kaldi dir; WAVs under
`<out_dir's parent>/local/<out_dir's name>_wav/` (as make_codeswitch.py keeps its audio).

    local/make_syllable_set.py --out_dir data/syllables
"""
import argparse
from pathlib import Path
from typing import List, Optional

from espnet_ext.analysis.phonetic import syllables
from espnet_ext.bin.cli import exits_on_user_error
from espnet_ext.data.audio import SAMPLE_RATE, write_wav
from espnet_ext.data.kaldi import Utterance, write_data_dir
from espnet_ext.languages import LANGUAGES
from prepare_tts_corpus import VARIANTS, Voice, check_espeak, speak

RATE, PITCH = 150, 50  # a little slower than espeak's default, so a syllable is long enough to encode


@exits_on_user_error
def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", type=Path, required=True)
    parser.add_argument("--langs", nargs="+", default=[c for c, lang in LANGUAGES.items() if lang.role == "adapter"])
    args = parser.parse_args(argv)
    check_espeak(args.langs)
    utterances = []
    for lang in args.langs:
        for variant in VARIANTS["dev"]:
            voice = Voice(lang, variant, RATE, PITCH)
            for syllable in syllables():
                utt_id = f"{voice.speaker_id}-{syllable}"
                wav = args.out_dir.parent / "local" / f"{args.out_dir.name}_wav" / f"{utt_id}.wav"
                audio = speak(voice, f"[[{syllable}]]", utt_id)
                write_wav(wav, audio)
                utterances.append(Utterance(utt_id, voice.speaker_id, syllable, lang, str(wav), len(audio) / SAMPLE_RATE))
    write_data_dir(args.out_dir, utterances)


if __name__ == "__main__":
    main()
