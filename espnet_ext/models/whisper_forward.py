"""The one Whisper forward: masked, with fused attention and a language-ID tap; training, LID features and
decoding all run it.

ESPnet's Whisper (`espnet2/asr/{encoder,decoder}/whisper_*.py`) runs whisper's own attention and masks
nothing, which is right for the 30 s window Whisper was trained on (every frame is audio or its own
zero padding) but not for real-length batches: there the encoder's self-attention and the decoder's
cross-attention see the padded frames of the shorter utterances, and the log-mel and convolutions see
across an utterance's end, so a transcript would depend on what else is in its batch. Here:

* the log-mel is computed per utterance at its own length (whisper clamps each spectrogram to its
  maximum - 8 dB and torch's STFT reflects at the signal's end: both would see the batch's padding),
  and padded frames are zero after the front end and after each convolution, exactly the zeros an
  utterance decoded alone sees through the convolutions' own padding;
* padded frames are excluded as keys in encoder self-attention and in decoder cross-attention;
* attention is PyTorch's fused `scaled_dot_product_attention` (whisper scales q and k each by
  d^-1/4, which is SDPA's d^-1/2 on q.k): whisper 20230918's matmul + softmax on permuted copies was over
  half of the encoder's time on a 30 s window (2 CPU cores).

The modules and weights are ESPnet's (`MaskedBlock` only changes the class of whisper's
`ResidualAttentionBlock` instances, not their parameters), so the state dict ESPnet's trainer sees is
unchanged. `encode(..., tap=Tap(k, callback))` hands the hidden states after encoder block k to the
callback in the same pass, before block k+1 runs: a callback that sets LoRA routing weights (this
package knows nothing of LoRA) routes the blocks above k and the decoder by what it saw.
"""
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from whisper.model import ResidualAttentionBlock

