"""Put LoRA banks into a model by module name, and steer, merge, count and export them.

Target patterns are matched against the qualified names of the model's `nn.Linear` modules (as
`model.named_modules()` spells them), whole name only:

- glob (default): the name is split at dots; `*` matches within one component (`blocks.*.attn.query`
  matches `blocks.3.attn.query` but never `blocks.3.cross_attn.query`), `?` one character within a
  component, and a component that is exactly `**` matches one or more whole components
  (`**.linear_q` matches every `linear_q` at any depth). fnmatch's `*`, which crosses dots, would let
  `attn.query` patterns silently pick up `cross_attn.query` as well.
- regex: a pattern starting with `re:` is a Python regular expression matched with `fullmatch`.

Bank layouts (`BankLayout`) say which layers hold which adapters, relative to the encoder layer k where
a language-ID tap decides the routing in the same pass (espnet_ext.models.whisper_forward.Tap):

- `per_language` (a): every targeted layer holds the per-language adapters; LID on the tap's states
  then needs a bare pass of the layers below k first, since those layers would be routed too;
- `above_tap` (b): the layers of the encoder blocks below k hold no adapter (they run bare, so the
  tap sees the base's features), the layers above and the decoder hold the per-language adapters;
- `shared_below` (c): as (b), but the layers below k hold one adapter named `shared`, trained on every
  language and always on while the model is adapted.

Every language bank of a model shares one adapter list (the routing weights' column order) and one
rank/alpha; `inject` runs once per model with every language the bank should hold. Routing weights
reach the language banks only; shared banks are on whenever the model is routed at all.
"""
import contextlib
import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from espnet_ext.lora.bank import LoRABankLinear, RoutingPlan, plan_routing, single_adapter_plan

_WHISPER_ATTN = ("query", "key", "value", "out")
SHARED = "shared"  # the name of the language-independent adapter of layout shared_below
LAYOUTS = ("per_language", "above_tap", "shared_below")


@dataclass(frozen=True)
class BankLayout:
    """Which targeted layers hold which adapters (module docstring); `lower` names the encoder blocks
    below the tap (module-name prefixes, bottom first: the model family knows them)."""

    kind: str = "per_language"
    tap_layer: int = 0
    lower: Tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self):
        if self.kind not in LAYOUTS:
            raise ValueError(f"bank layout {self.kind!r} is not one of {LAYOUTS}")
        if self.kind != "per_language" and self.tap_layer < 1:
            raise ValueError(f"bank layout {self.kind} needs tap_layer >= 1 (the encoder blocks below it hold "
                             f"{'no adapter' if self.kind == 'above_tap' else 'the shared adapter'}), got {self.tap_layer}")

    def describe(self) -> Dict[str, Any]:
        """What adapter files record (`lower` is implied by the module lists)."""
        return {"kind": self.kind, "tap_layer": self.tap_layer}

    @classmethod
    def from_record(cls, record: Optional[Mapping[str, Any]]) -> "BankLayout":
        """The layout an adapter file records; files older than layouts are per_language."""
        return cls(**(record or {}))

    def is_lower(self, module: str) -> bool:
        return any(module == p or module.startswith(p + ".") for p in self.lower)

    def split(self, modules: Sequence[str]) -> Tuple[List[str], List[str]]:
        """(modules with the language adapters, modules with the shared adapter) of the targeted ones."""
        if self.kind == "per_language":
            return list(modules), []
        upper = [m for m in modules if not self.is_lower(m)]
        if not upper or len(upper) == len(modules):
            raise ValueError(f"tap layer {self.tap_layer} leaves {'no' if not upper else 'every'} targeted layer above "
                             "it; choose a tap inside the encoder")
        lower = [m for m in modules if self.is_lower(m)]
        return upper, lower if self.kind == "shared_below" else []


def _whisper(side: str, attention: str, projections: Sequence[str]) -> List[str]:
    return [f"{side}.{side}s.blocks.*.{attention}.{p}" for p in projections]


_WHISPER_MLP = [f"{side}.{side}s.blocks.*.mlp.{i}" for side in ("encoder", "decoder") for i in (0, 2)]

