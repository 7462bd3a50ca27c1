"""OWSM (ESPnet S2T) side of decoding: prompts, language detection, and a cached decoder state.

OWSM's transformer decoder keeps its own per-layer cache through `forward_one_step`; the state below
feeds it the growing prefix and reorders the cache when the search prunes hypotheses. Prompts follow
OWSM's training format `<sos> <lang> <asr> <notimestamps>`, as ESPnet's s2t_inference builds them.
"""
from typing import List, Optional, Sequence

import torch
from espnet.nets.pytorch_backend.transformer.mask import subsequent_mask

from espnet_ext.decode.int8 import Int8Copies
from espnet_ext.models.whisper_forward import EncoderOutput


def _is_special(token: str) -> bool:
    """OWSM's control tokens (<sos>, <hin>, <asr>, timestamps, ...); `<space>` is text in char models."""
    return token.startswith("<") and token.endswith(">") and token != "<space>"


class OwsmCachedState:
    """A `DecoderState` over ESPnet's TransformerDecoder; a context manager for symmetry with Whisper."""

    def __init__(self, decoder: torch.nn.Module, encoded: EncoderOutput):
        self.decoder = decoder
        self.memory = encoded.features  # the whole 30 s window: no padded frames to mask
        self.reset()

    @property
    def batch_size(self) -> int:
        return self.memory.size(0)

    def reset(self) -> None:
        """Forget the generated prefix."""
        self.prefix: Optional[torch.Tensor] = None
        self.cache: Optional[List[torch.Tensor]] = None

    def __enter__(self) -> "OwsmCachedState":
        return self

    def __exit__(self, *exc) -> None:
        self.cache = None

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Log-probs on the CPU, where the search runs, whatever device the model is on."""
        tokens = tokens.to(self.memory.device)
        self.prefix = tokens if self.prefix is None else torch.cat([self.prefix, tokens], dim=1)
        mask = subsequent_mask(self.prefix.size(1), device=self.prefix.device).unsqueeze(0)
        logp, self.cache = self.decoder.forward_one_step(self.prefix, mask, self.memory, cache=self.cache)
        return logp.cpu()

    def reorder(self, index: torch.Tensor) -> None:
        index = index.to(self.memory.device)
        self.prefix = self.prefix.index_select(0, index)
        self.memory = self.memory.index_select(0, index)
        if self.cache is not None:
            self.cache = [layer.index_select(0, index) for layer in self.cache]


class OwsmBackend:
    """Everything the generic decoding loop needs from a registry OWSM model (`LoadedModel`)."""

    def __init__(self, loaded, int8: str = "none"):
        s2t_model = loaded.asr_model
        self.family = loaded.family
        self.model = s2t_model
        self.tokenizer = loaded.tokenizer
        self.pad_to_30s = True
        self.eot = s2t_model.eos
        self.suppress = torch.tensor([_is_special(tok) and i != self.eot for i, tok in enumerate(s2t_model.token_list)])
        self.int8 = Int8Copies(int8)  # (OWSM's output layer is a linear layer: quantised with the rest)

    def encode(self, speech: torch.Tensor, lengths: torch.Tensor, tap=None, pad_to_30s=None) -> EncoderOutput:
        """OWSM always sees the 30 s window it was trained on (ESPnet's s2t_inference does the same)."""
        with self.int8.encoding(self.model):
            return self.family.encode(self.model, speech, lengths, True, tap)

    def prompt(self, lang: str) -> List[int]:
        return self.family.prompt(self.tokenizer, lang)

    def language_posteriors(self, state: OwsmCachedState, candidates: Sequence[str]) -> torch.Tensor:
        """OWSM's language token after <sos>, restricted to `candidates`; resets `state` afterwards."""
        logp = state.step(torch.full((state.batch_size, 1), self.model.sos, dtype=torch.long))
        state.reset()
        ids = torch.tensor([self.prompt(c)[1] for c in candidates])
        return torch.softmax(logp[:, ids], dim=-1)

    def state(self, encoded: EncoderOutput) -> OwsmCachedState:
        return OwsmCachedState(self.int8.decoder(self.model.decoder) or self.model.decoder, encoded)

    def decode_text(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens)).strip()
