"""Make bench/ scripts and the tiny corpus builder (tests/train/train_helpers.py) importable."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests" / "train")]
