"""Helpers shared by the decoding tests."""
import contextlib
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import soundfile as sf

from espnet_ext.data.kaldi import Utterance, write_data_dir


def random_audio(seconds: float, seed: int) -> np.ndarray:
    """Reproducible 16 kHz noise: the tiny random models need no real speech to be compared."""
    return np.random.default_rng(seed).normal(0, 0.1, int(16000 * seconds)).astype(np.float32)


def noise_data_dir(root: Path, langs: Sequence[str], seconds: float, name: str = "test") -> Path:
    """A Kaldi dir `root/name` of one `random_audio` utterance per entry of `langs`, utterance i spoken by
    speaker s<i> in langs[i], transcript "x"."""
    utterances = []
    for i, lang in enumerate(langs):
        wav = root / f"u{i}.wav"
        sf.write(str(wav), random_audio(seconds, i), 16000)
        utterances.append(Utterance(f"s{i}-u{i}", f"s{i}", "x", lang, str(wav), seconds))
    write_data_dir(root / name, utterances)
    return root / name


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                    reason="needs Debian's chromium and chromium-driver (install.sh as root)")


@contextlib.contextmanager
def headless_chromium():
    """A Selenium driver of headless Chromium (the demo page's and the report page's browser tests)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
