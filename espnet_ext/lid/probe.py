"""The layer scan that picks the tap layer k of a bank layout: a linear probe per encoder layer.

The probe is the cheapest head there is (`espnet_ext.lid.heads.LinearHead`: standardise the pooled
vector with the training set's mean and deviation, one linear layer), trained full-batch with Adam on
mean-pooled states. A probe per layer says how much language identity each depth of the frozen base
holds, which is what choosing k needs ("frozen encoder, first k layers -> language classifier ->
adapters"); the chosen layer's probe is saved as a head the tap can route with.
"""
from typing import Dict, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from espnet_ext.lid.features import label_indices
from espnet_ext.lid.heads import LinearHead


def pooled_logits(probe: LinearHead, pooled: torch.Tensor) -> torch.Tensor:
    return probe.linear(probe.standardise(pooled))


def fit_probe(layer: int, languages: Sequence[str], pooled: np.ndarray, labels: np.ndarray, steps: int = 300,
              lr: float = 1e-2, weight_decay: float = 1e-4, seed: int = 0) -> LinearHead:
    """A linear head on `layer`, fitted full-batch on pooled vectors (standardised with their statistics)."""
    x, y = torch.from_numpy(pooled).float(), torch.from_numpy(labels).long()
    torch.manual_seed(seed)
    probe = LinearHead(layer, languages, x.shape[1])
    probe.mean.copy_(x.mean(0))
    probe.std.copy_(x.std(0).clamp_min(1e-5))
    optimizer = torch.optim.Adam(probe.linear.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(pooled_logits(probe, x), y).backward()
        optimizer.step()
    return probe.eval()


@torch.no_grad()
def probe_accuracy(probe: LinearHead, pooled: np.ndarray, labels: np.ndarray) -> float:
    return float((pooled_logits(probe, torch.from_numpy(pooled)).argmax(-1).numpy() == labels).mean())


def scan_layers(train, dev, test, languages: Sequence[str], steps: int = 300) -> Dict[int, Dict[str, float]]:
    """Train a probe per layer on `train` (PooledFeatures); accuracy on train/dev/test by layer."""
    splits = (("train", train), ("dev", dev), ("test", test))
    labels = {name: label_indices(split.langs, languages) for name, split in splits}
    results = {}
    for layer, x in sorted(train.layers.items()):
        probe = fit_probe(layer, languages, x, labels["train"], steps=steps)
        results[layer] = {name: probe_accuracy(probe, split.layers[layer], labels[name]) for name, split in splits}
    return results


def choose_layer(results: Mapping[int, Mapping[str, float]]) -> int:
    """The tap layer: best dev accuracy (test is reported, never used to choose) among the layers between
    two encoder blocks, 1..N-1 (0 is the front end's output, with no block below to leave bare or shared;
    N leaves no encoder block to adapt above it). Ties go to the lower layer, which leaves more of the
    encoder to the per-language adapters. With a single layer scanned, that layer."""
    layers = sorted(results)
    inner = layers[1:-1] if len(layers) > 2 else layers
    return max(inner, key=lambda layer: (results[layer]["dev"], -layer))
