"""The models ESPnet's trainer sees: a registry model wrapped for training, LoRA-routed or fully fine-tuned.

`TrainingModel` holds what every trained model shares: on-the-fly augmentation, the optional 30 s
window, the check that stops a non-finite loss before the optimizer step, and `collect_feats`. ESPnet's
trainer calls it with the batch's data files as keyword arguments, the `lang` file (each utterance's
language index, written by prep.py) included.

`LoRARoutedModel` wraps an ESPnetASRModel (Whisper) or ESPnetS2TModel (OWSM) whose linears carry a
`LoRABankLinear` bank with one adapter per language; `lang` becomes oracle one-hot routing weights for
that forward, so a batch mixing languages trains every language's adapter in one pass over the shared
frozen base. Its state dict holds the adapters only (`model.<module>.lora_A/B`): the base is frozen,
rebuilt from the registry on every start and identified by its fingerprint, so ESPnet's checkpoint.pth,
epoch files and n-best averages stay a few MB instead of a full copy of the base per file, and
averaging them averages adapters only.

`FullFinetuneModel` trains every weight of the base (`--finetune full`, the reference system of the
LoRA results): no bank and no routing (`lang` is accepted and unused), and its state dict is the whole
model's, so every checkpoint file is a full copy.
"""
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from espnet_ext.errors import UserError
from espnet_ext.languages import ADAPTER_LANGUAGES, adapter_language
from espnet_ext.lora.adapter_files import CONFIG_NAME, AdapterFileError, check_base, load_adapter, read_adapter_config
from espnet_ext.lora.inject import SHARED, BankLayout, banks, inject, resolve_targets, routing, shared_banks
from espnet_ext.models.espnet_import import import_espnet_module
from espnet_ext.train.augment import AugmentConfig, WaveformAugment
from espnet_ext.train.loss import TokenLabelSmoothingLoss

FINETUNE_CHOICES = ("lora", "full")  # --finetune: LoRARoutedModel or FullFinetuneModel
_AbsESPnetModel = import_espnet_module("espnet2.train.abs_espnet_model").AbsESPnetModel


class NonFiniteLossError(UserError, RuntimeError):
    """A batch produced a NaN/inf loss; raised before it can reach the trained weights."""


@dataclass(frozen=True)
class LoRAConfig:
    """`lora_conf` of a training config: which linears get adapters, their size, and the languages."""

    languages: Tuple[str, ...]
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    targets: Tuple[str, ...] = ("whisper_attn_qv",)
    layout: str = "per_language"  # per_language | above_tap | shared_below (espnet_ext.lora.inject)
    tap_layer: int = 0  # encoder blocks below the language-ID tap (above_tap, shared_below)

    @classmethod
    def from_dict(cls, conf: Mapping[str, Any]) -> "LoRAConfig":
        """Parse and check `lora_conf` (a typo or an unknown language is an error, never ignored)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(conf) - known)
        if unknown:
            raise ValueError(f"lora_conf: unknown key(s) {unknown}; known: {sorted(known)}")
        if not conf.get("languages"):
            raise ValueError(f"lora_conf.languages is empty; list adapter languages from {ADAPTER_LANGUAGES}")
        for field in ("languages", "targets"):
            if isinstance(conf.get(field), str):
                raise ValueError(f"lora_conf.{field} must be a list, got the string {conf[field]!r}")
        config = cls(**{**conf, "languages": tuple(conf["languages"]),
                        "targets": tuple(conf.get("targets", cls.targets))})
        for lang in config.languages:
            adapter_language(lang, "lora_conf.languages")
        if len(set(config.languages)) != len(config.languages):
            raise ValueError(f"lora_conf.languages has duplicates: {list(config.languages)}")
        if config.rank < 1 or config.alpha <= 0 or not 0 <= config.dropout < 1:
            raise ValueError(f"lora_conf: need rank >= 1, alpha > 0, 0 <= dropout < 1; got {config}")
        try:
            BankLayout(config.layout, config.tap_layer)
        except ValueError as e:
            raise ValueError(f"lora_conf: {e}") from None
        return config

    def bank_layout(self, family, asr_model: torch.nn.Module) -> BankLayout:
        """The layout on `asr_model`: the encoder blocks below the tap are the family's first k."""
        blocks = family.encoder_block_names(asr_model)
        if self.tap_layer > len(blocks):
            raise ValueError(f"lora_conf.tap_layer {self.tap_layer}: the encoder has only {len(blocks)} blocks")
        return BankLayout(self.layout, self.tap_layer, tuple(blocks[: self.tap_layer]))


