"""Whisper side of decoding: prompts, language detection, and a fast encoder/decoder forward.

The forward passes reuse the modules of ESPnet's Whisper model (its log-mel front end, whisper's
conv/attention/MLP layers, or the LoRA banks that wrap them) but compute attention with PyTorch's
fused `scaled_dot_product_attention`, measured here on 2 CPU cores:
* whisper 20230918's own attention (matmul + softmax on permuted copies) is over half of the
  encoder's time on a 30 s window;
* ESPnet's `OpenAIWhisperDecoder.batch_score` recomputes the whole prefix at every step ("cache
  ignored for simplicity"), and even whisper's own key/value cache re-permutes and rescales the
  cached cross-attention keys at every step, which made copies 73% of a decoding step.
Here cross-attention keys/values are projected once per batch into the head-major layout SDPA reads,
and self-attention keys/values are appended per step. Tests check both against ESPnet's forward.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from espnet_ext.languages import LANGUAGES

KeyValue = Tuple[torch.Tensor, torch.Tensor]


def _split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """[batch, time, width] -> [batch, heads, time, width / heads]"""
    return x.view(x.size(0), x.size(1), n_head, -1).transpose(1, 2)


def _project_kv(attn: torch.nn.Module, x: torch.Tensor) -> KeyValue:
    return _split_heads(attn.key(x), attn.n_head), _split_heads(attn.value(x), attn.n_head)


def _attend(attn: torch.nn.Module, x: torch.Tensor, kv: KeyValue, causal: bool = False) -> torch.Tensor:
    """Whisper's multi-head attention (q and k each scaled by d^-1/4 = SDPA's d^-1/2 on q.k)."""
    q = _split_heads(attn.query(x), attn.n_head)
    out = F.scaled_dot_product_attention(q, kv[0].to(q.dtype), kv[1].to(q.dtype), is_causal=causal)
    return attn.out(out.transpose(1, 2).flatten(2))


def encode_whisper(encoder: torch.nn.Module, speech: torch.Tensor, lengths: torch.Tensor, pad_to_30s: bool) -> torch.Tensor:
    """ESPnet's OpenAIWhisperEncoder forward (eval mode) with fused attention."""
    if pad_to_30s:
        speech = encoder.pad_or_trim(speech, encoder.pad_samples)
    feats, _ = encoder.log_mel_spectrogram(speech, lengths)
    audio = encoder.encoders
    x = F.gelu(audio.conv2(F.gelu(audio.conv1(feats)))).permute(0, 2, 1)
    x = x[:, : audio.positional_embedding.size(0)]  # past 30 s there are no positions: ESPnet trims too
    x = (x + audio.positional_embedding[: x.size(1)]).to(x.dtype)
    for block in audio.blocks:
        h = block.attn_ln(x)
        x = x + _attend(block.attn, h, _project_kv(block.attn, h))
        x = x + block.mlp(block.mlp_ln(x))
    return audio.ln_post(x)


class WhisperCachedState:
    """A `DecoderState` over whisper's TextDecoder with per-layer key/value caches."""

    def __init__(self, text_decoder: torch.nn.Module, audio_features: torch.Tensor):
        self.decoder = text_decoder
        self.cross: List[KeyValue] = [_project_kv(b.cross_attn, audio_features) for b in text_decoder.blocks]
        self.reset()

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
            k, v = _project_kv(block.attn, h)
            if self.self_kv[i] is not None:
                k, v = torch.cat([self.self_kv[i][0], k], dim=2), torch.cat([self.self_kv[i][1], v], dim=2)
            self.self_kv[i] = (k, v)
            # a multi-token feed only happens at offset 0 (the prompt), where a plain causal mask is right
            x = x + _attend(block.attn, h, (k, v), causal=n > 1)
            x = x + _attend(block.cross_attn, block.cross_attn_ln(x), self.cross[i])
            x = x + block.mlp(block.mlp_ln(x))
        self.offset += n
        logits = dec.ln(x[:, -1]) @ dec.token_embedding.weight.to(x.dtype).T
        return torch.log_softmax(logits.float(), dim=-1).cpu()

    def reorder(self, index: torch.Tensor) -> None:
        index = index.to(self.decoder.token_embedding.weight.device)
        pick = lambda kv: (kv[0].index_select(0, index), kv[1].index_select(0, index))  # noqa: E731
        self.cross = [pick(kv) for kv in self.cross]
        self.self_kv = [None if kv is None else pick(kv) for kv in self.self_kv]


class WhisperBackend:
    """Everything the generic decoding loop needs from an ESPnet Whisper model."""

    def __init__(self, asr_model: torch.nn.Module, tokenizer, pad_to_30s: bool):
        self.model = asr_model
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
        """The 30 s window Whisper was trained on (zero-shot), or the real length (adapters)."""
        return encode_whisper(self.encoder, speech, lengths, self.pad_to_30s)

    def prompt(self, lang: str) -> List[int]:
        tok = self.tokenizer
        return [tok.sot, self.language_ids[lang], tok.transcribe, tok.no_timestamps]

    def language_posteriors(self, state: WhisperCachedState, candidates: Sequence[str]) -> torch.Tensor:
        """Whisper's own language ID restricted to `candidates`: `[batch, len(candidates)]`.

        Runs on the decoding state (sharing its cross-attention keys) and resets it afterwards."""
        batch = state.cross[0][0].size(0)
        logp = state.step(torch.full((batch, 1), self.tokenizer.sot, dtype=torch.long))
        state.reset()
        ids = torch.tensor([self.language_ids[c] for c in candidates])
        return torch.softmax(logp[:, ids], dim=-1)

    def state(self, features: torch.Tensor) -> WhisperCachedState:
        return WhisperCachedState(self.text_decoder, features)

    def decode_text(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode([t for t in tokens if t < self.eot]).strip()
