"""Make the recipe's local/ scripts and the shared test signal builders (tests/data/wavegen.py)
importable; each test file builds its own tiny corpus in that corpus' exact on-disk format."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "local"), str(ROOT / "tests" / "data")]


import pytest  # noqa: E402

from espnet_ext.data.kaldi import read_data_dir  # noqa: E402


@pytest.fixture
def prepared_without():
    """Run a preparer on a corpus with one bad row and check the contract for bad rows: the run goes on,
    the row's utterance is missing from its data dir while the rest is there, and the log names the
    manifest line and the reason."""
    def check(prepare, caplog, data_dir, missing_utt, kept_utts, log_pattern):
        import re
        with caplog.at_level("WARNING"):
            prepare()
        utts = [u.utt_id for u in read_data_dir(data_dir)]
        assert missing_utt not in utts and utts == kept_utts
        assert re.search(log_pattern + r".*; skipped \(fix: ", caplog.text), caplog.text
    return check
