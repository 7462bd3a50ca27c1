"""A linear language-ID probe on one encoder layer's mean-pooled states, and the layer scan that picks
the tap layer k of a bank layout.

The probe is the cheapest head there is: standardise the pooled vector with the training set's mean and
deviation, one linear layer, softmax; trained full-batch with Adam. A probe per layer says how much
language identity each depth of the frozen base holds, which is what choosing k needs ("frozen encoder,
first k layers -> language classifier -> adapters"); it is also a working head for the tap
(`__call__(hidden, lengths) -> posteriors`), saved like an adapter: `lid_config.json` +
`lid_model.safetensors`, naming the base it was trained on.
"""
import json
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence

import numpy as np
import safetensors.torch
import torch
from torch import nn

from espnet_ext.fileio import PathLike, atomic_write_bytes, atomic_write_text, read_format_config, read_safetensors
from espnet_ext.lid.features import label_indices, mean_pool

CONFIG_NAME = "lid_config.json"
WEIGHTS_NAME = "lid_model.safetensors"
FORMAT = "espnet_ext.lid_linear_probe/1"


class LIDFileError(ValueError):
    """A LID head directory that is missing, corrupt or was trained on another base."""


class LinearProbe(nn.Module):
    """Posteriors over `languages` from the states after encoder block `layer` (module docstring)."""

    def __init__(self, layer: int, languages: Sequence[str], width: int):
        super().__init__()
        self.layer = layer
        self.languages = tuple(languages)
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))
        self.linear = nn.Linear(width, len(self.languages))

    def logits_from_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear((pooled.float() - self.mean) / self.std)

    @torch.no_grad()
    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[batch, frames, width] states (padded rows past `lengths`) -> [batch, languages] posteriors."""
        return torch.softmax(self.logits_from_pooled(mean_pool(hidden, lengths)), dim=-1)

    def fit(self, pooled: np.ndarray, labels: np.ndarray, steps: int = 300, lr: float = 1e-2,
            weight_decay: float = 1e-4, seed: int = 0) -> "LinearProbe":
        """Full-batch Adam on the pooled training vectors (standardised with their own statistics)."""
        x, y = torch.from_numpy(pooled).float(), torch.from_numpy(labels).long()
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp_min(1e-5))
        torch.manual_seed(seed)
        self.linear.reset_parameters()
        optimizer = torch.optim.Adam(self.linear.parameters(), lr=lr, weight_decay=weight_decay)
        for _ in range(steps):
            optimizer.zero_grad()
            nn.functional.cross_entropy(self.logits_from_pooled(x), y).backward()
            optimizer.step()
        return self

    @torch.no_grad()
    def accuracy(self, pooled: np.ndarray, labels: np.ndarray) -> float:
        predicted = self.logits_from_pooled(torch.from_numpy(pooled)).argmax(-1).numpy()
        return float((predicted == labels).mean())

    def save(self, out_dir: PathLike, meta: Mapping[str, Any]) -> Path:
        """Weights, then the config (base_model, base_fingerprint and anything else in `meta`)."""
        out_dir = Path(out_dir)
        tensors = {k: v.contiguous() for k, v in self.state_dict().items()}
        atomic_write_bytes(out_dir / WEIGHTS_NAME, safetensors.torch.save(tensors))
        config = {"format": FORMAT, **meta, "layer": self.layer, "languages": list(self.languages),
                  "width": int(self.mean.numel())}
        atomic_write_text(out_dir / CONFIG_NAME, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        return out_dir / CONFIG_NAME


def load_probe(probe_dir: PathLike, base_name: str, base_fingerprint: str) -> LinearProbe:
    """The probe saved in `probe_dir`; refused when it was trained on another base."""
    probe_dir = Path(probe_dir)
    config = read_format_config(probe_dir / CONFIG_NAME, FORMAT, "LID probe",
                                ("base_model", "base_fingerprint", "layer", "languages", "width"), LIDFileError,
                                "train one with python -m espnet_ext.bin.lid_probe", "retrain it")
    if (config["base_model"], config["base_fingerprint"]) != (base_name, base_fingerprint):
        raise LIDFileError(f"LID probe {probe_dir} was trained on {config['base_model']} (fingerprint "
                           f"{config['base_fingerprint']}), not {base_name} ({base_fingerprint}); retrain it")
    probe = LinearProbe(config["layer"], config["languages"], config["width"])
    probe.load_state_dict(read_safetensors(probe_dir / WEIGHTS_NAME, CONFIG_NAME, LIDFileError, "retrain it"))
    return probe.eval()


def scan_layers(train, dev, test, languages: Sequence[str], steps: int = 300) -> Dict[int, Dict[str, float]]:
    """Train a probe per layer on `train` (PooledFeatures); accuracy on train/dev/test by layer."""
    labels = {name: label_indices(split.langs, languages) for name, split in
              (("train", train), ("dev", dev), ("test", test))}
    results = {}
    for layer, x in sorted(train.layers.items()):
        probe = LinearProbe(layer, languages, x.shape[1]).fit(x, labels["train"], steps=steps)
        results[layer] = {name: probe.accuracy(split.layers[layer], labels[name])
                          for name, split in (("train", train), ("dev", dev), ("test", test))}
    return results


def choose_layer(results: Mapping[int, Mapping[str, float]]) -> int:
    """The tap layer: best dev accuracy (test is reported, never used to choose) among the layers between
    two encoder blocks, 1..N-1 (0 is the front end's output, with no block below to leave bare or shared;
    N leaves no encoder block to adapt above it). Ties go to the lower layer, which leaves more of the
    encoder to the per-language adapters. With a single layer scanned, that layer."""
    layers = sorted(results)
    inner = layers[1:-1] if len(layers) > 2 else layers
    return max(inner, key=lambda layer: (results[layer]["dev"], -layer))
