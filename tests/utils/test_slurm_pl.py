"""utils/slurm.pl on a real one-node Slurm (tests/slurm/): run.pl's contract as one job array."""
import os
import re
import subprocess
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parents[2] / "utils"



def slurm_pl(*args, cwd, timeout=180):
    return subprocess.run([str(UTILS / "slurm.pl"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def job_id_of(log: Path) -> str:
    return re.search(r"^# SLURM_JOB_ID=(\d+) ", log.read_text(), re.M).group(1)


@pytest.mark.usefixtures("slurm")
def test_an_8_task_array_runs_every_job_with_its_number_and_complete_logs(tmp_path):
    out = slurm_pl("--mem", "500M", "--num-threads", "1", "--max-jobs-run", "4", "JOB=1:8", "log/a.JOB.log",
                   "echo", "job", "JOB", "threads", "$OMP_NUM_THREADS", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    array_id = (tmp_path / "log" / "q" / "a.job_id").read_text().split()[0]
    for n in range(1, 9):
        lines = (tmp_path / "log" / f"a.{n}.log").read_text().splitlines()
        assert lines[0] == f"# echo job {n} threads $OMP_NUM_THREADS"
        assert re.fullmatch(rf"# SLURM_JOB_ID=\d+ SLURM_ARRAY_JOB_ID={array_id} SLURM_ARRAY_TASK_ID={n} on \S+",
                            lines[2])
        assert f"job {n} threads 1" in lines
        assert re.fullmatch(r"# Ended \(code 0\) at .+, elapsed time \d+ seconds", lines[-1])
    script = (tmp_path / "log" / "q" / "a.sh").read_text()
    assert "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}" in script  # decided on the node, not here
    # Slurm's own record of the tasks (this cluster keeps it in its job-completion log: sacct -c)
    listed = subprocess.run(["sacct", "-c", "-n", "-o", "JobID,JobName,State"], capture_output=True, text=True)
    task_ids = {job_id_of(tmp_path / "log" / f"a.{n}.log") for n in range(1, 9)}
    completed = {line.split()[0] for line in listed.stdout.splitlines() if line.split()[1:] == ["a", "COMPLETED"]}
    assert task_ids <= completed


@pytest.mark.usefixtures("slurm")
def test_one_failing_task_fails_the_call_naming_its_log_and_reason(tmp_path):
    (tmp_path / "j.sh").write_text('[ "$1" != 3 ] || { echo "x.py: job 3: data/x/wav.scp: missing"; exit 2; }\n')
    out = slurm_pl("JOB=1:4", "log/j.JOB.log", "bash", "j.sh", "JOB", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.splitlines() == ["slurm.pl: 1 / 4 failed, log is in log/j.*.log",
                                       "slurm.pl: log/j.3.log: x.py: job 3: data/x/wav.scp: missing"]
    assert "# Ended (code 2)" in (tmp_path / "log" / "j.3.log").read_text()


@pytest.mark.usefixtures("slurm")
def test_impossible_requests_fail_at_once_with_slurms_reason(tmp_path):
    for option, value in (("--gpu", "1"), ("--mem", "900G")):
        out = slurm_pl(option, value, "log/x.log", "true", cwd=tmp_path, timeout=30)
        assert out.returncode == 1
        assert out.stderr.startswith("slurm.pl: sbatch refused the job: "), out.stderr
        assert "Requested node configuration is not available" in out.stderr
    assert not (tmp_path / "log" / "x.log").exists()


@pytest.mark.usefixtures("slurm")
def test_the_recipe_config_sends_gpu_jobs_to_its_gpu_partition_and_cpu_jobs_nowhere_special(tmp_path):
    conf = Path(__file__).resolve().parents[2] / "conf" / "slurm.conf"
    out = slurm_pl("--config", str(conf), "--gpu", "1", "log/x.log", "true", cwd=tmp_path, timeout=30)
    assert out.returncode == 1 and "invalid partition specified: gpu" in out.stderr, out.stderr
    out = slurm_pl("--config", str(conf), "--gpu", "0", "--time", "5", "log/y.log", "true", cwd=tmp_path)
    assert out.returncode == 0, out.stderr


@pytest.mark.usefixtures("slurm")
def test_a_task_slurm_kills_is_reported_with_slurms_reason(tmp_path):
    """Cancelled mid-run (as a time limit or a node failure would): no run.pl footer, so a failure whose
    reason is Slurm's own line from <log dir>/q/."""
    (tmp_path / "k.sh").write_text('echo started; if [ "$1" = 1 ]; then scancel "${SLURM_ARRAY_JOB_ID}_$1"; sleep 60; fi\n')
    out = slurm_pl("JOB=1:2", "log/k.JOB.log", "bash", "k.sh", "JOB", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.splitlines()[0] == "slurm.pl: 1 / 2 failed, log is in log/k.*.log"
    assert re.fullmatch(r"slurm\.pl: log/k\.1\.log: ended without run\.pl's footer \(killed by Slurm\?\): "
                        r".*CANCELLED.*", out.stderr.splitlines()[1]), out.stderr


@pytest.mark.usefixtures("slurm")
def test_options_without_a_config_line_are_refused_naming_the_config(tmp_path):
    (tmp_path / "my.conf").write_text("command sbatch\noption mem=* --mem=$0\n")
    out = slurm_pl("--config", "my.conf", "--gpu", "1", "log/x.log", "true", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == "slurm.pl: --gpu 1: my.conf has no 'option gpu=...' line for it; add one"


def test_without_slurm_it_says_to_use_the_local_backend(tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with perl and no Slurm
    bin_dir.mkdir()
    (bin_dir / "perl").symlink_to("/usr/bin/perl")
    out = subprocess.run([str(UTILS / "slurm.pl"), "JOB=1:2", "log/x.JOB.log", "true"], cwd=tmp_path,
                         capture_output=True, text=True, env={**os.environ, "PATH": str(bin_dir)}, timeout=10)
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "slurm.pl: sbatch not found; Slurm is not installed here; use cmd_backend=local in cmd.sh"
    )
    assert not (tmp_path / "log").exists()
