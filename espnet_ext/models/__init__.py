"""Base models: the registry (registry.py), the model families that own each family's prompt, window,
blocks, forward and decoding backend (family.py), the one masked Whisper forward with its language-ID
tap (whisper_forward.py), the CTranslate2 and transformers -> openai-whisper converters
(ctranslate2_convert.py; hf_whisper.py, which owns the transformers weight names), ESPnet's Whisper
classes for local checkpoints (whisper.py) and OWSM S2T models (owsm.py), and the file format of a fully
fine-tuned registry model (finetuned.py). ESPnet is imported only through espnet_import.py, which
silences its offline import noise."""