class TrainingModel(_AbsESPnetModel):
    """A registry model as ESPnet trains it: augmentation, the 30 s window, the NaN guard (module docstring)."""

    def __init__(self, model: torch.nn.Module, family, pad_to_30s: bool, augment: AugmentConfig = AugmentConfig()):
        super().__init__()
        self.model = model
        self.family = family  # the registry model's family (espnet_ext.models.family): its window
        self.pad_to_30s = pad_to_30s
        self.augment = WaveformAugment(augment)  # the identity unless training with an active config

    def forward(self, speech: torch.Tensor, speech_lengths: torch.Tensor, text: torch.Tensor,
                text_lengths: torch.Tensor, lang: torch.Tensor, lang_lengths: torch.Tensor,
                utt_id: Optional[Sequence[str]] = None, **kwargs):
        """ESPnet's (loss, stats, weight) of the wrapped model on the augmented batch."""
        context = self._forward_context(lang, utt_id)
        speech, speech_lengths = self.augment(speech, speech_lengths)
        if self.pad_to_30s:
            speech, speech_lengths = self.family.pad_to_window(speech, speech_lengths)
        with context:
            loss, stats, weight = self.model(speech, speech_lengths, text, text_lengths, **kwargs)
        if not torch.isfinite(loss).all():
            raise NonFiniteLossError(self._non_finite_message(loss, speech, utt_id))
        return loss, stats, weight

    def _forward_context(self, lang: torch.Tensor, utt_id: Optional[Sequence[str]]) -> ContextManager:
        """What the wrapped model runs under for this batch: nothing here; subclasses route."""
        return contextlib.nullcontext()

    def _non_finite_message(self, loss: torch.Tensor, speech: torch.Tensor, utt_id) -> str:
        """Name the batch, and the utterances in it whose audio itself is not finite."""
        utts = list(utt_id or [])
        bad_audio = [u for u, row in zip(utts, speech) if not bool(torch.isfinite(row).all())]
        return (
            f"the {'training' if self.training else 'validation'} loss is {loss.detach().float().item()} on the "
            f"batch of utterances {utts} (non-finite audio samples in: {bad_audio or 'none'}); stopped before it "
            "could reach the trained weights. Fix or drop those utterances, or lower optim_conf.lr if their "
            "audio is fine; the checkpoint of the last finished epoch is intact (continue with --resume true)"
        )

    def collect_feats(self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs) -> Dict[str, torch.Tensor]:
        return self.model.collect_feats(speech, speech_lengths, **kwargs)


class LoRARoutedModel(TrainingModel):
    """A LoRA-banked ESPnet model routed per utterance by the `lang` data file (module docstring)."""

    def __init__(self, model: torch.nn.Module, family, languages: Sequence[str], pad_to_30s: bool,
                 augment: AugmentConfig = AugmentConfig()):
        super().__init__(model, family, pad_to_30s, augment)
        self.languages = tuple(languages)
        self._adapter_keys = frozenset(
            f"model.{name}.{matrix}" for name in banks(model) for matrix in ("lora_A", "lora_B")
        )
        if not self._adapter_keys:
            raise ValueError("LoRARoutedModel needs a model with a LoRA bank (espnet_ext.lora.inject.inject)")

    def _forward_context(self, lang: torch.Tensor, utt_id: Optional[Sequence[str]]) -> ContextManager:
        """Each utterance through its own language's adapter."""
        return routing(self.model, self._oracle_weights(lang, utt_id))

    def _oracle_weights(self, lang: torch.Tensor, utt_id: Optional[Sequence[str]]) -> torch.Tensor:
        """One-hot routing weights `[batch, K]` from the `lang` file's adapter indices."""
        index = lang[:, 0].long()
        bad = (index < 0) | (index >= len(self.languages))
        if bool(bad.any()):
            names = [utt_id[i] for i in bad.nonzero().flatten().tolist()] if utt_id else []
            raise ValueError(
                f"the lang data file gives adapter indices {index[bad].tolist()} (utterances {names}) outside "
                f"0..{len(self.languages) - 1} for {list(self.languages)}; regenerate the exp dir's data/ with "
                "espnet_ext.bin.train_lora"
            )
        return F.one_hot(index, len(self.languages)).float()

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        """The adapters only (see the module docstring); also when nested in DDP (`prefix` set)."""
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        for key in [k for k in state if k.startswith(prefix) and k[len(prefix):] not in self._adapter_keys]:
            del state[key]
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Load adapters; with `strict`, the keys must be exactly this bank's adapters."""
        missing = sorted(self._adapter_keys - set(state_dict))
        unexpected = sorted(set(state_dict) - self._adapter_keys)
        if strict and (missing or unexpected):
            raise RuntimeError(
                f"the checkpoint does not fit this LoRA bank: missing {missing[:4]} ({len(missing)}), "
                f"unexpected {unexpected[:4]} ({len(unexpected)}); was it trained with other lora_conf "
                "targets/languages, or is it a full-model checkpoint?"
            )
        kept = {k: v for k, v in state_dict.items() if k in self._adapter_keys}
        result = super().load_state_dict(kept, strict=False, assign=assign)
        return type(result)(missing, unexpected)  # the frozen base's keys are not "missing"


