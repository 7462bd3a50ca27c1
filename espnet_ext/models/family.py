"""What a model family is, in one object each: Whisper and OWSM.

Everything the rest of the project must know about a family lives here and nowhere else: its decoder
prompt for a language and the training targets built from it, the input window it was trained on,
its transformer blocks (gradient checkpointing, bank layouts by encoder depth), where SpecAugment goes,
the encoder forward with its language-ID tap, and its decoding backend. A registry `LoadedModel`
carries its family as `loaded.family`; code asks it instead of testing the family's name.
"""
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from espnet_ext.data.audio import SAMPLE_RATE
from espnet_ext.languages import get_language
from espnet_ext.models import whisper_forward
from espnet_ext.models.whisper_forward import EncoderOutput, Tap

WINDOW_SAMPLES = 30 * SAMPLE_RATE  # the 30 s window Whisper and OWSM v3/v4 were trained on


class ModelFamily:
    """The interface; see WhisperFamily and OwsmFamily."""

    name: str
    window_samples: int = WINDOW_SAMPLES
    real_length: bool  # whether it can be trained and decoded on the real length instead of the window
    target_names: Sequence[str]  # the ESPnet data files of a training target

    def __repr__(self) -> str:
        return f"<model family {self.name}>"

    def prompt(self, tokenizer, lang: str) -> List[int]:
        """Decoder prompt for transcribing `lang`: start, language, task, no timestamps."""
        raise NotImplementedError

    def training_targets(self, tokenizer, text: str, lang: str) -> Dict[str, List[int]]:
        """Token ids of each target data file: the prompt after its start symbol (which ESPnet adds),
        then the transcript, so that training learns exactly what decoding prompts."""
        raise NotImplementedError

    def max_target_length(self, asr_model: nn.Module) -> Optional[int]:
        """Longest `text` target the decoder takes (None: no limit)."""
        return None

    def encoder_blocks(self, asr_model: nn.Module) -> List[nn.Module]:
        raise NotImplementedError

    def decoder_blocks(self, asr_model: nn.Module) -> List[nn.Module]:
        raise NotImplementedError

    def blocks(self, asr_model: nn.Module) -> List[nn.Module]:
        """Every transformer block, encoder then decoder."""
        return [*self.encoder_blocks(asr_model), *self.decoder_blocks(asr_model)]

    def encoder_block_names(self, asr_model: nn.Module) -> List[str]:
        """Qualified module names of the encoder blocks, bottom first (bank layouts cut at a depth)."""
        ids = {id(block): i for i, block in enumerate(self.encoder_blocks(asr_model))}
        names = {ids[id(m)]: name for name, m in asr_model.named_modules() if id(m) in ids}
        return [names[i] for i in range(len(ids))]

    def set_specaug(self, asr_model: nn.Module, specaug: nn.Module) -> None:
        """Put ESPnet's SpecAug where this family applies it to features during training."""
        raise NotImplementedError

    def encode(self, asr_model: nn.Module, speech: torch.Tensor, lengths: torch.Tensor, pad_to_30s: bool,
               tap: Optional[Tap] = None, all_hidden: bool = False) -> EncoderOutput:
        """Encoder output of a batch (`speech` [batch, samples] zero-padded), padding masked, with `tap`;
        `all_hidden` keeps the states after every block (input = 0)."""
        raise NotImplementedError

    def backend(self, loaded, pad_to_30s: bool, int8: str = "none"):
        """The decoding backend (espnet_ext.decode) for a registry `LoadedModel` of this family; `int8`:
        which parts run on int8 weights (espnet_ext.decode.int8.PARTS)."""
        raise NotImplementedError

    def pad_to_window(self, speech: torch.Tensor, lengths: torch.Tensor):
        """Zero-pad (or cut) to the trained window; every sample of it counts as input, as in training."""
        width = self.window_samples
        speech = torch.nn.functional.pad(speech, (0, max(0, width - speech.size(1))))[:, :width]
        return speech, torch.full_like(lengths, width)


