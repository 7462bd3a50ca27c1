"""Every entry point answers a user error (espnet_ext.errors.UserError: bad data, audio, model, adapter,
LID head or option) with one line naming the file and the fix and exit status 1, no traceback; a bug
(any other exception) still shows its traceback."""
import json
import subprocess
import sys

import pytest
import soundfile as sf
import numpy as np

from espnet_ext.bin.cli import exits_on_user_error
from espnet_ext.data.kaldi import DataDirError


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"espnet_ext.bin.{module}", *args], capture_output=True, text=True,
                          timeout=300)


def one_line_error(done: subprocess.CompletedProcess, prog: str, *words: str) -> str:
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{prog}: ") and all(w in last for w in words), last
    return last


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """One broken input of each kind."""
    root = tmp_path_factory.mktemp("bad")
    (root / "no_wav_scp").mkdir()
    (root / "text.txt").write_text("u1 hello\n")
    adapters = root / "adapters" / "hi"
    adapters.mkdir(parents=True)
    (adapters / "adapter_config.json").write_text("{not json")
    head = root / "lid_head"
    head.mkdir()
    (head / "lid_config.json").write_text(json.dumps({"format": "espnet_ext.lid_head", "kind": "mlp"}))
    (root / "ct2").mkdir()
    (root / "ct2" / "model.bin").write_bytes(b"garbage, not a CTranslate2 model")
    (root / "ct2" / "config.json").write_text("{}")
    sf.write(str(root / "ok.wav"), np.zeros(16000, dtype=np.float32), 16000)
    (root / "broken.flac").write_bytes(b"fLaC but nothing after")
    return root


def test_a_data_dir_without_wav_scp(bad):
    one_line_error(run("decode", "--model", "whisper_tiny_random", "--data_dir", str(bad / "no_wav_scp"),
                       "--out_dir", str(bad / "out")), "decode.py", "wav.scp", "fix")


def test_an_unknown_model_name():
    one_line_error(run("decode", "--model", "whisper_huge", "--data_dir", "x", "--out_dir", "y"),
                   "decode.py", "unknown model 'whisper_huge'", "whisper_base")


def test_a_damaged_adapter_file(bad, tmp_path):
    from espnet_ext.data.kaldi import Utterance, write_data_dir

    sf.write(str(tmp_path / "u.wav"), np.zeros(8000, dtype=np.float32), 16000)
    write_data_dir(tmp_path / "d", [Utterance("s-u", "s", "x", "hi", str(tmp_path / "u.wav"), 0.5)])
    one_line_error(run("decode", "--model", "whisper_tiny_random", "--data_dir", str(tmp_path / "d"), "--out_dir",
                       str(tmp_path / "o"), "--routing", "oracle", "--adapter_dir", str(bad / "adapters")),
                   "decode.py", "adapter_config.json")


def test_a_damaged_lid_head(bad, tmp_path):
    from espnet_ext.data.kaldi import Utterance, write_data_dir

    sf.write(str(tmp_path / "u.wav"), np.zeros(8000, dtype=np.float32), 16000)
    write_data_dir(tmp_path / "d", [Utterance("s-u", "s", "x", "hi", str(tmp_path / "u.wav"), 0.5)])
    one_line_error(run("train_lid", "--model", "whisper_tiny_random", "--layer", "1", "--train_dir", str(bad / "no_wav_scp"),
                       "--dev_dir", str(tmp_path / "d"), "--test_dir", str(tmp_path / "d"), "--out_dir", str(tmp_path / "lid")),
                   "train_lid.py", "utt2lang")
    one_line_error(run("codeswitch_lid", "--model", "whisper_tiny_random", "--lid_dir", str(bad / "lid_head"),
                       "--data_dir", str(tmp_path / "d"), "--out_dir", str(tmp_path / "cs")), "codeswitch_lid.py")


def test_a_missing_reference_text(bad):
    one_line_error(run("score", "--decode_dir", str(bad), "--ref_text", str(bad / "none.txt")), "score.py", "none.txt")


def test_a_file_that_is_not_a_ctranslate2_model(bad):
    one_line_error(run("convert_ctranslate2", "--ct2_dir", str(bad / "ct2"), "--out", str(bad / "conv")),
                   "convert_ctranslate2.py", "config.json")


def test_an_unknown_language_for_the_recipe():
    one_line_error(run("recipe_info", "langs", "--lang", "xx"), "recipe_info.py", "'xx'")


def test_an_exp_dir_without_adapters_for_transcribe(bad):
    one_line_error(run("transcribe", "--exp", str(bad / "no_wav_scp"), str(bad / "ok.wav")), "transcribe.py", "adapters")


def test_a_user_error_exits_with_one_line_and_a_bug_keeps_its_traceback():
    @exits_on_user_error
    def main(argv=None):
        if argv == ["bad"]:
            raise DataDirError("data/x/wav.scp", None, "missing", "rerun stage 1")
        return {}["no such key"]  # a bug

    with pytest.raises(SystemExit) as exit_info:
        main(["bad"])
    assert str(exit_info.value.code) == "test_user_errors.py: data/x/wav.scp: missing (fix: rerun stage 1)"
    with pytest.raises(KeyError):
        main(["good"])


def test_a_bug_inside_a_real_cli_shows_its_traceback(monkeypatch, bad):
    from espnet_ext.bin import score

    def broken(*args, **kwargs):
        raise ZeroDivisionError("an internal bug")

    monkeypatch.setattr(score, "score_decode_dir", broken)
    with pytest.raises(ZeroDivisionError):
        score.main(["--decode_dir", str(bad), "--ref_text", str(bad / "text.txt")])
