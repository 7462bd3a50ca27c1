"""Whisper side of decoding: language detection and a cached decoder state over the shared forward.

The encoder pass is the model family's masked, tapped forward (espnet_ext.models.whisper_forward), the
one training runs. The decoder state adds what decoding needs on top: ESPnet's
`OpenAIWhisperDecoder.batch_score` recomputes the whole prefix at every step ("cache ignored for
simplicity"), and even whisper's own key/value cache re-permutes and rescales the cached
cross-attention keys at every step, which made copies 73% of a decoding step (2 CPU cores). Here
cross-attention keys/values are projected once per batch into the head-major layout SDPA reads (the
padded frames of shorter utterances masked out), and self-attention keys/values are appended per step.
Tests check both against ESPnet's forward.
"""
from typing import List, Optional, Sequence

import torch

from espnet_ext.decode.int8 import Int8Copies
from espnet_ext.models.whisper_forward import EncoderOutput, KeyValue, attend, key_mask, project_kv


class WhisperCachedState:
    """A `DecoderState` over whisper's TextDecoder with per-layer key/value caches; `vocab`: the output
    projection (default: by the tied token embedding)."""

    def __init__(self, text_decoder: torch.nn.Module, encoded: EncoderOutput,
                 vocab: Optional[torch.nn.Module] = None):
        self.decoder = text_decoder
        self.vocab = vocab or (lambda h: h @ text_decoder.token_embedding.weight.to(h.dtype).T)
        features = encoded.features
        self.cross: List[KeyValue] = [project_kv(b.cross_attn, features) for b in text_decoder.blocks]
        self.cross_mask = key_mask(encoded.lengths.to(features.device), features.size(1))
        self.reset()

    @property
    def batch_size(self) -> int:
        return self.cross[0][0].size(0)

    def reset(self) -> None:
        """Forget the generated prefix (cross-attention keys stay: same audio)."""
        self.self_kv: List[Optional[KeyValue]] = [None] * len(self.decoder.blocks)
        self.offset = 0

    def __enter__(self) -> "WhisperCachedState":
        return self

    def __exit__(self, *exc) -> None:
        self.cross, self.self_kv = [], []

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Log-probs on the CPU, where the search runs, whatever device the model is on."""
        dec = self.decoder
        tokens = tokens.to(dec.token_embedding.weight.device)
        n = tokens.size(1)
        x = dec.token_embedding(tokens) + dec.positional_embedding[self.offset : self.offset + n]
        for i, block in enumerate(dec.blocks):
            h = block.attn_ln(x)
            k, v = project_kv(block.attn, h)
            if self.self_kv[i] is not None:
                k, v = torch.cat([self.self_kv[i][0], k], dim=2), torch.cat([self.self_kv[i][1], v], dim=2)
            self.self_kv[i] = (k, v)
            # a multi-token feed only happens at offset 0 (the prompt), where a plain causal mask is right
            x = x + attend(block.attn, h, (k, v), causal=n > 1)
            x = x + attend(block.cross_attn, block.cross_attn_ln(x), self.cross[i], self.cross_mask)
            x = x + block.mlp(block.mlp_ln(x))
        self.offset += n
        logits = self.vocab(dec.ln(x[:, -1]))
        return torch.log_softmax(logits.float(), dim=-1).cpu()

    def reorder(self, index: torch.Tensor) -> None:
        index = index.to(self.decoder.token_embedding.weight.device)
        pick = lambda kv: (kv[0].index_select(0, index), kv[1].index_select(0, index))  # noqa: E731
        self.cross = [pick(kv) for kv in self.cross]
        self.self_kv = [None if kv is None else pick(kv) for kv in self.self_kv]
        if self.cross_mask is not None:
            self.cross_mask = self.cross_mask.index_select(0, index)


class WhisperBackend:
    """Everything the generic decoding loop needs from a registry Whisper model (`LoadedModel`)."""

    def __init__(self, loaded, pad_to_30s: bool, int8: str = "none"):
        self.family = loaded.family
        self.model = loaded.asr_model
        self.text_decoder = loaded.asr_model.decoder.decoders
        self.tokenizer = loaded.tokenizer
        self.pad_to_30s = pad_to_30s
        self.eot = self.tokenizer.eot
        self.suppress = self._suppress_mask(self.text_decoder.token_embedding.num_embeddings)
        self.int8 = Int8Copies(int8, self.text_decoder.token_embedding.weight)

    def _suppress_mask(self, vocab_size: int) -> torch.Tensor:
        """Special tokens (all ids above EOT) and whisper's non-speech symbols; never the space."""
        mask = torch.zeros(vocab_size, dtype=torch.bool)
        mask[self.eot + 1 :] = True
        mask[list(self.tokenizer.non_speech_tokens)] = True
        return mask

    def encode(self, speech: torch.Tensor, lengths: torch.Tensor, tap=None,
               pad_to_30s: Optional[bool] = None) -> EncoderOutput:
        """The 30 s window Whisper was trained on (zero-shot), or the real length (adapters); `pad_to_30s`
        overrides the backend's choice for one pass (the bare base's language ID)."""
        window = self.pad_to_30s if pad_to_30s is None else pad_to_30s
        with self.int8.encoding(self.model):
            return self.family.encode(self.model, speech, lengths, window, tap)

    def prompt(self, lang: str) -> List[int]:
        return self.family.prompt(self.tokenizer, lang)

    def language_posteriors(self, state: WhisperCachedState, candidates: Sequence[str]) -> torch.Tensor:
        """Whisper's own language ID restricted to `candidates`: `[batch, len(candidates)]`.

        Runs on the decoding state (sharing its cross-attention keys) and resets it afterwards."""
        logp = state.step(torch.full((state.batch_size, 1), self.tokenizer.sot, dtype=torch.long))
        state.reset()
        ids = torch.tensor([self.prompt(c)[1] for c in candidates])
        return torch.softmax(logp[:, ids], dim=-1)

    def state(self, encoded: EncoderOutput) -> WhisperCachedState:
        """The decoder's int8 copy where asked for and possible (int8.py), else the decoder itself."""
        decoder = self.int8.decoder(self.text_decoder)
        if decoder is None:
            return WhisperCachedState(self.text_decoder, encoded)
        return WhisperCachedState(decoder, encoded, self.int8.vocab)

    def decode_text(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode([t for t in tokens if t < self.eot]).strip()


