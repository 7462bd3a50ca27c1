"""Every entry point answers a user error (espnet_ext.errors.UserError: bad data, audio, model, adapter,
LID head or option) with one line naming the file and the fix and exit status 1, no traceback; a bug
(any other exception) still shows its traceback."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_an_unknown_model_name(corpus):
    one_line_error(run("decode", "--model", "whisper_huge", "--data_dir", str(corpus / "good"), "--out_dir", "y"),
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


# ---------------------------------------------------------------------------------------------------
# The holes a tester's bad-input sweep found: each is one line naming the file and the fix, exit 1, and
# what earlier runs wrote is kept.

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "conf" / "tuning" / "train_lora_tiny.yaml"


def run_script(script: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def loaded_a_model(done: subprocess.CompletedProcess) -> bool:
    return "base model " in done.stderr and " loaded: " in done.stderr  # espnet_ext.models.registry.load_model's log line


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """`good`: two 0.5 s utterances in each of hi and it; `hi_only`: the Hindi ones alone."""
    from espnet_ext.data.kaldi import Utterance, write_data_dir

    root = tmp_path_factory.mktemp("corpus")
    utterances = []
    for i, lang in enumerate(["hi", "hi", "it", "it"]):
        wav = root / f"{lang}{i}.wav"
        sf.write(str(wav), (0.1 * np.random.default_rng(i).standard_normal(8000)).astype(np.float32), 16000)
        utterances.append(Utterance(f"{lang}-s-{i}", f"{lang}-s", "x", lang, str(wav), 0.5))
    write_data_dir(root / "good", utterances)
    write_data_dir(root / "hi_only", utterances[:2])
    return root


def broken_copy(corpus, tmp_path, name: str, file: str, old: str, new: str) -> Path:
    """A copy of the good data dir with `old` replaced by `new` in one of its files."""
    copy = Path(shutil.copytree(corpus / "good", tmp_path / name))
    (copy / file).write_text((copy / file).read_text().replace(old, new, 1))
    return copy


def test_a_prepared_corpus_is_never_written_over_a_file(tmp_path):
    (tmp_path / "afile").write_text("keep\n")
    done = run_script("local/prepare_tts_corpus.py", "--out_dir", str(tmp_path / "afile"), "--langs", "hi")
    one_line_error(done, "prepare_tts_corpus.py", "afile", "is a file, not a directory", "give --out_dir")
    assert (tmp_path / "afile").read_text() == "keep\n"


def test_a_noisy_copy_never_replaces_its_clean_source(corpus):
    before = (corpus / "good" / "wav.scp").read_text()
    for dst in (corpus / "good", corpus / "." / "good"):  # the same dir, however it is spelled
        done = run_script("local/make_noisy_set.py", "--src", str(corpus / "good"), "--dst", str(dst))
        one_line_error(done, "make_noisy_set.py", "would replace the clean data dir", "give --dst a new dir")
    assert (corpus / "good" / "wav.scp").read_text() == before


def decode(data_dir, out_dir, *extra):
    return run("decode", "--model", "whisper_tiny_random", "--threads", "1", "--data_dir", str(data_dir),
               "--out_dir", str(out_dir), *extra)


def test_a_decode_config_that_is_missing_or_not_yaml(corpus, tmp_path):
    (tmp_path / "broken.yaml").write_text("beam_size: 2\nmax_tokens: [3\nbatch_size: 4\n")
    last = one_line_error(decode(corpus / "good", tmp_path / "out", "--config", str(tmp_path / "broken.yaml")),
                          "decode.py", "broken.yaml", "not valid YAML at line 3, column", "correct the syntax")
    assert "flow sequence" in last
    one_line_error(decode(corpus / "good", tmp_path / "out", "--config", str(tmp_path / "nope.yaml")),
                   "decode.py", "nope.yaml", "no such config file", "give an existing YAML file")


@pytest.mark.parametrize("content, words", [
    ("[1, 2, 3]", ("it holds a list, not an object", "codeswitch_lid")),
    ('{"hi-s-0": [[0.4, 0.1, "hi"]]}', ("utterance 'hi-s-0'", "empty or negative", "0 <= start < end")),
    ('{"hi-s-0": [[0.0, 0.5, "hi"]]}', ("no segments for 3 of the 4 utterances", "'hi-s-1'", "give segments made for")),
    ('{"hi-s-0": [[0, 5, "hi"]], "hi-s-1": [[0, 0.5, "hi"]], "it-s-2": [[0, 0.5, "it"]], "it-s-3": [[0, 0.5, "it"]]}',
     ("utterance 'hi-s-0'", "ends at 5 s, after the 0.5 s of its audio", "give segments made for")),
])
def test_decode_segments_that_do_not_fit_the_data_dir(corpus, tmp_path, content, words):
    (tmp_path / "segments.json").write_text(content)
    done = decode(corpus / "good", tmp_path / "out", "--routing", "oracle", "--adapter_dir", str(tmp_path),
                  "--segments", str(tmp_path / "segments.json"))
    one_line_error(done, "decode.py", "segments.json", *words)
    assert not loaded_a_model(done)  # checked on reading, before the model loads


def test_a_decode_job_outside_the_jobs(corpus, tmp_path):
    done = decode(corpus / "good", tmp_path / "out", "--job", "3", "--nj", "2")
    one_line_error(done, "decode.py", "--job 3 is not one of the --nj 2 jobs", "give --job 1 to 2")


def test_an_unknown_language_in_utt2lang_stops_decoding_before_the_model_loads(corpus, tmp_path):
    data = broken_copy(corpus, tmp_path, "badlang", "utt2lang", "hi-s-0 hi", "hi-s-0 xx")
    done = decode(data, tmp_path / "out")
    one_line_error(done, "decode.py", "badlang/utt2lang", "hi-s-0", "unknown language code 'xx'",
                   "add a row to espnet_ext/languages.py")
    assert not loaded_a_model(done)


def test_a_failed_decode_keeps_the_record_of_the_last_one(corpus, tmp_path):
    data = broken_copy(corpus, tmp_path, "corrupt", "wav.scp", str(corpus / "hi0.wav"), str(tmp_path / "bad.wav"))
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "decode_args.yaml").write_text("routing: none  # the decode that made text\n")
    one_line_error(decode(data, tmp_path / "out"), "decode.py", "bad.wav", "the file is corrupt or truncated")
    assert (tmp_path / "out" / "decode_args.yaml").read_text() == "routing: none  # the decode that made text\n"


def test_train_lid_names_itself_and_the_data_dirs(corpus, tmp_path):
    lid = ["--model", "whisper_tiny_random", "--threads", "1", "--epochs", "1", "--out_dir", str(tmp_path / "lid")]
    one_line_error(run("train_lid", *lid, "--adapter_dir", str(tmp_path / "nothere"), "--train_dir",
                       str(corpus / "good"), "--dev_dir", str(corpus / "good"), "--test_dir", str(corpus / "good")),
                   "train_lid.py", "--adapter_dir", "nothere does not exist", "run stage 3 first")
    one_line_error(run("train_lid", *lid, "--layer", "1", "--train_dir", str(corpus / "hi_only"), "--dev_dir",
                       str(corpus / "good"), "--test_dir", str(corpus / "good")),
                   "train_lid.py", f"--dev_dir {corpus / 'good'} holds utterances in ['it']", "train on data in them")


def test_train_lora_refuses_bad_input_and_keeps_the_record_of_the_last_run(corpus, tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    record = "model: whisper_tiny_random  # the run that trained this exp dir\n"
    (exp / "train_lora_args.yaml").write_text(record)
    (tmp_path / "broken.yaml").write_text(TINY_CONFIG.read_text().replace("\n", "\nbroken: [\n", 1))
    missing_wav = broken_copy(corpus, tmp_path, "missing_wav", "wav.scp", "hi0.wav", "gone.wav")
    badlang = broken_copy(corpus, tmp_path, "badlang", "utt2lang", "hi-s-0 hi", "hi-s-0 xx")
    cases = [
        (corpus / "good", tmp_path / "broken.yaml", ("broken.yaml", "not valid YAML at line", "correct the syntax")),
        (missing_wav, TINY_CONFIG, ("missing_wav/wav.scp", "gone.wav (utterance hi-s-0) not found",
                                    "restore the file, or rerun data preparation")),
        (badlang, TINY_CONFIG, ("badlang/utt2lang", "unknown language code 'xx'", "espnet_ext/languages.py")),
    ]
    for data, config, words in cases:
        done = run("train_lora", "--model", "whisper_tiny_random", "--threads", "1", "--train_dir", str(data),
                   "--valid_dir", str(corpus / "good"), "--exp_dir", str(exp), "--config", str(config), "--resume",
                   "true")
        last = one_line_error(done, "train_lora.py", *words)
        assert "Add them to lora_conf.languages" not in last  # that fix is for known languages without adapters
        assert (exp / "train_lora_args.yaml").read_text() == record


def test_resuming_from_a_damaged_checkpoint(corpus, tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "checkpoint.pth").write_bytes(b"PK\x03\x04 the first kilobyte of a checkpoint")
    done = run("train_lora", "--model", "whisper_tiny_random", "--threads", "1", "--train_dir", str(corpus / "good"),
               "--valid_dir", str(corpus / "good"), "--exp_dir", str(exp), "--config", str(TINY_CONFIG),
               "--resume", "true")
    one_line_error(done, "train_lora.py", "checkpoint.pth cannot be loaded", "truncated or corrupt",
                   "restore it from a copy", "new --exp_dir")
    assert (exp / "checkpoint.pth").read_bytes().startswith(b"PK")  # nothing deleted


def test_score_and_validate_given_the_wrong_kind_of_path(corpus, tmp_path):
    one_line_error(run("score", "--decode_dir", str(tmp_path), "--ref_text", str(corpus / "good")), "score.py",
                   "is a directory", f"give {corpus / 'good' / 'text'}")
    done = run("validate_data_dir", str(corpus / "good" / "text"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "text: is a file, not a data dir (fix: give the directory that holds wav.scp" in done.stderr
