"""int8 weights for CPU decoding: copies of the decoder (and the encoder) whose linear layers are
dynamically quantised.

On CPU the decoder steps are most of a batch's time (71% on whisper_base, 2 threads, cProfile), and a
step multiplies a handful of rows by every decoder weight and by the vocabulary projection ([51865,
512] on Whisper): it is bound by reading weights, so int8 weights (a quarter of the bytes) pay. On the
30 s window the encoder's 1500 frames dominate instead, a compute-bound load where int8 arithmetic
pays less and costs more accuracy, hence two levels (`PARTS`): the decoder only, or both. This is
dynamic quantisation, what CTranslate2's int8 does: weights int8 with one symmetric scale per output
channel, activations quantised per call, accumulation in int32 (fbgemm's `linear_dynamic`). Layer
norms, convolutions, attention itself and the embeddings stay float32.

A copy shares every module but the linear layers with the model, and is built from the weights as they
are when first asked for: with an adapter merged into them (espnet_ext.lora.bank.merge), the adapter is
quantised with the base. A part whose LoRA banks are not merged has no int8 copy, since routed deltas
(per row, or decided by the tap during the pass) live in the float32 bank: such batches run in float32
(`copy_of` returns None).
"""
import contextlib
import copy
import warnings
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import torch
import torch.nn as nn

from espnet_ext.lora.bank import LoRABankLinear


def _has_vnni() -> bool:
    """Whether the CPU multiplies u8 x s8 into int32 directly (AVX-512 VNNI or AVX-VNNI)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


# Without VNNI, fbgemm's u8 x s8 products pass through saturating int16 sums: activations keep 7 bits
# there (torch's x86 default); with VNNI all 8 (the README's int8 measurements).
REDUCE_RANGE = not _has_vnni()
PARTS = ("none", "decoder", "all")  # what `--int8` quantises


class Int8Linear(nn.Module):
    """`y = x W^T + b` with W int8 per output channel; x is quantised on the fly (float in, float out)."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor] = None):
        super().__init__()
        weight = weight.detach().float().cpu()
        scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
        with warnings.catch_warnings():  # torch 2.13 warns that quantized tensors are deprecated
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_channel(weight, scales, torch.zeros_like(scales, dtype=torch.long), 0,
                                                 torch.qint8)
        self.in_features, self.out_features = weight.size(1), weight.size(0)
        bias = None if bias is None else bias.detach().float().cpu()
        self.packed = torch.ops.quantized.linear_prepack(qweight, bias)

    @classmethod
    def from_linear(cls, linear: nn.Module) -> "Int8Linear":
        """From an `nn.Linear`, or a LoRA bank layer with an adapter merged (its base holds the sum)."""
        if isinstance(linear, LoRABankLinear):
            linear = linear.base
        return cls(linear.weight, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).float()
        out = torch.ops.quantized.linear_dynamic(flat, self.packed, REDUCE_RANGE)
        return out.view(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def _unrouted(module: nn.Module) -> bool:
    """No LoRA bank in `module`, or every one of them merged: the weights alone say what it computes."""
    return all(m.merged is not None for m in module.modules() if isinstance(m, LoRABankLinear))


def int8_copy(part: nn.Module) -> nn.Module:
    """`part` (a decoder or an encoder) with every linear layer (and every LoRA bank layer, routing
    ignored) replaced by an `Int8Linear` of its current weights; all other modules and tensors are its own."""
    linear = (nn.Linear, LoRABankLinear)
    # Shared, never copied: the linear layers (replaced below in the copy's parents), the other leaf
    # modules (embeddings, layer norms), and the tensors held by the containers themselves.
    shared = {id(m): m for m in part.modules() if isinstance(m, linear) or not any(m.children())}
    shared.update({id(t): t for m in part.modules() if not isinstance(m, linear)
                   for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False))})
    clone = copy.deepcopy(part, memo=shared)
    for parent in clone.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, linear):
                setattr(parent, name, Int8Linear.from_linear(child))
    return clone


class Int8Copies:
    """What a decoding backend runs on int8 weights (`parts`, one of PARTS): the int8 copy of each model part
    per merged adapter, built on first use and kept for the run.

    `vocab_weight`: a weight the decoder multiplies by outside any linear layer (Whisper's tied token
    embedding), quantised once as well."""

    def __init__(self, parts: str, vocab_weight: Optional[torch.Tensor] = None):
        if parts not in PARTS:
            raise ValueError(f"int8 parts {parts!r}: choose one of {', '.join(PARTS)}")
        self.parts = parts
        self.vocab = None if parts == "none" or vocab_weight is None else Int8Linear(vocab_weight)
        self._copies: Dict[Tuple[int, Tuple[str, ...]], nn.Module] = {}

    def copy_of(self, part: nn.Module) -> Optional[nn.Module]:
        """The int8 copy of `part` as its weights are now, or None when its LoRA banks route (not merged)."""
        if not _unrouted(part):
            return None
        key = (id(part), tuple(m.merged for m in part.modules() if isinstance(m, LoRABankLinear)))
        if key not in self._copies:
            self._copies[key] = int8_copy(part)
        return self._copies[key]

    def decoder(self, decoder: nn.Module) -> Optional[nn.Module]:
        """The decoder's int8 copy, or None where the decoder stays float32 (parts none, or routed banks)."""
        return None if self.parts == "none" else self.copy_of(decoder)

    @contextlib.contextmanager
    def encoding(self, model: nn.Module) -> Iterator[None]:
        """`model.encoder` replaced by its int8 copy for the block, with parts `all` and where it has one."""
        original = model.encoder
        clone = self.copy_of(original) if self.parts == "all" else None
        if clone is None:
            yield
            return
        model.encoder = clone
        try:
            yield
        finally:
            model.encoder = original
