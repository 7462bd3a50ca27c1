"""A linear layer carrying several LoRA adapters that are mixed per sample.

    y = W x + sum_k w[b, k] * (alpha / r) * B_k A_k dropout(x)

`w[b, :]` are the routing weights of sample `b`: one-hot for oracle/hard routing, a posterior for soft
routing, sparse for top-K. Weights `[batch, time, K]` route each frame of a sample on its own (code-
switched speech in one encoder pass: the frames of each language segment through its adapter).
ESPnet's LoRA (loralib) holds one adapter per module. PEFT's LoRA layers hold several and sum the
active ones with weight 1; at inference PEFT can also give each sample its own adapter
(`adapter_names=`), running the adapters one after another on their sub-batches. Neither weights
adapters per sample or per frame. Here all adapters live in stacked parameters (`lora_A: [K, r, in]`,
`lora_B: [K, out, r]`), so a mixed batch, one-hot or weighted, is one batched computation.

The weights are analysed once per batch into a `RoutingPlan` (shared by the bank layers it routes, see
`espnet_ext.lora.inject.set_language_routing`), which picks the cheapest exact computation:

- "single":  every sample uses the same adapter with weight 1 -> one adapter's two matmuls;
- "per_row": every sample uses at most one adapter -> gather that adapter per sample (batched matmul),
             so oracle-routed training on mixed-language batches costs one adapter per sample, not K;
- "mixed":   anything else -> only the adapters whose weight column is not all zero, concatenated
             into one `[K' r, in]` / `[out, K' r]` pair so the mix is two matmuls;
- "none":    all weights zero -> the base layer alone;
- "frames":  per-frame weights `[batch, time, K]` -> as "mixed", the mix taken per frame.

Working out the plan needs the weights on the host (a device sync), which is why it happens once per
batch and not once per layer.
"""
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class RoutingPlan:
    """Routing weights `[batch, K]` plus the cheapest way to apply them (see the module docstring)."""

    kind: str  # "single" | "per_row" | "mixed" | "none" | "frames"
    weights: Optional[torch.Tensor]  # [batch, K] or [batch, time, K]; None for a batch-independent active adapter
    adapter: int = -1  # "single": the adapter's index
    rows: Optional[torch.Tensor] = None  # "per_row": [batch] adapter index of each sample
    row_weight: Optional[torch.Tensor] = None  # "per_row": [batch] that adapter's weight
    columns: Optional[torch.Tensor] = None  # "mixed": indices of the adapters with any nonzero weight


def single_adapter_plan(index: int) -> RoutingPlan:
    """Every sample, whatever the batch size, through adapter `index` with weight 1."""
    return RoutingPlan("single", None, adapter=index)


def plan_routing(weights: torch.Tensor, num_adapters: int) -> RoutingPlan:
    """Check `weights` ([batch, K] or per frame [batch, time, K], float) and choose the computation; syncs
    with the device once."""
    if weights.dim() not in (2, 3) or weights.size(-1) != num_adapters:
        raise ValueError(
            f"routing weights must have shape [batch, {num_adapters}] or [batch, time, {num_adapters}] (one "
            f"column per adapter), got {tuple(weights.shape)}"
        )
    if not weights.is_floating_point():
        raise TypeError(f"routing weights must be a float tensor, got {weights.dtype}")
    nonzero = weights.detach() != 0
    used = nonzero.flatten(0, -2).any(0)
    if not bool(used.any()):
        return RoutingPlan("none", weights)
    if weights.dim() == 3:
        return RoutingPlan("frames", weights, columns=used.nonzero().flatten())
    if bool((nonzero.sum(1) > 1).any()):
        return RoutingPlan("mixed", weights, columns=used.nonzero().flatten())
    rows = nonzero.to(torch.int8).argmax(1)  # rows with no adapter get index 0 and weight 0
    row_weight = weights.gather(1, rows[:, None]).squeeze(1)
    if int(used.sum()) == 1 and bool((row_weight == 1).all()):
        return RoutingPlan("single", weights, adapter=int(rows[0]))
    return RoutingPlan("per_row", weights, rows=rows, row_weight=row_weight)


