"""espnet-lora-transcribe on the default recipe's trained system (real Whisper base, the rank-16 adapters,
the mlp LID head): a file with a Telugu sentence then an English one (the plan's Telugu-English pair) prints
two segments, te then en.

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


@pytest.mark.slow
@pytest.mark.skipif(not TRAINED, reason=f"needs the default run's trained system in {EXP} (./run.sh)")
def test_a_telugu_then_english_file_prints_two_segments_te_then_en(tmp_path):
    utterances = read_data_dir(RECIPE / "data" / "test_all") + read_data_dir(RECIPE / "data" / "test_en")
    first = {lang: next(u for u in utterances if u.lang == lang) for lang in ("te", "en")}
    pause = np.zeros(4000, dtype=np.float32)  # 250 ms
    wave = np.concatenate([utterance_audio(first["te"]), pause, utterance_audio(first["en"])])
    sf.write(str(tmp_path / "te_en.flac"), wave, 16000)
    done = subprocess.run([sys.executable, "-m", "espnet_ext.bin.transcribe", "--exp", str(EXP), "--json",
                           str(tmp_path / "te_en.flac")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert [s["lang"] for s in result["segments"]] == ["te", "en"], result["segments"]
    switch = result["segments"][1]["start"]
    assert abs(switch - (len(utterance_audio(first["te"])) + len(pause) / 2) / 16000) < 0.5  # within 0.5 s
    assert all(s["text"] for s in result["segments"]) and result["text"]
