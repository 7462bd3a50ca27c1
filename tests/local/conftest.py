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


@pytest.fixture
def check_splits():
    """What every preparer's output must satisfy: 16 kHz audio lasting what the source clip lasted (a
    tone, so nothing is trimmed), in utt2dur too, and no utterance in two splits of a language."""
    def check(out_dir, lang, seconds, splits=("train", "dev", "test"), tolerance=0.002):
        import soundfile as sf
        ids = {}
        for split in splits:
            utts = read_data_dir(out_dir / f"{split}_{lang}")
            for utt in utts:
                info = sf.info(utt.wav)
                assert info.samplerate == 16000 and info.channels == 1
                assert utt.duration == pytest.approx(seconds, abs=tolerance)
                assert utt.duration == pytest.approx(info.duration, abs=0.001)  # utt2dur has 3 decimals
            ids[split] = {u.utt_id for u in utts}
        assert sum(len(v) for v in ids.values()) == len(set().union(*ids.values()))
    return check
