"""Whisper side of decoding: prompts, language detection and a key/value-cached decoder state.

ESPnet's `OpenAIWhisperDecoder.batch_score` recomputes the whole prefix at every step (its cache is
"ignored for simplicity"), which makes a 50-token transcript cost ~25x the decoder work. Here the
whisper `TextDecoder` inside ESPnet's decoder runs with a key/value cache filled by forward hooks on
the attention key/value projections, so each step processes one token per hypothesis. The hooks sit
on whatever module is at `attn.key`/`attn.value`, so they keep working when LoRA wraps those layers.
"""
from typing import Dict, List, Sequence

import torch

from espnet_ext.languages import LANGUAGES


class WhisperCachedState:
    """A `DecoderState` over whisper's TextDecoder; use as a context manager (it installs hooks)."""

    def __init__(self, text_decoder: torch.nn.Module, audio_features: torch.Tensor):
        self.decoder = text_decoder
        self.audio = audio_features
        self.cache: Dict[torch.nn.Module, torch.Tensor] = {}
        self._hooks = []

    def __enter__(self) -> "WhisperCachedState":
        for block in self.decoder.blocks:
            for proj in (block.attn.key, block.attn.value):
                self._hooks.append(proj.register_forward_hook(self._append_self_attention))
            for proj in (block.cross_attn.key, block.cross_attn.value):
                self._hooks.append(proj.register_forward_hook(self._store_cross_attention))
        return self

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        self.cache.clear()

    def _append_self_attention(self, module, _inputs, output):
        if module in self.cache:
            output = torch.cat([self.cache[module], output], dim=1)
        self.cache[module] = output
        return output

    def _store_cross_attention(self, module, _inputs, output):
        self.cache[module] = output  # computed once: whisper reads it from the cache afterwards
        return output

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(tokens, self.audio, kv_cache=self.cache)[:, -1]
        return torch.log_softmax(logits.float(), dim=-1)

    def reorder(self, index: torch.Tensor) -> None:
        self.audio = self.audio.index_select(0, index)
        for module, value in self.cache.items():
            self.cache[module] = value.index_select(0, index)


class WhisperBackend:
    """Everything the generic decoding loop needs from an ESPnet Whisper model."""

    def __init__(self, asr_model: torch.nn.Module, tokenizer, pad_to_30s: bool):
        self.encoder = asr_model.encoder
        self.text_decoder = asr_model.decoder.decoders
        self.tokenizer = tokenizer
        self.pad_to_30s = pad_to_30s
        self.eot = tokenizer.eot
        self.language_ids = {
            code: tokenizer.encode(f"<|{code}|>", allowed_special="all")[0] for code in LANGUAGES
        }
        self.suppress = self._suppress_mask(self.text_decoder.token_embedding.num_embeddings)

    def _suppress_mask(self, vocab_size: int) -> torch.Tensor:
        """Special tokens (all ids above EOT) and whisper's non-speech symbols; never the space."""
        mask = torch.zeros(vocab_size, dtype=torch.bool)
        mask[self.eot + 1 :] = True
        mask[list(self.tokenizer.non_speech_tokens)] = True
        return mask

    def encode(self, speech: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ESPnet's Whisper encoder on the 30 s window Whisper was trained on, or on the real length."""
        previous = self.encoder.do_pad_trim
        self.encoder.do_pad_trim = self.pad_to_30s
        try:
            features, _, _ = self.encoder(speech, lengths)
        finally:
            self.encoder.do_pad_trim = previous
        return features

    def prompt(self, lang: str) -> List[int]:
        tok = self.tokenizer
        return [tok.sot, self.language_ids[lang], tok.transcribe, tok.no_timestamps]

    def language_posteriors(self, features: torch.Tensor, candidates: Sequence[str]) -> torch.Tensor:
        """Whisper's own language ID restricted to `candidates`: `[batch, len(candidates)]`."""
        sot = torch.full((features.size(0), 1), self.tokenizer.sot, dtype=torch.long)
        logits = self.text_decoder(sot, features)[:, -1].float()
        ids = torch.tensor([self.language_ids[c] for c in candidates])
        return torch.softmax(logits[:, ids], dim=-1)

    def state(self, features: torch.Tensor) -> WhisperCachedState:
        return WhisperCachedState(self.text_decoder, features)

    def decode_text(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode([t for t in tokens if t < self.eot]).strip()
