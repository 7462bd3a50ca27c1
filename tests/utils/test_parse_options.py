"""utils/parse_options.sh, sourced by a small script the way run.sh sources it (under set -euo pipefail)."""
import subprocess
from pathlib import Path

import pytest

PARSE_OPTIONS = Path(__file__).resolve().parents[2] / "utils" / "parse_options.sh"

SCRIPT = f"""#!/usr/bin/env bash
set -euo pipefail
stage=1                # first stage to run
model_name=whisper_base
use_lora=true          # false: the base model alone
                       # (no adapters)
inference_args=""
help_message=$(cat <<EOT
Usage: $0 [options] <data-dir>
not_an_option=1
EOT
)
. {PARSE_OPTIONS}
echo "stage=$stage model_name=$model_name use_lora=$use_lora args=$inference_args rest=$*"
"""


@pytest.fixture
def run(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text(SCRIPT)

    def _run(*args):
        return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=10)

    return _run


def test_defaults_are_kept_without_options(run):
    out = run()
    assert out.returncode == 0, out.stderr
    assert out.stdout == "stage=1 model_name=whisper_base use_lora=true args= rest=\n"


def test_space_and_equals_forms_dashes_and_positional_rest(run):
    out = run("--stage", "3", "--model-name=tiny", "--use_lora", "false", "--inference_args", "--beam 5", "a", "b")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "stage=3 model_name=tiny use_lora=false args=--beam 5 rest=a b\n"


def test_double_dash_ends_options(run):
    out = run("--", "--stage", "2")
    assert out.stdout == "stage=1 model_name=whisper_base use_lora=true args= rest=--stage 2\n"


def test_unknown_option_is_named(run):
    out = run("--stages", "3")
    assert out.returncode == 1
    assert "unknown option --stages" in out.stderr
    assert out.stdout == ""


def test_missing_value_is_an_error(run):
    out = run("--stage")
    assert out.returncode == 1
    assert "option --stage needs a value" in out.stderr


def test_boolean_takes_only_true_or_false(run):
    out = run("--use_lora", "yes")
    assert out.returncode == 1
    assert "--use_lora takes true or false" in out.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_option_with_its_description_and_default(run, flag):
    out = run("--stage", "7", flag)
    assert out.returncode == 0
    assert out.stdout.startswith("Usage: ")
    options = [line.split() for line in out.stdout.splitlines() if line.startswith("  --")]
    # Defaults are the script's, not the values given before --help; here-doc text is no option.
    # The comment beside an option (and the indented comment lines under it) is its description.
    assert options == [
        ["--stage", "first", "stage", "to", "run", "(default:", "1)"],
        ["--model_name", "(default:", "whisper_base)"],
        ["--use_lora", "false:", "the", "base", "model", "alone", "(no", "adapters)", "(default:", "true)"],
        ["--inference_args", "(default:", '"")'],
    ]
