"""espnet_ext.train: stage 3, per-language LoRA adapters (or, with `--finetune full`, the whole base as
the reference system) trained through ESPnet's trainer.

- `targets`: the token ids each utterance trains on (the decoding prompt, then the transcript);
- `prep`: a Kaldi data dir -> ESPnet's data/shape files (speech, text_int targets, `lang`);
- `model`: `LoRARoutedModel`, the frozen base + LoRA bank routed by each utterance's `lang`, and
  `FullFinetuneModel`, the base with every weight trained;
- `task`: `LoRAASRTask`, ESPnet's ASRTask building that model from the registry;
- `trainer`: `LoRATrainer`, ESPnet's Trainer with atomic checkpoint files;
- `export`: checkpoint -> `adapters/<lang>/` directories, or `full_model/`;
- `pipeline`: all of it for one exp dir (`python -m espnet_ext.bin.train_lora`).

Nothing here decodes: dev WER comes from espnet_ext.decode on the exported adapters or model.
"""
