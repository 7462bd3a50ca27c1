"""Make the recipe's local/ scripts and the shared test signal builders (tests/data/wavegen.py)
importable; each test file builds its own tiny corpus in that corpus' exact on-disk format."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "local"), str(ROOT / "tests" / "data")]