TARGET_PRESETS: Dict[str, List[str]] = {
    # ESPnet's Whisper: encoder.encoders / decoder.decoders are whisper's AudioEncoder / TextDecoder.
    "whisper_attn_qv": _whisper("encoder", "attn", ("query", "value"))
    + _whisper("decoder", "attn", ("query", "value"))
    + _whisper("decoder", "cross_attn", ("query", "value")),
    "whisper_attn": _whisper("encoder", "attn", _WHISPER_ATTN)
    + _whisper("decoder", "attn", _WHISPER_ATTN)
    + _whisper("decoder", "cross_attn", _WHISPER_ATTN),
    "whisper_encoder_all": _whisper("encoder", "attn", _WHISPER_ATTN) + _WHISPER_MLP[:2],
    "whisper_decoder_all": _whisper("decoder", "attn", _WHISPER_ATTN)
    + _whisper("decoder", "cross_attn", _WHISPER_ATTN)
    + _WHISPER_MLP[2:],
    # OWSM (ESPnet transformer / e-branchformer): every attention (self, src, encoder) and feed-forward,
    # including the e-branchformer's macaron feed-forward; `linear_pos` and the cgMLP branch stay base.
    "owsm_attn_qv": ["**.linear_q", "**.linear_v"],
    "owsm_attn": ["**.linear_q", "**.linear_k", "**.linear_v", "**.linear_out"],
    "owsm_attn_ffn": ["**.linear_q", "**.linear_k", "**.linear_v", "**.linear_out", "**.feed_forward*.w_1",
                      "**.feed_forward*.w_2"],
}
TARGET_PRESETS["whisper_all"] = TARGET_PRESETS["whisper_attn"] + _WHISPER_MLP


def resolve_targets(targets: Sequence[str]) -> List[str]:
    """Expand preset names (keys of TARGET_PRESETS) into their patterns; other entries are patterns."""
    if isinstance(targets, str):
        raise TypeError(f"targets must be a list of patterns or preset names, got the string {targets!r}")
    patterns: List[str] = []
    for target in targets:
        patterns += TARGET_PRESETS.get(target, [target])
    return patterns


def compile_pattern(pattern: str) -> "re.Pattern[str]":
    """The regular expression a target pattern stands for (see the module docstring)."""
    if pattern.startswith("re:"):
        return re.compile(pattern[3:])
    parts = []
    for component in pattern.split("."):
        if component == "**":
            parts.append(r"[^.]+(?:\.[^.]+)*")
        else:
            parts.append("".join(
                "[^.]*" if ch == "*" else "[^.]" if ch == "?" else re.escape(ch) for ch in component
            ))
    return re.compile(r"\.".join(parts))


def match_linear_modules(model: nn.Module, targets: Sequence[str]) -> List[str]:
    """Qualified names of the nn.Linear modules that the targets match, in model order.

    A pattern that matches no nn.Linear is an error naming it and the closest module names that exist.
    """
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    chosen = set()
    for pattern in resolve_targets(targets):
        regex = compile_pattern(pattern)
        hits = [name for name in linears if regex.fullmatch(name)]
        if not hits:
            close = difflib.get_close_matches(pattern.replace("*", "0"), linears, n=6, cutoff=0.0)
            raise ValueError(
                f"LoRA target pattern {pattern!r} matches no nn.Linear module of "
                f"{type(model).__name__}; some that exist: {close}. Fix the pattern ('*' stays within "
                "one dotted component, '**' spans components, 're:' prefixes a regex) or pick a preset "
                f"from {sorted(TARGET_PRESETS)}"
            )
        chosen.update(hits)
    return [name for name in linears if name in chosen]


