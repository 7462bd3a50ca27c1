"""`./run.sh --corpus "kathbath commonvoice" --lang hi --stop_stage 1` on fixtures of both corpora: each is
prepared alone into data/<corpus>/, then mixed into one training set with utt2src, the shares of hours
of --mix_ratio (to within one utterance), test sets per source and the real code-switched set."""
import json
import os
import subprocess
import sys
from pathlib import Path

from test_mixing import train_seconds
from test_prepare_commonvoice import write_release
from test_prepare_kathbath import write_kathbath

from espnet_ext.data.kaldi import read_data_dir

RECIPE = Path(__file__).resolve().parents[2] / "egs2" / "multilingual_lora" / "asr1"


def test_two_corpora_become_one_tagged_training_set_with_test_sets_per_source(tmp_path):
    write_kathbath(tmp_path / "kathbath")
    write_release(tmp_path / "cv", "hi", {
        "train": [(0, "common_voice_hi_1.mp3", "मैं घर जा रहा हूँ"), (1, "common_voice_hi_2.mp3", "कल मिलेंगे"),
                  (1, "common_voice_hi_6.mp3", "फिर मिलेंगे")],  # = a Kathbath test sentence: not trained on
        "dev": [(1, "common_voice_hi_3.mp3", "आज")],
        "test": [(2, "common_voice_hi_4.mp3", "धन्यवाद"), (3, "common_voice_hi_5.mp3", "मेरा phone खो गया")],
    })
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               KATHBATH=str(tmp_path / "kathbath"), COMMONVOICE=str(tmp_path / "cv"))
    data = tmp_path / "data"
    done = subprocess.run(["./run.sh", "--datadir", str(data), "--expdir", str(tmp_path / "exp"), "--corpus",
                           "kathbath commonvoice", "--mix_ratio", "0.6,0.4", "--lang", "hi", "--stop_stage", "1"],
                          cwd=RECIPE, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    got = train_seconds(data / "train_hi")
    report = json.loads((data / "mix.json").read_text())["languages"]["hi"]
    available = {name: h * 3600 for name, h in report["available_hours"].items()}
    total = min(available["kathbath"] / 0.6, available["commonvoice"] / 0.4)
    longest = max(u.duration for u in read_data_dir(data / "commonvoice" / "train_hi") +
                  read_data_dir(data / "kathbath" / "train_hi"))
    for name, share in (("kathbath", 0.6), ("commonvoice", 0.4)):
        assert share * total - longest < got[name] <= share * total + 1e-3
    assert available["commonvoice"] == sum(u.duration for u in read_data_dir(data / "commonvoice" / "train_hi")
                                           if u.text != "फिर मिलेंगे")
    assert "फिर मिलेंगे" not in [u.text for u in read_data_dir(data / "train_hi")]
    assert {p.name for p in data.glob("test_*")} == {
        "test_hi_kathbath", "test_known_hi_kathbath", "test_hi_commonvoice", "test_cs_commonvoice"}
    assert [u.text for u in read_data_dir(data / "test_cs_commonvoice")] == ["मेरा phone खो गया"]
    assert (data / "test_hi_commonvoice" / "utt2cs").is_file()
    assert set((data / "dev_hi" / "utt2src").read_text().split()[1::2]) == {"kathbath", "commonvoice"}
    assert "train_hi: kathbath" in done.stdout  # the hours per source, shown
