"""Routers: language-ID posteriors -> the LoRA bank's weights and the decoder's language token.

Every router takes posteriors `[batch, L]` over a LID's languages and returns a `Routing`: weights
`[batch, L]` over the same languages (each row sums to 1, or is all zero: the base model, with the
shared adapter of a shared_below bank still on below the tap) and a language token per utterance.
Where the weights mix languages, the token is the language with the largest weight, which keeps
decoding one pass; decoding instead once per candidate language and keeping the best-scoring transcript
(Kwok et al., TASLP 2025) recovers some LID errors at up to K times the decoder's cost for the mixed
utterances: that is the decoder's choice (`decode.py --language_candidates K`,
espnet_ext.decode.transcribe), not the router's.

Three rules hold for every router and are applied here, once:
- `min_confidence`: when the top posterior is below it, the utterance falls back to the base model
  (tuned on dev; whether it helps at all is measured, since the bare base is far worse on hi/pa/te);
- a language with no adapter (a LID-only class: English, the plan's `other`) is never routed: its
  weight is dropped when the weights are mapped onto the bank (`bank_weights`), so an utterance routed
  wholly to it decodes with the base model and that language's token;
- `lid_only_min`: a LID-only class wins only at or above its own threshold (the head's, set on dev by
  stage 4: the lowest posterior a dev utterance of that class got); below it, its posterior is
  dropped and the rest renormalised. An Indic utterance taken for English is decoded by the bare base
  with the English token, which translates it (measured: three Hindi test utterances at p(en) 0.40-0.93
  doubled the Hindi WER), while an English utterance is ~1.0 sure.

Where the posteriors come from is the routing's `source` (`ROUTINGS`): a LID head on the tap, the
model's own language token (the baseline), or utt2lang (oracle).
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import torch

from espnet_ext.languages import FAMILIES


@dataclass
class Routing:
    weights: torch.Tensor  # [batch, L] over the LID's languages; a zero row = the base model
    langs: List[str]  # the decoder's language token of each utterance


class Router:
    """Base: subclasses turn posteriors into weights (`mix`); the shared rules are applied here."""

    name = ""

    def __init__(self, min_confidence: float = 0.0, lid_only_min: Optional[Mapping[str, float]] = None):
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must lie in [0, 1], got {min_confidence}")
        self.min_confidence = min_confidence
        self.lid_only_min = dict(lid_only_min or {})

    def guard_lid_only(self, posteriors: torch.Tensor, languages: Sequence[str]) -> torch.Tensor:
        """Rows whose top class is a LID-only language below its `lid_only_min`: that class dropped."""
        for lang, threshold in self.lid_only_min.items():
            if lang not in languages:
                continue
            j = list(languages).index(lang)
            unsure = (posteriors.argmax(1) == j) & (posteriors[:, j] < threshold)
            if unsure.any():
                dropped = posteriors.clone()
                dropped[:, j] = 0.0
                dropped = dropped / dropped.sum(1, keepdim=True).clamp_min(1e-12)
                posteriors = torch.where(unsure[:, None], dropped, posteriors)
        return posteriors

    def mix(self, posteriors: torch.Tensor, languages: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, posteriors: torch.Tensor, languages: Sequence[str]) -> Routing:
        posteriors = self.guard_lid_only(posteriors.float(), languages)
        weights = self.mix(posteriors, languages)
        token = torch.where(weights.sum(1, keepdim=True) > 0, weights, posteriors).argmax(1)
        weights = weights * (posteriors.max(1, keepdim=True).values >= self.min_confidence)
        return Routing(weights, [languages[i] for i in token.tolist()])


def one_hot_top(posteriors: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(posteriors.argmax(1), posteriors.size(1)).float()


class HardRouter(Router):
    """The argmax language's adapter alone."""

    name = "hard"

    def mix(self, posteriors, languages):
        return one_hot_top(posteriors)


# The soft router's temperature unless given, chosen on dev_all with the default head on the 7 Dec bank
# (WER over all: T = 1 26.85, T = 0.5 26.67, hard 26.92; README, "Language ID and routing")
SOFT_TEMPERATURE = 0.5


