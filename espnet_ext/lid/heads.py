"""Language-ID heads on the encoder tap's states: six kinds, one file format, one loader.

Every head maps the states after encoder block `layer` (`[batch, frames, width]`, rows padded past
`lengths`) to logits over `languages`; calling it returns posteriors. The states are first standardised
per dimension with the training set's frame statistics (the tap's raw scale differs a lot between
dimensions, and between a bare tap and one under a shared adapter).

- `linear`: mean over frames, one linear layer (also the layer-scan probe of `espnet_ext.lid.probe`);
- `mlp`: mean over frames, 256 -> 128 hidden units, dropout 0.3 (the project plan's head);
- `cnn`: a frame-wise projection to 128, two 1-D convolutions over frames (kernel 5), then the mean;
- `bilstm`: a frame-wise projection to 128, a bidirectional LSTM (128 per direction), then the mean;
- `asp`: attentive statistics pooling (a learned attention over frames gives a weighted mean and
  standard deviation, as ECAPA-TDNN pools), then 256 hidden units;
- `tagger`: a language per frame (dilated 1-D convolutions over 2.5 s of frames), trained on
  code-switched speech with frame labels (`espnet_ext.lid.train.fit_tagger`): where the language
  changes inside a recording (espnet_ext.lid.segments). Its utterance posterior is the mean of its
  frames', so it also loads wherever a head does.

Any kind can be a seed ensemble (`members` > 1, `SeedEnsemble`): that many heads of the kind, each
trained from its own seed, their posteriors averaged. The decision between Hindi and Punjabi moves
with the voices a head happens to fit (one seed errs on the dev voices' Hindi, another on the test
voices' Punjabi); averaging seeds steadies it (README, "Language ID and routing").

A head is saved like an adapter: `lid_config.json` (kind, its hyperparameters, layer, languages, the
base it was trained on and the adapters under the tap) + `lid_model.safetensors`.
"""
import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Type

import safetensors.torch
import torch
from torch import nn

from espnet_ext.errors import UserError
from espnet_ext.fileio import PathLike, atomic_write_bytes, atomic_write_text, read_format_config, read_safetensors
from espnet_ext.lid.features import mean_pool
from espnet_ext.models.whisper_forward import frame_mask

CONFIG_NAME = "lid_config.json"
WEIGHTS_NAME = "lid_model.safetensors"
FORMAT = "espnet_ext.lid_head/1"


class LIDFileError(UserError, ValueError):
    """A LID head directory that is missing, corrupt or was trained on another base."""


class LIDHead(nn.Module):
    """Base of the six heads: standardisation, posteriors, the config a file needs."""

    kind = ""

    def __init__(self, layer: int, languages: Sequence[str], width: int):
        super().__init__()
        self.layer = layer
        self.languages = tuple(languages)
        self.lid_only_min: Dict[str, float] = {}  # per LID-only class, the posterior it must reach to win
        self.tau: Optional[float] = None  # the threshold router's tau, set on dev when the head was trained
        self.width = width
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))

    def hyper(self) -> Dict[str, Any]:
        """Constructor arguments beyond layer/languages/width (saved in the config)."""
        return {}

    def standardise(self, hidden: torch.Tensor) -> torch.Tensor:
        return (hidden.float() - self.mean) / self.std

    def logits(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Posteriors `[batch, languages]`, in eval mode whatever the module's mode."""
        return self.softmax_in_eval(self.logits, hidden, lengths)

    @torch.no_grad()
    def softmax_in_eval(self, logits, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The softmax of `logits(hidden, lengths)` over languages, computed in eval mode (no dropout), the
        module's mode restored after."""
        training = self.training
        self.eval()
        try:
            return torch.softmax(logits(hidden, lengths), dim=-1)
        finally:
            self.train(training)

    def save(self, out_dir: PathLike, meta: Mapping[str, Any]) -> Path:
        """Weights, then the config (base_model, base_fingerprint and anything else in `meta`)."""
        out_dir = Path(out_dir)
        tensors = {k: v.contiguous() for k, v in self.state_dict().items()}
        atomic_write_bytes(out_dir / WEIGHTS_NAME, safetensors.torch.save(tensors))
        config = {"format": FORMAT, **meta, "kind": self.kind, "hyper": self.hyper(), "layer": self.layer,
                  "languages": list(self.languages), "width": self.width}
        atomic_write_text(out_dir / CONFIG_NAME, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        return out_dir / CONFIG_NAME


class LinearHead(LIDHead):
    kind = "linear"

    def __init__(self, layer, languages, width):
        super().__init__(layer, languages, width)
        self.linear = nn.Linear(width, len(self.languages))

    def logits(self, hidden, lengths):
        return self.linear(mean_pool(self.standardise(hidden), lengths))


class MLPHead(LIDHead):
    kind = "mlp"

    def __init__(self, layer, languages, width, hidden=(256, 128), dropout=0.3):
        super().__init__(layer, languages, width)
        self.hidden, self.dropout = tuple(hidden), dropout
        sizes, layers = (width, *self.hidden), []
        for n_in, n_out in zip(sizes, sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU(), nn.Dropout(dropout)]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], len(self.languages)))

    def hyper(self):
        return {"hidden": list(self.hidden), "dropout": self.dropout}

    def logits(self, hidden, lengths):
        return self.net(mean_pool(self.standardise(hidden), lengths))