def banks(model: nn.Module) -> Dict[str, LoRABankLinear]:
    """Every LoRA bank in `model`, by qualified name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRABankLinear)}


def _require_banks(model: nn.Module) -> Dict[str, LoRABankLinear]:
    found = banks(model)
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no LoRA bank; call espnet_ext.lora.inject.inject() "
            "(or adapter_files.load_adapter) first"
        )
    return found


def inject(
    model: nn.Module,
    targets: Sequence[str],
    rank: int,
    alpha: float,
    languages: Sequence[str],
    dropout: float = 0.0,
    layout: BankLayout = BankLayout(),
) -> List[str]:
    """Wrap every nn.Linear matched by `targets` in a LoRABankLinear, as `layout` assigns them: one
    adapter per language, the shared adapter, or none (module docstring).

    Then freeze everything but the adapters, so an optimiser over `requires_grad` parameters trains
    exactly the bank. Returns the wrapped module names.
    """
    _refuse_second_bank(model)
    language_modules, shared_modules = layout.split(match_linear_modules(model, targets))
    return wrap_modules(model, language_modules, shared_modules, rank, alpha, languages, dropout, targets, layout)


def _refuse_second_bank(model: nn.Module) -> None:
    existing = banks(model)
    if existing:
        raise ValueError(
            f"model already holds LoRA banks (e.g. {next(iter(existing))}); inject once with every "
            "language the bank should hold"
        )


def wrap_modules(model: nn.Module, language_modules: Sequence[str], shared_modules: Sequence[str], rank: int,
                 alpha: float, languages: Sequence[str], dropout: float = 0.0, targets: Sequence[str] = (),
                 layout: BankLayout = BankLayout()) -> List[str]:
    """Wrap the named linears (language banks, shared banks) and freeze all but the adapters.

    `inject` chooses the modules from target patterns; adapter files name them exactly.
    """
    _refuse_second_bank(model)
    if SHARED in languages:
        raise ValueError(f"{SHARED!r} is the shared adapter's name, not a language")
    for names, modules in ((tuple(languages), language_modules), ((SHARED,), shared_modules)):
        for name in modules:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            base = getattr(parent, child)
            bank = LoRABankLinear(base, names, rank, alpha, dropout, targets, layout.describe())
            setattr(parent, child, bank.train(base.training))  # an eval() model stays in eval (no dropout)
    freeze_all_but_adapters(model)
    return [*language_modules, *shared_modules]


def freeze_all_but_adapters(model: nn.Module) -> None:
    """requires_grad only for the banks' lora_A / lora_B."""
    model.requires_grad_(False)
    for bank in banks(model).values():
        bank.lora_A.requires_grad_(True)
        bank.lora_B.requires_grad_(True)


def is_shared(bank: LoRABankLinear) -> bool:
    return bank.names == (SHARED,)


def language_banks(model: nn.Module) -> Dict[str, LoRABankLinear]:
    """The banks that hold the per-language adapters (routed by the weights), by qualified name."""
    return {name: b for name, b in _require_banks(model).items() if not is_shared(b)}


def shared_banks(model: nn.Module) -> Dict[str, LoRABankLinear]:
    """The banks that hold the shared adapter (layout shared_below), by qualified name."""
    return {name: b for name, b in banks(model).items() if is_shared(b)}


@dataclass(frozen=True)
class BankInfo:
    """What every language bank of a model shares, as adapter files record it."""

    names: Tuple[str, ...]
    rank: int
    alpha: float
    dropout: float
    targets: Tuple[str, ...]
    modules: Tuple[str, ...]  # the language banks
    layout: BankLayout
    shared_modules: Tuple[str, ...] = ()  # the shared banks


def bank_info(model: nn.Module) -> BankInfo:
    """The model's bank layout; an error if its banks disagree (they were not injected by one call)."""
    routed, shared = language_banks(model), shared_banks(model)
    if not routed:
        raise ValueError(f"{type(model).__name__} holds only shared LoRA banks; inject the language adapters too")
    shapes = {(b.rank, b.alpha, b.dropout_p, b.targets, tuple(sorted(b.layout.items())))
              for b in [*routed.values(), *shared.values()]}
    names = {b.names for b in routed.values()}
    if len(shapes) > 1 or len(names) > 1:
        raise ValueError(f"the model's LoRA banks disagree on adapters/rank/alpha/targets/layout: "
                         f"{sorted(names)}, {sorted(shapes, key=str)}")
    first = next(iter(routed.values()))
    return BankInfo(first.names, first.rank, first.alpha, first.dropout_p, first.targets, tuple(routed),
                    BankLayout.from_record(first.layout), tuple(shared))


def adapter_names(model: nn.Module) -> Tuple[str, ...]:
    """The language adapters, in routing-weight column order."""
    return bank_info(model).names


def _set_plan(bank_map: Mapping[str, LoRABankLinear], plan: Optional[RoutingPlan]) -> None:
    for bank in bank_map.values():
        bank.routing = plan


