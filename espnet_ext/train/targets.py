"""Training targets: the token ids an utterance's decoder must learn, exactly as decoding prompts it.

Decoding feeds Whisper `<|startoftranscript|> <|lang|> <|transcribe|> <|notimestamps|>` and OWSM
`<sos> <lang> <asr> <notimestamps>` (see espnet_ext/decode/*_backend.py). ESPnet's models add the
start symbol (sos) in front of the target and the end symbol (eos) after it themselves, so a target
here is the rest of the prompt followed by the transcript:

- Whisper: `text` = `<|lang|> <|transcribe|> <|notimestamps|>` + BPE ids of " " + transcript. The
  leading space is how Whisper was trained (its transcripts start with a space token); ESPnetASRModel
  takes <|startoftranscript|>/<|endoftext|> as sos/eos from the registry's model_conf.
- OWSM: `text` = `<lang> <asr> <notimestamps>` + transcript ids, `text_prev` = `<na>` (no previous
  sentence, so ESPnetS2TModel starts the decoder input at <sos>), `text_ctc` = transcript ids alone
  (the CTC branch never sees prompt tokens).

The loss covers the prompt tokens after sos too, as in ESPnet's own Whisper/OWSM fine-tuning; they are
forced at decoding time, so learning them costs nothing there.
"""
from typing import Dict, List, Optional, Tuple

from espnet_ext.languages import get_language


class WhisperTargets:
    """Targets for a Whisper model from whisper's multilingual tokenizer."""

    names: Tuple[str, ...] = ("text",)

    def __init__(self, tokenizer, max_length: Optional[int] = None):
        self.tokenizer = tokenizer
        self.max_length = max_length  # longest `text` the decoder takes (None: no limit)

    def encode(self, text: str, lang: str) -> Dict[str, List[int]]:
        tok = self.tokenizer
        language = tok.encode(get_language(lang).whisper_token, allowed_special="all")
        if len(language) != 1:
            raise ValueError(f"whisper has no single language token for {lang!r}")
        prompt = [language[0], tok.transcribe, tok.no_timestamps]
        return {"text": prompt + tok.encode(" " + text)}


class OwsmTargets:
    """Targets for an OWSM model from its own tokenizer (espnet_ext.models.owsm.OwsmTokenizer)."""

    names: Tuple[str, ...] = ("text", "text_prev", "text_ctc")

    def __init__(self, tokenizer, max_length: Optional[int] = None):
        self.tokenizer = tokenizer
        self.max_length = max_length

    def encode(self, text: str, lang: str) -> Dict[str, List[int]]:
        tok = self.tokenizer
        transcript = tok.encode(text)
        return {
            "text": [tok.language_id(lang), tok.asr, tok.notimestamps] + transcript,
            "text_prev": [tok.na],
            "text_ctc": transcript,
        }


def for_model(loaded):
    """The target builder of a registry `LoadedModel`, with the longest target its decoder can take."""
    if loaded.family == "whisper":
        # whisper's decoder has learned positions for n_text_ctx tokens; sos takes the first one.
        context = loaded.asr_model.decoder.decoders.positional_embedding.size(0)
        return WhisperTargets(loaded.tokenizer, max_length=context - 1)
    if loaded.family == "owsm":
        return OwsmTargets(loaded.tokenizer)  # sinusoidal positions: no fixed context
    raise ValueError(f"no training targets for model family {loaded.family!r}")
