"""Gradient checkpointing of the transformer blocks: activations recomputed in backward, not stored.

For large bases on a GPU (Whisper medium/large, OWSM medium) with long batches, where activation memory
rather than compute limits the batch size. Each encoder and decoder block of the base runs under
`torch.utils.checkpoint` (non-reentrant, RNG state preserved, so LoRA dropout draws the same mask when
recomputed); the result and the gradients are those of the plain forward. Off by default: on a CPU
it only adds the recomputation.

The recomputation runs in backward, after `espnet_ext.lora.inject.routing` has restored the banks'
previous routing, so each checkpointed block puts back the routing plans its banks had during the
forward while it is recomputed.
"""
import contextlib
import functools
from typing import Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from espnet_ext.lora.bank import LoRABankLinear


def _checkpointed(block: nn.Module, forward, *args, **kwargs):
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)  # decoding and validation: nothing to save
    block_banks = [m for m in block.modules() if isinstance(m, LoRABankLinear)]
    plans = [bank.routing for bank in block_banks]

    @contextlib.contextmanager
    def forward_routing() -> Iterator[None]:
        current = [bank.routing for bank in block_banks]
        for bank, plan in zip(block_banks, plans):
            bank.routing = plan
        try:
            yield
        finally:
            for bank, plan in zip(block_banks, current):
                bank.routing = plan

    return checkpoint(forward, *args, use_reentrant=False,
                      context_fn=lambda: (contextlib.nullcontext(), forward_routing()), **kwargs)


def enable_gradient_checkpointing(asr_model: nn.Module, family) -> int:
    """Checkpoint every block of `asr_model` (a model of `family`); returns how many blocks were wrapped."""
    blocks = family.blocks(asr_model)
    for block in blocks:
        block.forward = functools.partial(_checkpointed, block, block.forward)
    return len(blocks)