class SoftRouter(Router):
    """Every adapter, weighted by the posteriors sharpened with a temperature: w = softmax(log p / T).
    T = 1 is the posteriors themselves; T -> 0 is hard routing; T -> inf is uniform."""

    name = "soft"

    def __init__(self, temperature: float = SOFT_TEMPERATURE, min_confidence: float = 0.0, lid_only_min=None):
        super().__init__(min_confidence, lid_only_min)
        if not temperature > 0:
            raise ValueError(f"the soft router's temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def mix(self, posteriors, languages):
        return torch.softmax(posteriors.clamp_min(1e-12).log() / self.temperature, dim=1)


DEFAULT_TAU = 0.9  # the threshold router's tau unless tuned: below it, the LID head counts as unsure


class ThresholdRouter(Router):
    """Hard when the top posterior is at least `tau`; otherwise the top `top_k` adapters, their
    posteriors renormalised (the uncertain utterances hedge between the likely languages only)."""

    name = "threshold"

    def __init__(self, tau: float = DEFAULT_TAU, top_k: int = 2, min_confidence: float = 0.0, lid_only_min=None):
        super().__init__(min_confidence, lid_only_min)
        if not 0.0 <= tau <= 1.0 or top_k < 1:
            raise ValueError(f"threshold routing needs 0 <= tau <= 1 and top_k >= 1, got tau {tau}, top_k {top_k}")
        self.tau, self.top_k = tau, top_k

    def mix(self, posteriors, languages):
        k = min(self.top_k, posteriors.size(1))
        values, index = posteriors.topk(k, dim=1)
        top_k = torch.zeros_like(posteriors).scatter(1, index, values)
        top_k = top_k / top_k.sum(1, keepdim=True).clamp_min(1e-12)
        sure = posteriors.max(1, keepdim=True).values >= self.tau
        return torch.where(sure, one_hot_top(posteriors), top_k)


class HierarchicalRouter(Router):
    """Family first, then within it (the language table's families: Indo-Aryan hi/pa, Dravidian te,
    Romance it): p(family) is the sum of its languages' posteriors; the most likely family is chosen and
    its languages weighted by p(lang | family) = p(lang) / p(family). A family decision is far surer than
    a within-family one (hi/pa confusions stay inside Indo-Aryan), so weight across families would only
    add a wrong family's delta; within the family the mixing hedges the hard pair."""

    name = "hierarchical"

    def __init__(self, families: Optional[Mapping[str, Sequence[str]]] = None, min_confidence: float = 0.0,
                 lid_only_min=None):
        super().__init__(min_confidence, lid_only_min)
        self.families = dict(FAMILIES if families is None else families)

    def family_matrix(self, languages: Sequence[str]) -> torch.Tensor:
        """[L, F] membership; a language outside the table's families (e.g. `other`) is its own family."""
        names = list(self.families) + [lang for lang in languages
                                       if not any(lang in members for members in self.families.values())]
        member = torch.zeros(len(languages), len(names))
        for j, name in enumerate(names):
            for i, lang in enumerate(languages):
                member[i, j] = float(lang == name or lang in self.families.get(name, ()))
        return member

    def mix(self, posteriors, languages):
        member = self.family_matrix(languages).to(posteriors.device)
        family = (posteriors @ member).argmax(1)  # [batch]
        inside = member[:, family].T  # [batch, L]: 1 for the chosen family's languages
        weights = posteriors * inside
        return weights / weights.sum(1, keepdim=True).clamp_min(1e-12)


@dataclass(frozen=True)
class RoutingKind:
    """A `--routing` choice: where its posteriors come from and the router that turns them into weights."""

    name: str
    source: str  # "none" (no adapters) | "utt2lang" | "language_token" | "lid_head"
    router: Optional[Callable[..., Router]]
    help: str


ROUTINGS: Dict[str, RoutingKind] = {kind.name: kind for kind in (
    RoutingKind("none", "none", None, "the base model alone (zero-shot)"),
    RoutingKind("oracle", "utt2lang", HardRouter, "each utterance through its true language's adapter (utt2lang)"),
    RoutingKind("builtin", "language_token", HardRouter,
                "baseline: the adapter of the language the bare base's own language token picks (30 s window)"),
    RoutingKind("hard", "lid_head", HardRouter, "the LID head's argmax language"),
    RoutingKind("soft", "lid_head", SoftRouter, "all adapters, weighted by the LID posteriors (--temperature)"),
    RoutingKind("threshold", "lid_head", ThresholdRouter,
                "hard above --tau, else the top --top_k adapters renormalised"),
    RoutingKind("hierarchical", "lid_head", HierarchicalRouter,
                "the most likely language family, then its languages by p(lang | family)"),
)}


def make_router(name: str, temperature: float = SOFT_TEMPERATURE, tau: float = DEFAULT_TAU, top_k: int = 2,
                min_confidence: float = 0.0, lid_only_min: Optional[Mapping[str, float]] = None) -> Optional[Router]:
    """The router of routing `name` with its options (those it does not use are ignored); None for none.
    `lid_only_min` comes from the LID head (its config's `lid_only_min`, set on dev by stage 4)."""
    if name not in ROUTINGS:
        raise ValueError(f"unknown routing {name!r}; the routings are {', '.join(ROUTINGS)}")
    kind = ROUTINGS[name].router
    if kind is None:
        return None
    options = {SoftRouter: {"temperature": temperature}, ThresholdRouter: {"tau": tau, "top_k": top_k}}.get(kind, {})
    return kind(min_confidence=min_confidence, lid_only_min=lid_only_min, **options)


def bank_weights(routing: Routing, languages: Sequence[str], bank_languages: Sequence[str]) -> torch.Tensor:
    """The routing's weights as columns of the bank's adapters (by name); LID-only languages dropped."""
    index = [list(languages).index(lang) if lang in languages else -1 for lang in bank_languages]
    columns = [routing.weights[:, i] if i >= 0 else torch.zeros(routing.weights.size(0), device=routing.weights.device)
               for i in index]
    return torch.stack(columns, dim=1)

