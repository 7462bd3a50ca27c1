"""utils/run.pl: Kaldi's calling convention on this machine."""
import os
import re
import subprocess
from pathlib import Path

UTILS = Path(__file__).resolve().parents[2] / "utils"


def run_pl(*args, cwd, env=None):
    return subprocess.run([str(UTILS / "run.pl"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=30, env=env)


def test_job_array_substitutes_job_in_log_and_command(tmp_path):
    out = run_pl("--mem", "4G", "--gpu", "1", "JOB=2:4", "log/x.JOB.log",
                 "echo", "job JOB out", ";", "echo", "JOB err", ">&2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == ["x.2.log", "x.3.log", "x.4.log"]
    lines = (tmp_path / "log/x.3.log").read_text().splitlines()
    assert lines[0] == "# echo 'job 3 out' ; echo '3 err' >&2"
    assert re.fullmatch(r"# Started at .+", lines[1])
    assert lines[2] == "# Cluster options (ignored by run.pl): --mem 4G --gpu 1"
    assert lines[4:6] == ["job 3 out", "3 err"]  # stdout and stderr both land in the log
    assert re.fullmatch(r"# Accounting: time=\d+ threads=1", lines[6])
    assert re.fullmatch(r"# Ended \(code 0\) at .+, elapsed time \d+ seconds", lines[7])


def test_single_job_and_pipe_tokens_reach_bash(tmp_path):
    out = run_pl("--num_threads=3", "a.log", "echo", "abc", "|", "tr", "b", "X", ";", "echo", "it's $HOME",
                 cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "a.log").read_text()
    assert "\naXc\nit's $HOME\n" in text  # the argument with a space reaches bash quoted, unexpanded
    assert "threads=3" in text


def test_failures_are_counted_and_point_at_the_logs(tmp_path):
    out = run_pl("JOB=1:3", "log/f.JOB.log", "exit", "$((JOB", "==", "2", "?", "7", ":", "0))", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == "run.pl: 1 / 3 failed, log is in log/f.*.log"
    assert "# Ended (code 7)" in (tmp_path / "log/f.2.log").read_text()
    assert "# Ended (code 0)" in (tmp_path / "log/f.1.log").read_text()


def _max_concurrency(logs):
    """Most jobs running at once, from the start/end stamps each job wrote into its log."""
    spans = []
    for log in logs:
        start, end = (float(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("t "))
        spans.append((start, end))
    return max(sum(s <= start < e for s, e in spans) for start, _ in spans)


def test_max_jobs_run_limits_concurrency(tmp_path):
    job = ["echo", "t", "$(date", "+%s.%N)", ";", "sleep", "0.3", ";", "echo", "t", "$(date", "+%s.%N)"]
    assert run_pl("--max-jobs-run", "2", "JOB=1:4", "lim/j.JOB.log", *job, cwd=tmp_path).returncode == 0
    assert _max_concurrency((tmp_path / "lim").iterdir()) == 2
    assert run_pl("JOB=1:4", "all/j.JOB.log", *job, cwd=tmp_path).returncode == 0
    assert _max_concurrency((tmp_path / "all").iterdir()) == 4


def test_bad_calls_are_refused_with_a_reason(tmp_path):
    cases = {
        ("--queue", "x", "a.log", "true"): "unknown option --queue",
        ("JOB=1:2", "one.log", "true"): "has no JOB",
        ("JOB=3:1", "j.JOB.log", "true"): "empty job range",
        ("a.log",): "missing log path or command",
    }
    for args, message in cases.items():
        out = run_pl(*args, cwd=tmp_path)
        assert out.returncode == 1 and message in out.stderr, (args, out.stderr)


def test_cluster_options_are_accepted_and_threads_reach_the_job(tmp_path):
    """The options slurm.pl maps to sbatch are accepted here too (a recipe switches backends without
    edits); --num-threads becomes the job's OMP_NUM_THREADS, torch's default thread count."""
    out = run_pl("--time", "4:00:00", "--mail_type", "END,FAIL", "--num-threads", "3", "t.log",
                 "echo", "omp=$OMP_NUM_THREADS", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "t.log").read_text()
    assert "# Cluster options (ignored by run.pl): --time 4:00:00 --mail-type END,FAIL --num-threads 3" in text
    assert "\nomp=3\n" in text


def test_a_failure_shows_the_last_line_the_first_failed_job_wrote(tmp_path):
    """The one-line error the failed command printed (after progress bars overwritten with \\r), so the
    reason shows without opening the log; nothing more when the command wrote nothing."""
    (tmp_path / "j.sh").write_text('printf "step 1\\nbar 10%%\\rbar 100%%\\n"\n'
                                   '[ "$1" -lt 2 ] || { echo "x.py: job $1: data/x/wav.scp: missing"; echo; exit 1; }'
                                   '\n')
    out = run_pl("JOB=1:3", "log/j.JOB.log", "bash", "j.sh", "JOB", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.splitlines() == ["run.pl: 2 / 3 failed, log is in log/j.*.log",
                                       "run.pl: log/j.2.log: x.py: job 2: data/x/wav.scp: missing"]
