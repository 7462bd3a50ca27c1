"""espnet_ext.lid: language identification on the encoder's tap.

- `features`: an encoder layer's states mean-pooled over each utterance's valid frames (the same masked
  forward decoding runs);
- `probe`: a linear probe per encoder layer, which picks the tap layer of a bank layout and is itself a
  head the tap can route with (saved as lid_config.json + lid_model.safetensors).

Nothing here knows of adapters: a head maps hidden states to posteriors over its languages.
"""
