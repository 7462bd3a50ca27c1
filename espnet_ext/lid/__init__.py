"""espnet_ext.lid: language identification on the encoder's tap.

- `features`: an encoder layer's states, mean-pooled per utterance (the layer scan) or frame by frame at
  the tap (cached as Kaldi matrices), from the same masked forward decoding runs;
- `heads`: the five utterance heads (linear, mlp, cnn, bilstm, asp), the frame tagger, and their files
  (lid_config.json + lid_model.safetensors);
- `train`: balanced, cropped training with selection on dev, the tagger's on frame labels, and the
  evaluation a report needs;
- `segments`: the language over time (the tagger's one pass, or a head's windows) cut into segments;
- `probe`: a linear probe per encoder layer, which picks the tap layer of a bank layout;
- `report`: the confusion matrix and reliability plots.

Nothing here knows of adapters: a head maps hidden states to posteriors over its languages; turning
posteriors into adapter weights is espnet_ext.routing's.
"""