class LoRABankLinear(nn.Module):
    """An `nn.Linear` (kept frozen as `.base`) plus K named LoRA adapters mixed per sample.

    Works for any `nn.Linear`, including whisper's `Linear` subclass (which casts its weight to the
    input dtype): the base is called as it is, and the adapter matrices are cast to the input dtype too.
    Routing is set from outside (`routing` attribute, a `RoutingPlan`); with no routing set, or while
    an adapter is merged, the layer is exactly the base layer.
    """

    def __init__(
        self,
        base: nn.Linear,
        names: Sequence[str],
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        targets: Sequence[str] = (),
        layout: Optional[dict] = None,
    ):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRABankLinear wraps an nn.Linear, got {type(base).__name__}")
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        if not names or len(set(names)) != len(names):
            raise ValueError(f"adapter names must be non-empty and unique, got {list(names)}")
        self.base = base.requires_grad_(False)
        self.names = tuple(names)
        self.rank, self.alpha, self.scaling = rank, float(alpha), float(alpha) / rank
        self.dropout_p = float(dropout)
        self.targets = tuple(targets)  # the injection patterns, recorded for adapter files
        self.layout = dict(layout or {"kind": "per_language", "tap_layer": 0})  # the model's BankLayout, recorded too
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # Adapters train in at least float32 even on a half-precision base (as PEFT's autocast does).
        like = dict(device=base.weight.device, dtype=torch.promote_types(base.weight.dtype, torch.float32))
        self.lora_A = nn.Parameter(torch.empty(len(names), rank, base.in_features, **like))
        self.lora_B = nn.Parameter(torch.zeros(len(names), base.out_features, rank, **like))
        self.routing: Optional[RoutingPlan] = None
        self.merged: Optional[str] = None
        # Non-persistent buffer: moves with .to(), never lands in a state dict.
        self.register_buffer("original_weight", None, persistent=False)
        self._register_load_state_dict_pre_hook(self._accept_unwrapped_keys)
        self.reset_parameters()

    # -- nn.Linear look-alike: code reading .weight/.in_features of the wrapped layer keeps working
    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> Optional[torch.Tensor]:
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def reset_parameters(self) -> None:
        """A_k like nn.Linear's (kaiming-uniform per adapter, as PEFT), B_k zero: a new adapter is a no-op."""
        with torch.no_grad():
            for k in range(len(self.names)):
                nn.init.kaiming_uniform_(self.lora_A[k], a=math.sqrt(5))
            self.lora_B.zero_()

    def index(self, name: str) -> int:
        """Column of adapter `name` in the routing weights."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no adapter {name!r} in this LoRA bank; it holds {list(self.names)}") from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        plan = self.routing
        if self.merged is not None or plan is None or plan.kind == "none":
            return out
        if plan.weights is not None and x.size(0) != plan.weights.size(0):
            raise RuntimeError(
                f"routing weights are set for a batch of {plan.weights.size(0)} but the input has "
                f"{x.size(0)} rows; when a search expands or reorders the batch, call "
                "espnet_ext.lora.inject.reorder_routing_weights(model, index) alongside it"
            )
        if plan.kind == "frames" and (x.dim() != 3 or x.size(1) != plan.weights.size(1)):
            raise RuntimeError(
                f"per-frame routing weights are set for {plan.weights.size(1)} frames but the input has shape "
                f"{tuple(x.shape)}; route only the layers that see those frames (set_language_routing's modules)"
            )
        return out + self._delta(self.dropout(x), plan).to(out.dtype)

    def _delta(self, x: torch.Tensor, plan: RoutingPlan) -> torch.Tensor:
        if plan.kind == "single":
            return self._single_delta(x, plan.adapter)
        if plan.kind == "per_row":
            return self._per_row_delta(x, plan.rows, plan.row_weight)
        return self._mixed_delta(x, plan.columns, plan.weights)

    def _single_delta(self, x: torch.Tensor, k: int) -> torch.Tensor:
        hidden = F.linear(x, self.lora_A[k].to(x.dtype))
        return F.linear(hidden, self.lora_B[k].to(x.dtype)) * self.scaling

    def _per_row_delta(self, x: torch.Tensor, rows: torch.Tensor, row_weight: torch.Tensor) -> torch.Tensor:
        a = self.lora_A.index_select(0, rows).to(x.dtype)  # [batch, r, in]
        b = self.lora_B.index_select(0, rows).to(x.dtype)  # [batch, out, r]
        scale = (row_weight.to(x.dtype) * self.scaling).view(-1, *([1] * (x.dim() - 1)))
        hidden = torch.einsum("b...i,bri->b...r", x, a) * scale
        return torch.einsum("b...r,bor->b...o", hidden, b)

    def _mixed_delta(self, x: torch.Tensor, columns: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Also the per-frame case: `weights` [batch, time, K] against `x` [batch, time, in]."""
        used, r = columns.numel(), self.rank
        a = self.lora_A.index_select(0, columns).reshape(used * r, -1).to(x.dtype)  # [K' r, in]
        b = self.lora_B.index_select(0, columns).permute(1, 0, 2).reshape(-1, used * r).to(x.dtype)
        mix = weights.index_select(-1, columns.to(weights.device)).to(x.dtype).repeat_interleave(r, dim=-1)
        mix = mix * self.scaling
        if weights.dim() == 2:
            mix = mix.view(x.size(0), *([1] * (x.dim() - 2)), used * r)
        return F.linear(F.linear(x, a) * mix, b)

    @torch.no_grad()
    def merge(self, name: str) -> None:
        """Fold adapter `name` into the base weight: single-language inference at the base's cost.

        The original weight is kept (a copy of one weight matrix per layer while merged), so `unmerge`
        restores it bit for bit instead of subtracting and accumulating rounding error. A state dict
        taken while merged holds the merged weight as `base.weight`; unmerge before saving the model.
        """
        if self.merged is not None:
            raise RuntimeError(f"adapter {self.merged!r} is already merged; call unmerge() first")
        k = self.index(name)
        weight = self.base.weight
        delta = (self.lora_B[k].float() @ self.lora_A[k].float()) * self.scaling
        self.original_weight = weight.detach().clone()
        weight.add_(delta.to(weight.dtype))
        self.merged = name

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore the exact base weight (no-op when nothing is merged)."""
        if self.merged is None:
            return
        self.base.weight.copy_(self.original_weight)
        self.original_weight = None
        self.merged = None

    def _accept_unwrapped_keys(self, state_dict, prefix, *_args) -> None:
        """Let a base checkpoint (`<layer>.weight`) load into the wrapped layer (`<layer>.base.weight`).

        ESPnet's `--init_param` and other loaders that run after injection hold the base model's keys.
        """
        for key in ("weight", "bias"):
            if prefix + key in state_dict and prefix + "base." + key not in state_dict:
                state_dict[prefix + "base." + key] = state_dict.pop(prefix + key)

    def extra_repr(self) -> str:
        merged = f", merged={self.merged!r}" if self.merged else ""
        return (f"adapters={list(self.names)}, rank={self.rank}, alpha={self.alpha:g}, "
                f"dropout={self.dropout_p:g}{merged}")