class WhisperFamily(ModelFamily):
    """OpenAI Whisper as ESPnet wraps it (espnet_ext.models.whisper): whisper's AudioEncoder/TextDecoder."""

    name = "whisper"
    real_length = True
    target_names = ("text",)

    def prompt(self, tokenizer, lang: str) -> List[int]:
        language = tokenizer.encode(get_language(lang).whisper_token, allowed_special="all")
        if len(language) != 1:
            raise ValueError(f"whisper has no single language token for {lang!r}")
        return [tokenizer.sot, language[0], tokenizer.transcribe, tokenizer.no_timestamps]

    def training_targets(self, tokenizer, text: str, lang: str) -> Dict[str, List[int]]:
        # the leading space is how Whisper was trained: its transcripts start with a space token
        return {"text": self.prompt(tokenizer, lang)[1:] + tokenizer.encode(" " + text)}

    def max_target_length(self, asr_model: nn.Module) -> int:
        # learned positions for n_text_ctx tokens; sos takes the first one
        return asr_model.decoder.decoders.positional_embedding.size(0) - 1

    def encoder_blocks(self, asr_model: nn.Module) -> List[nn.Module]:
        return list(asr_model.encoder.encoders.blocks)

    def decoder_blocks(self, asr_model: nn.Module) -> List[nn.Module]:
        return list(asr_model.decoder.decoders.blocks)

    def set_specaug(self, asr_model: nn.Module, specaug: nn.Module) -> None:
        # Whisper computes its log-mel inside the encoder; a model-level SpecAug would mask raw samples
        asr_model.encoder.specaug = specaug

    def encode(self, asr_model, speech, lengths, pad_to_30s, tap=None, all_hidden=False) -> EncoderOutput:
        if pad_to_30s:
            speech, lengths = self.pad_to_window(speech, lengths)
        return whisper_forward.encode(asr_model.encoder, speech, lengths, tap, all_hidden)

    def backend(self, loaded, pad_to_30s: bool, int8: str = "none"):
        from espnet_ext.decode.whisper_backend import WhisperBackend

        return WhisperBackend(loaded, pad_to_30s, int8)


class OwsmFamily(ModelFamily):
    """OWSM v3/v4 (ESPnet S2T: E-Branchformer encoder, Transformer decoder), always on its 30 s window.

    ESPnet's own encoder masks padding already; the tap is a forward hook on encoder block k.
    """

    name = "owsm"
    real_length = False
    target_names = ("text", "text_prev", "text_ctc")

    def prompt(self, tokenizer, lang: str) -> List[int]:
        return [tokenizer.sos, tokenizer.language_id(lang), tokenizer.asr, tokenizer.notimestamps]

    def training_targets(self, tokenizer, text: str, lang: str) -> Dict[str, List[int]]:
        transcript = tokenizer.encode(text)
        # text_prev <na>: no previous sentence, so ESPnetS2TModel starts the decoder input at <sos>;
        # the CTC branch never sees prompt tokens
        return {"text": self.prompt(tokenizer, lang)[1:] + transcript, "text_prev": [tokenizer.na],
                "text_ctc": transcript}

    def encoder_blocks(self, asr_model: nn.Module) -> List[nn.Module]:
        return list(asr_model.encoder.encoders)

    def decoder_blocks(self, asr_model: nn.Module) -> List[nn.Module]:
        return list(asr_model.decoder.decoders)

    def set_specaug(self, asr_model: nn.Module, specaug: nn.Module) -> None:
        asr_model.specaug = specaug  # ESPnetS2TModel applies it to its frontend's features

    def encode(self, asr_model, speech, lengths, pad_to_30s=True, tap=None, all_hidden=False) -> EncoderOutput:
        speech, lengths = self.pad_to_window(speech, lengths)
        encoder = asr_model.encoder
        blocks = self.encoder_blocks(asr_model)
        if tap is not None and not 0 <= tap.layer <= len(blocks):
            raise ValueError(f"tap layer {tap.layer} is outside 0..{len(blocks)} (the encoder has {len(blocks)} blocks)")
        hidden: List[torch.Tensor] = []
        seen = {}

        class _Stop(Exception):
            pass

        def hook(layer: int, output) -> None:
            x, mask = output
            x = x[0] if isinstance(x, tuple) else x  # (x, positional embedding) with relative positions
            if all_hidden:
                hidden.append(x)
            if tap is not None and layer == tap.layer:
                seen["x"], seen["lengths"] = x, mask.squeeze(1).sum(-1)
                if tap.callback is not None:
                    tap.callback(seen["x"], seen["lengths"])
                if tap.stop:
                    raise _Stop

        handles = [module.register_forward_hook(lambda _m, _i, out, layer=layer: hook(layer, out))
                   for layer, module in enumerate([encoder.embed, *blocks])]
        try:
            features, out_lengths = asr_model.encode(speech, lengths)
        except _Stop:
            return EncoderOutput(seen["x"], seen["lengths"], seen["x"], hidden or None)
        finally:
            for handle in handles:
                handle.remove()
        return EncoderOutput(features, out_lengths, seen.get("x"), hidden or None)

    def backend(self, loaded, pad_to_30s: bool = True, int8: str = "none"):
        from espnet_ext.decode.owsm_backend import OwsmBackend

        return OwsmBackend(loaded, int8)


WHISPER, OWSM = WhisperFamily(), OwsmFamily()
FAMILIES: Dict[str, ModelFamily] = {family.name: family for family in (WHISPER, OWSM)}
