"""Data: Kaldi data dirs and the audio that fills them.

- `kaldi`: read/write data dirs (sorted, spk2utt derived, NFC text, staged replacement)
- `audio`: decoding, 16 kHz conditioning chain shared by all preparers, atomic WAV writing
- `validate`: every check a data dir must pass before training or decoding
- `corpus`: what the local/prepare_*.py preparers share (parallel resumable conversion, dir writing)
"""
