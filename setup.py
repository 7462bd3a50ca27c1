"""espnet_ext: per-language LoRA adapters, LID routing and analysis on ESPnet's Whisper and OWSM.

install_requires names the three pins the code is written against, for the package's metadata; install.sh
installs them (and torchaudio, and requirements.txt) itself and this package with --no-deps, because
letting pip resolve espnet's own requirements replaces CPU torch by a CUDA build (see install.sh).
"""
from setuptools import find_packages, setup

setup(
    name="espnet_ext",
    version="0.1.0",
    description="Multilingual LoRA adapters with language-ID routing for ESPnet Whisper/OWSM",
    packages=find_packages(include=["espnet_ext", "espnet_ext.*"]),
    package_data={"espnet_ext": ["models/conf/*.yaml"]},
    python_requires=">=3.11",
    install_requires=[
        "torch==2.13.0",
        "espnet==202511",
        "openai-whisper==20230918",
    ],
    entry_points={
        "console_scripts": [
            "espnet-ext-train-lora=espnet_ext.bin.train_lora:main",
            "espnet-ext-train-lid=espnet_ext.bin.train_lid:main",
            "espnet-ext-decode=espnet_ext.bin.decode:main",
            "espnet-ext-score=espnet_ext.bin.score:main",
            "espnet-ext-validate-data=espnet_ext.bin.validate_data_dir:main",
            "espnet-ext-convert-ct2=espnet_ext.bin.convert_ctranslate2:main",
            "espnet-lora-transcribe=espnet_ext.bin.transcribe:main",
            "espnet-lora-demo=espnet_ext.bin.demo:main",
        ]
    },
)
