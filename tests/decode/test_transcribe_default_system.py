"""espnet-lora-transcribe on the default recipe's trained system (real Whisper base, the rank-16 adapters,
and the head that finds its segments: the frame tagger where `--codeswitch true` trained one, else the
asp head's windows): a file with a Telugu sentence then an English one (the plan's Telugu-English pair)
prints two segments, te then en; so does Hindi then Italian, which the windows split in three (pa hi it)
and the tagger does not (README, "Code-switched speech").

Needs the default run's outputs (`./run.sh` in egs2/multilingual_lora/asr1, ~52 min), so it is skipped
where they are absent (CI trains nothing that long); ESPNET_LORA_RECIPE points it at another recipe
dir (one holding data/ and exp/)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet_ext.data.audio import utterance_audio
from espnet_ext.data.kaldi import read_data_dir
from espnet_ext.lid.heads import DEFAULT_HEAD

RECIPE = Path(os.environ.get("ESPNET_LORA_RECIPE", Path(__file__).resolve().parents[2] / "egs2/multilingual_lora/asr1"))
EXP = RECIPE / "exp" / "whisper_base_all_r16"
TRAINED = (EXP / "adapters" / "hi" / "adapter_config.json").is_file() and (EXP / "lid" / DEFAULT_HEAD / "lid_config.json").is_file()


TAGGER = (EXP / "lid" / "tagger" / "lid_config.json").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not TRAINED, reason=f"needs the default run's trained system in {EXP} (./run.sh)")
@pytest.mark.parametrize("pair", [("te", "en"), pytest.param(("hi", "it"), marks=pytest.mark.skipif(
    not TAGGER, reason="the windows take its first 1.6 s for Punjabi; needs the tagger (--codeswitch true)"))])
def test_a_file_in_two_languages_prints_two_segments_in_order(pair, tmp_path):
    utterances = read_data_dir(RECIPE / "data" / "test_all") + read_data_dir(RECIPE / "data" / "test_en")
    first = {lang: next(u for u in utterances if u.lang == lang) for lang in pair}
    pause = np.zeros(4000, dtype=np.float32)  # 250 ms
    wave = np.concatenate([utterance_audio(first[pair[0]]), pause, utterance_audio(first[pair[1]])])
    sf.write(str(tmp_path / "two.flac"), wave, 16000)
    done = subprocess.run([sys.executable, "-m", "espnet_ext.bin.transcribe", "--exp", str(EXP), "--json",
                           str(tmp_path / "two.flac")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert [s["lang"] for s in result["segments"]] == list(pair), result["segments"]
    switch = result["segments"][1]["start"]
    assert abs(switch - (len(utterance_audio(first[pair[0]])) + len(pause) / 2) / 16000) < 0.5  # within 0.5 s
    assert all(s["text"] for s in result["segments"]) and result["text"]