KeyValue = Tuple[torch.Tensor, torch.Tensor]
# called with (hidden states [batch, frames, width] after block k, valid frames [batch])
TapCallback = Callable[[torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True)
class Tap:
    """Hand the hidden states after encoder block `layer` (1 = after the first) to `callback`.

    `stop`: return those states instead of running the blocks above (a routing decided on a bare pass).
    """

    layer: int
    callback: Optional[TapCallback] = None
    stop: bool = False


@dataclass
class EncoderOutput:
    features: torch.Tensor  # [batch, frames, width] after the last block and its layer norm
    lengths: torch.Tensor  # [batch] valid frames of each utterance
    tapped: Optional[torch.Tensor] = None  # the tap's hidden states, when a tap was set
    hidden: Optional[List[torch.Tensor]] = None  # with all_hidden: the states after blocks 0 (input)..N

    def repeat(self, n: int) -> "EncoderOutput":
        """Each utterance's output `n` times in a row (the rows of a beam search)."""
        return EncoderOutput(self.features.repeat_interleave(n, 0), self.lengths.repeat_interleave(n, 0))


def frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """[batch, frames] True on valid frames."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def key_mask(lengths: torch.Tensor, frames: int) -> Optional[torch.Tensor]:
    """SDPA's boolean attention mask [batch, 1, 1, frames], or None when no frame is padding (fast path)."""
    if bool((lengths >= frames).all()):
        return None
    return frame_mask(lengths, frames)[:, None, None, :]


def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """[batch, time, width] -> [batch, heads, time, width / heads]"""
    return x.view(x.size(0), x.size(1), n_head, -1).transpose(1, 2)


def project_kv(attn: torch.nn.Module, x: torch.Tensor) -> KeyValue:
    """Keys and values of whisper's MultiHeadAttention `attn` over `x`, head-major."""
    return split_heads(attn.key(x), attn.n_head), split_heads(attn.value(x), attn.n_head)


def attend(attn: torch.nn.Module, x: torch.Tensor, kv: KeyValue, mask: Optional[torch.Tensor] = None,
           causal: bool = False) -> torch.Tensor:
    """Whisper's multi-head attention of queries from `x` over `kv`, keys outside `mask` excluded."""
    q = split_heads(attn.query(x), attn.n_head)
    out = F.scaled_dot_product_attention(q, kv[0].to(q.dtype), kv[1].to(q.dtype), attn_mask=mask, is_causal=causal)
    return attn.out(out.transpose(1, 2).flatten(2))


class MaskedBlock(ResidualAttentionBlock):
    """whisper's ResidualAttentionBlock with key masks and fused attention (same parameters).

    `mask` is whisper's causal mask (only its presence matters: SDPA's `is_causal` is that mask);
    `key_mask` / `cross_mask` exclude padded frames of self- and cross-attention. A whisper-style call
    with a `kv_cache` (hooks on key/value modules) runs whisper's own code.
    """

    def forward(self, x: torch.Tensor, xa: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
                kv_cache: Optional[dict] = None, key_mask: Optional[torch.Tensor] = None,
                cross_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if kv_cache is not None:
            return super().forward(x, xa, mask, kv_cache)
        h = self.attn_ln(x)
        x = x + attend(self.attn, h, project_kv(self.attn, h), key_mask, causal=mask is not None)
        if self.cross_attn is not None:
            x = x + attend(self.cross_attn, self.cross_attn_ln(x), project_kv(self.cross_attn, xa), cross_mask)
        return x + self.mlp(self.mlp_ln(x))


def use_masked_blocks(blocks: torch.nn.ModuleList) -> None:
    """Give whisper's blocks the masked forward (a class change only: parameters and names stay)."""
    for block in blocks:
        if type(block) is ResidualAttentionBlock:
            block.__class__ = MaskedBlock


def log_mel(encoder: torch.nn.Module, speech: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Whisper's log-mel `[batch, n_mels, frames]` of each utterance at its own length, zero-padded.

    Uses ESPnet's `log_mel_spectrogram` (whisper's STFT, filterbank, clamp and scale); an utterance's
    frames are `samples // hop`, as ESPnet counts them.
    """
    full = bool((lengths >= speech.size(1)).all())
    if full:
        return encoder.log_mel_spectrogram(speech, lengths)
    frames = lengths // encoder.hop_length
    feats = speech.new_zeros(speech.size(0), encoder.n_mels, int(frames.max()))
    for i, n in enumerate(lengths.tolist()):
        mel, _ = encoder.log_mel_spectrogram(speech[i : i + 1, :n])
        feats[i, :, : mel.size(-1)] = mel[0]
    return feats, frames


def _zero_padding(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """`x` [batch, channels, frames] with the frames past each length set to zero."""
    return x * frame_mask(lengths, x.size(-1))[:, None, :].to(x.dtype)


def encode(encoder: torch.nn.Module, speech: torch.Tensor, lengths: torch.Tensor,
           tap: Optional[Tap] = None, all_hidden: bool = False) -> EncoderOutput:
    """ESPnet's OpenAIWhisperEncoder forward (`encoder`), masked, optionally tapped (module docstring).

    `all_hidden` keeps the states after every block (layer-wise LID probes), not only the tap's.
    `speech` [batch, samples] zero-padded, `lengths` [batch] samples. Past 30 s there are no positions:
    the frames are cut there, as ESPnet does.
    """
    audio = encoder.encoders
    feats, frames = log_mel(encoder, speech, lengths)
    if encoder.specaug is not None and encoder.training:
        augmented, _ = encoder.specaug(feats.transpose(1, 2), frames)
        feats = _zero_padding(augmented.transpose(1, 2), frames)
    x = _zero_padding(F.gelu(audio.conv1(feats)), frames)
    conv = audio.conv2
    out_lengths = (frames + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
    x = _zero_padding(F.gelu(conv(x)), out_lengths).permute(0, 2, 1)
    positions = audio.positional_embedding
    x = x[:, : positions.size(0)]
    out_lengths = out_lengths.clamp(max=x.size(1))
    x = encoder.dropout((x + positions[: x.size(1)]).to(x.dtype))
    mask = key_mask(out_lengths, x.size(1))
    tapped, hidden = None, [] if all_hidden else None
    blocks = audio.blocks
    if tap is not None and not 0 <= tap.layer <= len(blocks):
        raise ValueError(f"tap layer {tap.layer} is outside 0..{len(blocks)} (the encoder has {len(blocks)} blocks)")
    for layer in range(len(blocks) + 1):
        if all_hidden:
            hidden.append(x)
        if tap is not None and layer == tap.layer:
            tapped = x
            if tap.callback is not None:
                tap.callback(x, out_lengths)
            if tap.stop:
                return EncoderOutput(x, out_lengths, tapped, hidden)
        if layer == len(blocks):
            break
        x = blocks[layer](x, key_mask=mask)
        if layer < len(blocks) - 1:
            x = encoder.dropout(x)
    return EncoderOutput(audio.ln_post(x), out_lengths, tapped, hidden)


def decoder_states(decoder: torch.nn.Module, memory: torch.Tensor, memory_lengths: torch.Tensor,
                        tokens: torch.Tensor, dropout: torch.nn.Module) -> torch.Tensor:
    """whisper TextDecoder `decoder` over whole target prefixes (training): final hidden states, pre-vocab.

    Causal self-attention, cross-attention over the valid frames of `memory` only.
    """
    x = decoder.token_embedding(tokens) + decoder.positional_embedding[: tokens.size(1)]
    x = dropout(x).to(memory.dtype)
    cross = key_mask(memory_lengths, memory.size(1))
    for layer, block in enumerate(decoder.blocks):
        x = block(x, memory, mask=decoder.mask, cross_mask=cross)
        if layer < len(decoder.blocks) - 1:
            x = dropout(x)
    return decoder.ln(x)