class CNNHead(LIDHead):
    kind = "cnn"

    def __init__(self, layer, languages, width, channels=128, kernel=5, dropout=0.3):
        super().__init__(layer, languages, width)
        self.channels, self.kernel, self.dropout = channels, kernel, dropout
        self.project = nn.Linear(width, channels)  # frame-wise first: the convolutions run on 128, not 512
        self.conv1 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, len(self.languages)))

    def hyper(self):
        return {"channels": self.channels, "kernel": self.kernel, "dropout": self.dropout}

    def logits(self, hidden, lengths):
        mask = frame_mask(lengths.to(hidden.device), hidden.size(1))[:, None, :].float()
        x = self.project(self.standardise(hidden)).transpose(1, 2) * mask  # padding zeroed around each conv
        x = torch.relu(self.conv1(x)) * mask
        x = torch.relu(self.conv2(x)) * mask
        return self.out(mean_pool(x.transpose(1, 2), lengths))


class BiLSTMHead(LIDHead):
    kind = "bilstm"

    def __init__(self, layer, languages, width, units=128, dropout=0.3):
        super().__init__(layer, languages, width)
        self.units, self.dropout = units, dropout
        self.project = nn.Linear(width, units)  # frame-wise first: the recurrence runs on 128, not 512
        self.lstm = nn.LSTM(units, units, batch_first=True, bidirectional=True)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * units, len(self.languages)))

    def hyper(self):
        return {"units": self.units, "dropout": self.dropout}

    def logits(self, hidden, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(self.project(self.standardise(hidden)), lengths.cpu(),
                                                   batch_first=True, enforce_sorted=False)
        states, _ = self.lstm(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=hidden.size(1))
        return self.out(mean_pool(states, lengths))


class ASPHead(LIDHead):
    """Attentive statistics pooling: a frame scorer's softmax weights pool each utterance's mean and
    deviation. The scorer's width is 64: at 128 it was two-thirds of an epoch's arithmetic, and halving it
    made stage 4's epochs 1.4x faster at the same dev accuracy (README, "Language ID and routing")."""

    kind = "asp"

    def __init__(self, layer, languages, width, attention=64, hidden=256, dropout=0.3):
        super().__init__(layer, languages, width)
        self.attention, self.hidden, self.dropout = attention, hidden, dropout
        self.score = nn.Sequential(nn.Linear(width, attention), nn.Tanh(), nn.Linear(attention, 1))
        self.out = nn.Sequential(nn.Linear(2 * width, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, len(self.languages)))

    def hyper(self):
        return {"attention": self.attention, "hidden": self.hidden, "dropout": self.dropout}

    def logits(self, hidden, lengths):
        x = self.standardise(hidden)
        mask = frame_mask(lengths.to(x.device), x.size(1))
        alpha = torch.softmax(self.score(x).squeeze(-1).masked_fill(~mask, float("-inf")), dim=-1)[:, None]
        # weighted mean and E[x^2] as batched matrix products: no [batch, frames, width] products to keep for
        # the backward pass (epochs 1.23x faster than summing alpha * x: bench/lid_training.py; x is
        # standardised, so E[x^2] - mean^2 loses nothing in float32)
        mean = torch.bmm(alpha, x).squeeze(1)
        std = (torch.bmm(alpha, x * x).squeeze(1) - mean * mean).clamp_min(1e-6).sqrt()
        return self.out(torch.cat([mean, std], dim=-1))


class TaggerHead(LIDHead):
    """Posteriors frame by frame from one pass over a whole recording. A utterance-level head read on the
    frames of one pass finds at most 67% of the dev switches (every frame of the pass has attended to
    both languages); trained on frame labels of code-switched speech, a frame's language is learnt
    from the states around it. Residual dilated convolutions (kernel 5, dilations 1-16) see 1.24 s
    each side: 4x faster to train than a bidirectional GRU of the same width, as accurate on dev
    (README, "Code-switched speech")."""

    kind = "tagger"

    def __init__(self, layer, languages, width, channels=128, kernel=5, dilations=(1, 2, 4, 8, 16), dropout=0.3):
        super().__init__(layer, languages, width)
        self.channels, self.kernel, self.dilations, self.dropout = channels, kernel, tuple(dilations), dropout
        self.project = nn.Sequential(nn.Linear(width, channels), nn.GELU())
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, kernel, dilation=d, padding=d * (kernel // 2))
                                   for d in self.dilations)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(channels, len(self.languages))

    def hyper(self):
        return {"channels": self.channels, "kernel": self.kernel, "dilations": list(self.dilations),
                "dropout": self.dropout}

    def frame_logits(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """`[batch, frames, languages]`; padding frames are zeroed around every convolution."""
        mask = frame_mask(lengths.to(hidden.device), hidden.size(1))[:, None, :].float()
        x = self.project(self.standardise(hidden)).transpose(1, 2) * mask
        for conv in self.convs:
            x = (x + self.drop(nn.functional.gelu(conv(x)))) * mask
        return self.out(x.transpose(1, 2))

    def frame_posteriors(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """`[batch, frames, languages]` posteriors, in eval mode whatever the module's mode."""
        return self.softmax_in_eval(self.frame_logits, hidden, lengths)

    def logits(self, hidden, lengths):
        """The log of the mean of the valid frames' posteriors (a softmax of it gives that mean back)."""
        frames = torch.softmax(self.frame_logits(hidden, lengths), dim=-1)
        return mean_pool(frames, lengths).clamp_min(1e-12).log()


# the heads stage 4 trains on utterance labels (espnet_ext.bin.train_lid); the tagger trains on frame labels
# (espnet_ext.bin.train_tagger), and every kind loads through make_head
HEADS: Dict[str, Type[LIDHead]] = {cls.kind: cls for cls in (LinearHead, MLPHead, CNNHead, BiLSTMHead, ASPHead)}
KINDS: Dict[str, Type[LIDHead]] = {**HEADS, TaggerHead.kind: TaggerHead}
# The head the recipe trains and routes with, and its seed ensemble's size: chosen on dev accuracy
# (README, "Language ID and routing": asp over mlp, three seeds over one).
DEFAULT_HEAD, DEFAULT_MEMBERS = "asp", 3


class SeedEnsemble(LIDHead):
    """Heads of one kind trained from different seeds (`espnet_ext.lid.train.fit_head` gives member i
    the seed + i), read as one head: its posteriors are the members' mean. It keeps the members' kind,
    so tables and directories name it as the kind it averages; the config records `members`."""

    def __init__(self, members: Sequence[LIDHead]):
        first = members[0]
        super().__init__(first.layer, first.languages, first.width)
        self.kind = first.kind
        del self.mean, self.std  # each member standardises its own input
        self.members = nn.ModuleList(members)

    def hyper(self):
        return {**self.members[0].hyper(), "members": len(self.members)}

    def logits(self, hidden, lengths):
        """The log of the members' mean posteriors (a softmax of it gives that mean back)."""
        posteriors = torch.stack([torch.softmax(m.logits(hidden, lengths), dim=-1) for m in self.members])
        return posteriors.mean(0).clamp_min(1e-12).log()


def make_head(kind: str, layer: int, languages: Sequence[str], width: int, members: int = 1, **hyper) -> LIDHead:
    """A fresh head of `kind`; with `members` > 1, a `SeedEnsemble` of that many."""
    if kind not in KINDS:
        raise ValueError(f"unknown LID head {kind!r}; the heads are {', '.join(KINDS)}")
    if members > 1:
        return SeedEnsemble([KINDS[kind](layer, languages, width, **hyper) for _ in range(members)])
    return KINDS[kind](layer, languages, width, **hyper)


def read_head_config(head_dir: PathLike) -> Dict[str, Any]:
    return read_format_config(Path(head_dir) / CONFIG_NAME, FORMAT, "LID head",
                              ("base_model", "base_fingerprint", "kind", "hyper", "layer", "languages", "width"),
                              LIDFileError, "train one with stage 4 (python -m espnet_ext.bin.train_lid)",
                              "retrain it")


def load_head(head_dir: PathLike, base_name: str, base_fingerprint: str) -> LIDHead:
    """The head saved in `head_dir`; refused when it was trained on another base."""
    head_dir = Path(head_dir)
    config = read_head_config(head_dir)
    if (config["base_model"], config["base_fingerprint"]) != (base_name, base_fingerprint):
        raise LIDFileError(f"LID head {head_dir} was trained on {config['base_model']} (fingerprint "
                           f"{config['base_fingerprint']}), not {base_name} ({base_fingerprint}); retrain it")
    head = make_head(config["kind"], config["layer"], config["languages"], config["width"], **config["hyper"])
    weights = read_safetensors(head_dir / WEIGHTS_NAME, CONFIG_NAME, LIDFileError, "retrain it")
    if isinstance(head, SeedEnsemble):  # ensembles saved before 7 Dec 2026 also hold an unused mean and std
        weights = {k: v for k, v in weights.items() if k not in ("mean", "std")}
    head.load_state_dict(weights)
    head.lid_only_min = dict(config.get("lid_only_min", {}))  # the routers' threshold per LID-only class
    head.tau = config.get("tau")  # heads saved before dev-set tau have none
    return head.eval()