def set_language_routing(model: nn.Module, weights: Optional[torch.Tensor],
                         modules: Optional[Iterable[str]] = None) -> None:
    """Route the language banks (only those named in `modules`, when given) by `weights` ([batch, K], or
    per frame [batch, time, K] for encoder layers; columns in `adapter_names` order; None: their base
    layers). Shared banks are left as they are.

    The weights are analysed once here (one device sync) and the plan is shared by those layers. A
    language-ID tap calls this in the middle of an encoder pass, for the layers above it.
    """
    routed = language_banks(model)
    if modules is not None:
        wanted = set(modules)
        unknown = sorted(wanted - set(routed))
        if unknown:
            raise KeyError(f"no language bank at {unknown[:4]}; the model's are {list(routed)[:4]}...")
        routed = {name: b for name, b in routed.items() if name in wanted}
    if weights is None:
        _set_plan(routed, None)
        return
    first = next(iter(routed.values()))
    _set_plan(routed, plan_routing(weights.to(first.lora_A.device), len(adapter_names(model))))


def set_shared_adapter(model: nn.Module, active: bool) -> None:
    """Turn the shared adapter (layout shared_below) on or off; a no-op for the other layouts."""
    _set_plan(shared_banks(model), single_adapter_plan(0) if active else None)


def set_routing_weights(model: nn.Module, weights: Optional[torch.Tensor]) -> None:
    """Route the model: language banks by `weights`, the shared adapter on; None = the base model."""
    set_language_routing(model, weights)
    set_shared_adapter(model, weights is not None)


def route_for_tap(model: nn.Module) -> None:
    """The state the blocks below a LID tap run in while the routing is undecided: language adapters off,
    the shared adapter (layout shared_below) on. What a head is trained on and what it sees decoding."""
    set_language_routing(model, None)
    set_shared_adapter(model, True)


def _adapter_index(model: nn.Module, name: str) -> int:
    order = adapter_names(model)
    if name not in order:
        raise KeyError(f"no adapter {name!r} in the model's LoRA bank; it holds {list(order)}")
    return order.index(name)


def set_active_adapter(model: nn.Module, name: Optional[str]) -> None:
    """Every sample through adapter `name` with weight 1 (and the shared adapter), whatever the batch
    size; None = the base model."""
    plan = None if name is None else single_adapter_plan(_adapter_index(model, name))
    _set_plan(language_banks(model), plan)
    set_shared_adapter(model, name is not None)


def one_hot_weights(model: nn.Module, names: Sequence[str]) -> torch.Tensor:
    """Oracle routing weights `[len(names), K]`: sample i entirely through adapter names[i]."""
    index = torch.tensor([_adapter_index(model, n) for n in names], dtype=torch.long)
    return torch.nn.functional.one_hot(index, len(adapter_names(model))).float()


@contextlib.contextmanager
def routing(model: nn.Module, weights: Optional[torch.Tensor]) -> Iterator[None]:
    """Route by `weights` inside the block; the previous routing of every bank is restored after."""
    previous = {name: bank.routing for name, bank in _require_banks(model).items()}
    set_routing_weights(model, weights)
    try:
        yield
    finally:
        for name, bank in banks(model).items():
            bank.routing = previous.get(name)


def reorder_routing_weights(model: nn.Module, index: torch.Tensor) -> None:
    """Make the routing follow a batch reorder/expansion (beam search): row i becomes old row index[i]."""
    replaced: Dict[int, Optional[RoutingPlan]] = {}
    for bank in _require_banks(model).values():
        plan = bank.routing
        if plan is None or plan.weights is None:
            continue
        if id(plan) not in replaced:
            weights = plan.weights.index_select(0, index.to(plan.weights.device))
            replaced[id(plan)] = plan_routing(weights, weights.size(-1))
        bank.routing = replaced[id(plan)]


def merge_adapter(model: nn.Module, name: str) -> None:
    """Fold adapter `name` into every language bank's base weight, and the shared adapter into the
    shared banks': the model as `name` sees it, at the base's cost (routing is ignored while merged)."""
    _adapter_index(model, name)
    for bank in _require_banks(model).values():
        bank.merge(SHARED if is_shared(bank) else name)


def unmerge_all(model: nn.Module) -> None:
    """Restore every bank's exact base weight."""
    for bank in banks(model).values():
        bank.unmerge()


