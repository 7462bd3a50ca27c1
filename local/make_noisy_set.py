#!/usr/bin/env python3
"""A noisy copy of a data dir: every utterance with white Gaussian noise at its own signal-to-noise
ratio, drawn uniformly from `--snr LOW HIGH` dB. For routing under degraded audio: the LID head is
less sure on noisy speech, which is where soft and threshold routing can differ from hard.

Same utterance ids, transcripts, speakers and languages as the source, so the copy is scored like
it; `utt2snr` records each utterance's SNR. The SNR and the noise of an utterance depend only on
`--seed` and its id, so a rerun, or a copy of a subset, gives the same audio. WAVs go to
`<dst's parent>/local/<dst's name>_wav/` (written atomically, as the corpus preparers' audio goes to
`data/local/`); the data dir is written last and validated. local/make_degraded.py writes the other
degraded conditions (coloured and babble noise, codecs, telephone band, reverberation, voice shift) the
same way.

Usage:
    local/make_noisy_set.py --src data/test_all --dst data/test_all_snr0-10 --snr 0 10
"""
import argparse
import logging
from functools import partial
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch
from make_degraded import degrade_data_dir

from espnet_ext.data.corpus import exit_on_bad_input
from espnet_ext.data.degrade import Params
from espnet_ext.data.kaldi import Utterance, read_data_dir
from espnet_ext.train.augment import add_noise

log = logging.getLogger("make_noisy_set")


def _white_noise(low: float, high: float, utt: Utterance, wave: np.ndarray, seed: int) -> Tuple[np.ndarray, Params]:
    """make_degraded's Transform for white noise at an SNR drawn from [low, high] (torch's generator,
    as training's add_noise draws its noise)."""
    generator = torch.Generator().manual_seed(seed)
    snr_db = low + (high - low) * float(torch.rand((), generator=generator))
    return add_noise(torch.from_numpy(wave).float(), snr_db, generator).numpy(), {"utt2snr": f"{snr_db:.2f}"}


def make_noisy_set(src: Path, dst: Path, snr: Sequence[float], seed: int = 0) -> List[Utterance]:
    """Write `dst` as `src` with noise at a per-utterance SNR in [snr[0], snr[1]] dB."""
    low, high = snr
    if low > high:
        raise ValueError(f"--snr {low} {high}: give the lower SNR first (fix: --snr {high} {low})")
    if dst.resolve() == src.resolve():
        raise ValueError(f"--dst {dst} is --src {src}: the noisy copy would replace the clean data dir (fix: give "
                         f"--dst a new dir, e.g. {src}_snr{low:g}-{high:g})")
    noisy = degrade_data_dir(read_data_dir(src), dst, partial(_white_noise, low, high), seed)
    log.info("%s: %d utterances at %g-%g dB SNR", dst, len(noisy), low, high)
    return noisy


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="the clean data dir")
    parser.add_argument("--dst", type=Path, required=True, help="the noisy data dir to write")
    parser.add_argument("--snr", type=float, nargs=2, default=(0.0, 10.0), metavar=("LOW", "HIGH"),
                        help="SNR range in dB, drawn uniformly per utterance")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with exit_on_bad_input(parser.prog):
        make_noisy_set(args.src, args.dst, args.snr, args.seed)


if __name__ == "__main__":
    main()
