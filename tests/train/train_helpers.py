"""Tiny synthetic corpora and train_lora command lines shared by the stage-3 tests."""
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from espnet_ext.data.kaldi import Utterance, write_data_dir

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "conf" / "tuning" / "train_lora_tiny.yaml"
SENTENCES = {
    "hi": ["नमस्ते दोस्त", "पानी दो"],
    "pa": ["ਸਤ ਸ੍ਰੀ ਅਕਾਲ", "ਪਾਣੀ ਦਿਓ"],
    "te": ["నమస్కారం మిత్రమా", "నీళ్ళు ఇవ్వండి"],
    "it": ["ciao amico", "dammi acqua"],
}


def chirp(seconds: float, seed: int) -> np.ndarray:
    """A quiet frequency sweep plus noise: short, distinct per utterance, 16 kHz float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 200 + 100 * seed
    wave = 0.3 * np.sin(2 * np.pi * (f0 + 300 * t) * t) + 0.01 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def make_corpus(root: Path, name: str = "train", poison: str = "", languages=tuple(SENTENCES)) -> Path:
    """A Kaldi dir with two utterances per language; `poison` names one whose audio is all NaN."""
    utterances = []
    for i, (lang, texts) in enumerate(SENTENCES.items()):
        if lang not in languages:
            continue
        speaker = f"{lang}-s1"
        for j, text in enumerate(texts):
            utt_id = f"{speaker}-{j:02d}"
            wave = chirp(0.6 + 0.2 * j, seed=2 * i + j)
            if utt_id == poison:
                wave[:] = np.nan
            wav = root / "wav" / f"{utt_id}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(wav), wave, 16000, subtype="FLOAT")
            utterances.append(Utterance(utt_id, speaker, text, lang, str(wav), len(wave) / 16000))
    data_dir = root / name
    write_data_dir(data_dir, utterances)
    return data_dir


def train_command(data_dir: Path, exp_dir: Path, *extra: str) -> list:
    """train_lora's arguments for a tiny run (one torch thread: reproducible and kind to the machine)."""
    return ["--model", "whisper_tiny_random", "--train_dir", str(data_dir), "--valid_dir", str(data_dir),
            "--exp_dir", str(exp_dir), "--config", str(TINY_CONFIG), "--threads", "1", *extra]


def owsm_train_config(directory: Path) -> Path:
    """The tiny training config for an OWSM model: one epoch on OWSM's 30 s window, one batch, attention q/v."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config.update(max_epoch=1, pad_to_30s=True, batch_bins=10 ** 9)
    config["lora_conf"]["targets"] = ["owsm_attn_qv"]
    path = directory / "train_lora_owsm_tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
