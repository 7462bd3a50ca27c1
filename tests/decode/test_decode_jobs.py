"""Decode jobs and their merge: a rerun redoes only the jobs that did not finish (or whose options
changed), and the merge refuses to join an unfinished job, so no merged output is ever partial."""
import logging

import pytest

from espnet_ext.bin import decode
from espnet_ext.models.registry import load_model
from espnet_ext.scoring.results import decode_base_model
from decode_helpers import noise_data_dir


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return noise_data_dir(tmp_path_factory.mktemp("data"), ["hi", "pa", "te", "it"], 0.5)


def test_a_rerun_redoes_only_unfinished_jobs_and_the_merge_waits_for_all(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "decode"
    decoded = []
    original = decode.decode_data_dir

    def spy(model, data, job_dir, options, job, *args, **kwargs):
        decoded.append(job)
        return original(model, data, job_dir, options, job, *args, **kwargs)

    monkeypatch.setattr(decode, "decode_data_dir", spy)

    def job(n, *extra):
        decode.main(["--model", "whisper_tiny_random", "--data_dir", str(data_dir), "--out_dir", str(out),
                     "--job", str(n), "--nj", "2", "--max_tokens", "4", "--threads", "1", *extra])

    job(1), job(2)
    assert decoded == [1, 2]
    (out / "split2/2/done.yaml").unlink()  # job 2 killed after writing its text, before it finished
    with pytest.raises(SystemExit, match=r"split2/2/done.yaml is missing: decoding job 2 did not finish"):
        decode.main(["--merge", "--nj", "2", "--out_dir", str(out)])
    assert not (out / "text").exists()  # nothing merged from a partial decode

    job(1), job(2)  # the rerun: job 1 is kept, job 2 decoded again
    assert decoded == [1, 2, 2]
    decode.main(["--merge", "--nj", "2", "--out_dir", str(out)])
    assert len((out / "text").read_text(encoding="utf-8").splitlines()) == 4

    job(1, "--max_tokens", "3")  # other options: the job is decoded again
    assert decoded == [1, 2, 2, 1]


def test_a_job_logs_its_base_model_and_size_as_the_report_reads_them(data_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="decode")
    out = tmp_path / "decode"
    decode.main(["--model", "whisper_tiny_random", "--data_dir", str(data_dir), "--out_dir", str(out),
                 "--max_tokens", "2", "--threads", "1"])
    (out / "log").mkdir()
    (out / "log/decode.1.log").write_text(caplog.text, encoding="utf-8")  # as run.pl keeps a job's output
    base = load_model("whisper_tiny_random").asr_model
    assert decode_base_model(out) == ("whisper_tiny_random", sum(p.numel() for p in base.parameters()))