def unwrapped_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """`model`'s state dict as if no bank were injected: each bank's base layer under the bank's own name
    (holding base + delta while an adapter is merged), no adapter factors. What exporters write as a plain model."""
    wrapped = banks(model)
    state = {}
    for key, tensor in model.state_dict().items():
        module, _, leaf = key.rpartition(".")
        if module in wrapped:
            continue  # lora_A / lora_B
        owner, _, part = module.rpartition(".")
        state[f"{owner}.{leaf}" if part == "base" and owner in wrapped else key] = tensor
    return state


def _holding(model: nn.Module, name: str) -> Dict[str, LoRABankLinear]:
    found = {module: bank for module, bank in _require_banks(model).items() if name in bank.names}
    if not found:
        raise KeyError(f"no adapter {name!r} in the model's LoRA banks; they hold "
                       f"{sorted({n for b in banks(model).values() for n in b.names})}")
    return found


def adapter_state_dict(model: nn.Module, name: str) -> Dict[str, torch.Tensor]:
    """Adapter `name` alone: `<module>.lora_A` [r, in] and `<module>.lora_B` [out, r] per bank that
    holds it (copies)."""
    state = {}
    for module, bank in _holding(model, name).items():
        k = bank.index(name)
        state[f"{module}.lora_A"] = bank.lora_A[k].detach().clone().contiguous()
        state[f"{module}.lora_B"] = bank.lora_B[k].detach().clone().contiguous()
    return state


def load_adapter_state_dict(model: nn.Module, name: str, state: Dict[str, torch.Tensor]) -> None:
    """Copy `state` (as `adapter_state_dict` makes it) into adapter slot `name` of every bank."""
    expected = adapter_state_dict(model, name)
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise ValueError(
            f"adapter state for {name!r} does not fit the model's LoRA bank: missing {missing[:4]} "
            f"({len(missing)}), unexpected {unexpected[:4]} ({len(unexpected)}); was it trained with "
            "other targets?"
        )
    bad = [f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
           if state[k].shape != v.shape]
    if bad:
        raise ValueError(f"adapter state for {name!r} has wrong shapes (rank or base mismatch): {bad[:4]}")
    with torch.no_grad():
        for module, bank in _holding(model, name).items():
            k = bank.index(name)
            bank.lora_A[k].copy_(state[f"{module}.lora_A"])
            bank.lora_B[k].copy_(state[f"{module}.lora_B"])


def parameter_counts(model: nn.Module) -> Dict[str, int]:
    """base: every non-adapter parameter; adapters: all lora_A/lora_B; per_adapter: one language
    adapter's share; shared: the shared adapter's; trainable: parameters with requires_grad (equal to
    `adapters` right after `inject`)."""
    found = banks(model)
    adapter_ids = {id(p) for b in found.values() for p in (b.lora_A, b.lora_B)}
    params = list(model.parameters())
    adapters = sum(p.numel() for p in params if id(p) in adapter_ids)
    share = lambda bs: sum(b.rank * (b.in_features + b.out_features) for b in bs)  # noqa: E731
    return {
        "base": sum(p.numel() for p in params if id(p) not in adapter_ids),
        "adapters": adapters,
        "per_adapter": share(b for b in found.values() if not is_shared(b)),
        "shared": share(b for b in found.values() if is_shared(b)),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
    }


def trainable_report(model: nn.Module) -> str:
    """Lines for the training log: layers wrapped, trainable count and its share of the base model."""
    info, counts = bank_info(model), parameter_counts(model)
    base = counts["base"]
    layout = info.layout
    lines = [
        f"LoRA bank: {len(info.modules)} layers, adapters {', '.join(info.names)}, rank {info.rank}, "
        f"alpha {info.alpha:g}, dropout {info.dropout:g}; layout {layout.kind}"
        + (f" (tap after encoder block {layout.tap_layer})" if layout.kind != "per_language" else ""),
        f"trainable parameters: {counts['trainable']:,} ({100 * counts['trainable'] / base:.3f}% of "
        f"{base:,} base parameters)",
        f"per adapter: {counts['per_adapter']:,} ({100 * counts['per_adapter'] / base:.3f}%) each for "
        f"{', '.join(info.names)}",
    ]
    if info.shared_modules:
        lines.append(f"shared adapter: {counts['shared']:,} ({100 * counts['shared'] / base:.3f}%) in "
                     f"{len(info.shared_modules)} layers below the tap, trained on every language")
    return "\n".join(lines)
