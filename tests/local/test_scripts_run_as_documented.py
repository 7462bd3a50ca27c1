"""The recipe's scripts run as the README and usage docstrings write them (`local/make_noisy_set.py ...`):
every file with a shebang under local/ and utils/ is executable in git, not only on the machine that made it."""
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_script_with_a_shebang_is_executable_in_git():
    listed = subprocess.run(["git", "ls-files", "-s", "local", "utils"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.splitlines()
    modes = {line.split("\t")[1]: line.split()[0] for line in listed}
    scripts = [path for path in modes if (REPO / path).read_bytes().startswith(b"#!")]
    assert len(scripts) >= 10  # the preparers, the set builders, show_results, run.pl, slurm.pl
    assert [path for path in scripts if modes[path] != "100755"] == []
