"""Make the stage-3 tests' tiny corpus builder (tests/train/train_helpers.py) importable."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
