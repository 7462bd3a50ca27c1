"""Training targets: the token ids an utterance's decoder must learn, exactly as decoding prompts it.

The prompt is the model family's (`espnet_ext.models.family`: Whisper `<|startoftranscript|> <|lang|>
<|transcribe|> <|notimestamps|>`, OWSM `<sos> <lang> <asr> <notimestamps>`), the same one decoding
feeds. ESPnet's models add the start symbol (sos) in front of the target and the end symbol (eos) after
it themselves, so a target is the rest of the prompt followed by the transcript (OWSM adds its
`text_prev` and `text_ctc` files); the family's `training_targets` says which.

The loss covers the prompt tokens after sos too, as in ESPnet's own Whisper/OWSM fine-tuning; they are
forced at decoding time, so learning them costs nothing there.
"""
from typing import Dict, List, Optional, Tuple


class Targets:
    """Targets of one registry model: its family's format, its tokenizer, its decoder's context."""

    def __init__(self, family, tokenizer, max_length: Optional[int] = None):
        self.family = family
        self.tokenizer = tokenizer
        self.max_length = max_length  # longest `text` the decoder takes (None: no limit)

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(self.family.target_names)

    def encode(self, text: str, lang: str) -> Dict[str, List[int]]:
        return self.family.training_targets(self.tokenizer, text, lang)


def for_model(loaded) -> Targets:
    """The target builder of a registry `LoadedModel`, with the longest target its decoder can take."""
    family = loaded.family
    return Targets(family, loaded.tokenizer, family.max_target_length(loaded.asr_model))
