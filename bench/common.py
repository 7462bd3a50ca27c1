"""What the benchmarks share: the same test clips, and a median of timed runs after a warm-up."""
import statistics
import time
from pathlib import Path
from typing import Callable, List, Tuple

import numpy as np

from espnet_ext.data.audio import utterance_audio
from espnet_ext.data.kaldi import read_data_dir
from espnet_ext.languages import ADAPTER_LANGUAGES

Clip = Tuple[np.ndarray, str]  # audio, language


def load_clips(data_root: Path, per_lang: int, longest_first: bool = False) -> List[Clip]:
    """The first `per_lang` utterances of each `test_<lang>` (longest first, as decode_data_dir batches)."""
    clips = [(utterance_audio(utt), lang) for lang in ADAPTER_LANGUAGES
             for utt in read_data_dir(Path(data_root) / f"test_{lang}")[:per_lang]]
    return sorted(clips, key=lambda c: -len(c[0])) if longest_first else clips


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    """Median wall time of `work()` over `repeats` runs after one untimed warm-up run."""
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