class FullFinetuneModel(TrainingModel):
    """Every weight of the base trained, no routing; its state dict is the whole model (module docstring)."""

    def trainable_report(self) -> str:
        """The training log's line: how many parameters train, of how many."""
        params = list(self.model.parameters())
        total = sum(p.numel() for p in params)
        trainable = sum(p.numel() for p in params if p.requires_grad)
        return f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.1f}%)"


def _use_token_loss(asr_model: torch.nn.Module) -> None:
    """ESPnet's attention-decoder loss, same value, computed on the target rows only (loss.py)."""
    asr_model.criterion_att = TokenLabelSmoothingLoss.like(asr_model.criterion_att)


def build_lora_model(asr_model: torch.nn.Module, family, conf: LoRAConfig, pad_to_30s: bool,
                     augment: AugmentConfig = AugmentConfig()) -> LoRARoutedModel:
    """Inject `conf`'s bank into `asr_model` (a registry model of `family`; everything else frozen) and
    wrap it for routed training."""
    inject(asr_model, conf.targets, conf.rank, conf.alpha, conf.languages, conf.dropout,
           conf.bank_layout(family, asr_model))
    _use_token_loss(asr_model)
    return LoRARoutedModel(asr_model, family, conf.languages, pad_to_30s, augment)


def _one_language(languages: Sequence[str]) -> str:
    """The one language a transfer run trains: initialising several adapters from one would make them equal."""
    if len(languages) != 1:
        raise ValueError(f"--init_adapter_dir starts one language's adapter from another's; this run trains "
                         f"{list(languages)}: train on one language's data (a per-language run, --lang <Y>)")
    return languages[0]


def check_init_adapter(adapter_dir: Path, conf: LoRAConfig, config_path: Path, base_name: str,
                       base_fingerprint: str) -> Dict[str, Any]:
    """Before any data is prepared: the adapter a few-shot run starts from (`--init_adapter_dir`, X's
    `<exp>/adapters/<X>`) was trained on this base with the rank, alpha, targets and layout that `conf`
    (from `config_path`) trains, and the run trains one language. Copying weights of another shape or
    scale would start from something X never was. Returns the record exported configs carry, `init_from`."""
    _one_language(conf.languages)
    adapter_dir = Path(adapter_dir)
    source = read_adapter_config(adapter_dir)
    check_base(source, adapter_dir, base_name, base_fingerprint)
    layouts = (BankLayout.from_record(source.get("layout")).describe(),
               BankLayout(conf.layout, conf.tap_layer).describe())
    problems = [f"{name} {theirs} vs {ours}" for name, theirs, ours, same in (
        ("rank", source["rank"], conf.rank, source["rank"] == conf.rank),
        ("alpha", source["alpha"], conf.alpha, source["alpha"] == conf.alpha),
        ("targets", source["targets"], list(conf.targets),
         set(resolve_targets(source["targets"])) == set(resolve_targets(conf.targets))),
        ("layout", *layouts, layouts[0] == layouts[1]),
    ) if not same]
    if problems:
        raise AdapterFileError(f"--init_adapter_dir: {adapter_dir / CONFIG_NAME} does not fit the bank that "
                               f"{config_path} trains ({'; '.join(problems)}); train with that adapter's rank, "
                               "alpha, targets and layout, or start from an adapter trained like this run")
    record = {"adapter_dir": str(adapter_dir), "language": source["language"]}
    if conf.layout == "shared_below":
        check_base(read_adapter_config(adapter_dir.parent / SHARED), adapter_dir.parent / SHARED, base_name,
                   base_fingerprint)
        record["shared_dir"] = str(adapter_dir.parent / SHARED)
    return record


def init_language_adapter(model: LoRARoutedModel, adapter_dir: Path, base_name: str, base_fingerprint: str) -> None:
    """Few-shot transfer: start the run's one language adapter from adapter `adapter_dir` (both A and B),
    and the shared adapter from that bank's `shared/` where the layout has one, instead of LoRA's
    initialisation (B = 0, the base model). load_adapter refuses an adapter that does not fit the bank."""
    slot = _one_language(model.languages)
    load_adapter(model.model, adapter_dir, base_name, base_fingerprint, name=slot)
    if shared_banks(model.model):
        load_adapter(model.model, Path(adapter_dir).parent / SHARED, base_name, base_fingerprint, name=SHARED)


def build_full_model(asr_model: torch.nn.Module, family, pad_to_30s: bool,
                     augment: AugmentConfig = AugmentConfig()) -> FullFinetuneModel:
    """Make every weight of `asr_model` (a registry model of `family`) trainable and wrap it for training
    (the reference system)."""
    asr_model.requires_grad_(True)
    _use_token_loss(asr_model)
    return FullFinetuneModel(asr_model, family, pad_to_30s, augment)
