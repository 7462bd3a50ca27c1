"""`LoRAASRTask`: ESPnet's ASRTask training per-language LoRA adapters on a frozen registry model, or
(`--finetune full`, the reference system) every weight of that model.

Everything ESPnet's task machinery offers keeps working unchanged (config files, data loading and
batch samplers, optimisers and schedulers, `--resume`, n-best averaging, tensorboard, wandb, DDP);
only the model differs:

- `build_model` loads the base from espnet_ext.models.registry (`--base_model`, its checkpoint and
  fingerprint), injects the LoRA bank described by `--lora_conf`, freezes the base and returns a
  `LoRARoutedModel` that routes each utterance through its language's adapter (`lang` data file);
  with `--finetune full` it injects nothing, ignores `--lora_conf` and returns a `FullFinetuneModel`
  whose every weight trains.
- The architecture is the registry's: its encoder/decoder/model_conf are copied into the args (so
  config.yaml describes the model actually trained) and a config that sets them differently is refused
  rather than silently ignored.
- `--base_fingerprint` (written into config.yaml) makes a resumed run refuse a changed base.
- Augmentation is training-only, so it is not part of the architecture: ESPnet's own `specaug` /
  `specaug_conf` options attach ESPnet's SpecAug where the model computes its features, and
  `--augment_conf` adds on-the-fly speed perturbation and noise (augment.py).
- `--init_adapter_dir <exp>/adapters/<X>` (few-shot transfer, a one-language run) starts the language's
  adapter from X's weights, and the shared adapter from X's bank's (model.init_language_adapter).
- `--hold_absent_adapters true` hooks the optimizer so that a step leaves the adapters of languages
  absent from its batch untouched (absent_adapters.py); off by default, as measured.

Data files (see prep.py): speech (sound), text (text_int with the prompt), lang (text_int), and for
OWSM text_prev/text_ctc. `--use_preprocessor false`: the text is tokenised already.
"""
import argparse
import logging
from pathlib import Path
from typing import List, Tuple

import torch

from espnet_ext.lora.inject import trainable_report
from espnet_ext.models.espnet_import import asr_task, import_espnet_module
from espnet_ext.models.registry import LoadedModel, load_model
from espnet_ext.train.absent_adapters import hold_absent_adapters
from espnet_ext.train.augment import AugmentConfig
from espnet_ext.train.checkpointing import enable_gradient_checkpointing
from espnet_ext.train.model import (
    FINETUNE_CHOICES,
    LoRAConfig,
    TrainingModel,
    build_full_model,
    build_lora_model,
    init_language_adapter,
)
from espnet_ext.train.trainer import LoRATrainer

_types = import_espnet_module("espnet2.utils.types")
# ESPnet model options that only act in training: a config may set them whatever the registry says
TRAINING_ONLY_OPTIONS = ("specaug", "specaug_conf")
_NestedDictAction = import_espnet_module("espnet2.utils.nested_dict_action").NestedDictAction


class LoRAASRTask(asr_task()):
    """ASRTask whose model is a registry base + routed LoRA bank, or the base fine-tuned (module docstring)."""

    trainer = LoRATrainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_task_arguments(parser)
        group = parser.add_argument_group("LoRA adapters (espnet_ext)")
        group.add_argument("--base_model", default="whisper_base",
                           help="registry name of the frozen base (python -m espnet_ext.models.registry)")
        group.add_argument("--base_model_path", type=_types.str_or_none, default=None,
                           help="local weights for registry models that need them")
        group.add_argument("--base_fingerprint", type=_types.str_or_none, default=None,
                           help="refuse a base whose weight fingerprint differs (recorded in config.yaml)")
        group.add_argument("--finetune", choices=FINETUNE_CHOICES, default="lora",
                           help="lora: per-language adapters on the frozen base; full: every base weight "
                                "(the reference system; lora_conf is ignored)")
        group.add_argument("--lora_conf", action=_NestedDictAction, default={},
                           help="languages, rank, alpha, dropout, targets (preset names or patterns), "
                                "e.g. --lora_conf rank=8")
        group.add_argument("--pad_to_30s", type=_types.str2bool, default=False,
                           help="train on the 30 s window (zero padding) instead of the real length")
        group.add_argument("--augment_conf", action=_NestedDictAction, default={},
                           help="speed_factors, noise_prob, noise_snr_db (espnet_ext/train/augment.py), "
                                "e.g. --augment_conf noise_prob=0.5")
        group.add_argument("--gradient_checkpointing", type=_types.str2bool, default=False,
                           help="recompute each transformer block's activations in backward (GPU memory)")
        group.add_argument("--init_adapter_dir", type=_types.str_or_none, default=None,
                           help="few-shot transfer: start the one trained language's adapter from this adapter "
                                "directory (<exp>/adapters/<X>), and the shared adapter from its bank's shared/ "
                                "(layout shared_below); default: LoRA's initialisation (B = 0)")
        group.add_argument("--hold_absent_adapters", type=_types.str2bool, default=False,
                           help="joint training: an optimizer step leaves the adapters of languages absent "
                                "from its batch untouched, Adam moments included (sparse-Adam semantics; "
                                "espnet_ext/train/absent_adapters.py). Off: plain AdamW, which the default "
                                "corpus trains better with (README, Stage 3 ablations)")

    @classmethod
    def build_optimizers(cls, args: argparse.Namespace, model: torch.nn.Module) -> List[torch.optim.Optimizer]:
        optimizers = super().build_optimizers(args, model)
        if args.hold_absent_adapters:
            for optimizer in optimizers:
                hold_absent_adapters(optimizer, model)
        return optimizers

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("speech",) if inference else ("speech", "text", "lang")

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("text_prev", "text_ctc")  # OWSM's previous-sentence and CTC targets

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> TrainingModel:
        loaded = load_model(args.base_model, model_path=args.base_model_path)
        if args.base_fingerprint and args.base_fingerprint != loaded.fingerprint:
            raise ValueError(
                f"base model {args.base_model} has weight fingerprint {loaded.fingerprint}, but this "
                f"training was set up for {args.base_fingerprint}: its weights changed since. Restore them "
                f"or start a new exp dir instead of resuming {args.output_dir}"
            )
        args.base_fingerprint = loaded.fingerprint
        _check_token_list(args, loaded)
        _adopt_registry_architecture(cls, args, loaded)
        if not loaded.family.real_length and not args.pad_to_30s:
            raise ValueError(f"{loaded.name} is decoded on its 30 s window ({loaded.family.name} has no real-length "
                             "mode); train it the same way: set pad_to_30s: true in the config")
        if args.specaug is not None:
            specaug_class = next(c for c in cls.class_choices_list if c.name == "specaug").get_class(args.specaug)
            loaded.family.set_specaug(loaded.asr_model, specaug_class(**args.specaug_conf))
        model = _build_training_model(args, loaded)
        if args.gradient_checkpointing:
            blocks = enable_gradient_checkpointing(loaded.asr_model, loaded.family)
            logging.info("gradient checkpointing: %d transformer blocks", blocks)
        return model


def finetune_mode(args: argparse.Namespace) -> str:
    """`--finetune`, checked: ESPnet's parser does not check a config file's values against `choices`."""
    if args.finetune not in FINETUNE_CHOICES:
        raise ValueError(f"finetune: {args.finetune!r} is not one of {FINETUNE_CHOICES}")
    return args.finetune


def _build_training_model(args: argparse.Namespace, loaded: LoadedModel) -> TrainingModel:
    """The LoRA-routed or the fully fine-tuned model, with a log line of what trains."""
    augment = AugmentConfig.from_dict(args.augment_conf)
    if finetune_mode(args) == "full":
        model = build_full_model(loaded.asr_model, loaded.family, args.pad_to_30s, augment)
        if args.lora_conf:
            logging.info("finetune full: lora_conf %s is ignored (no adapters)", args.lora_conf)
        logging.info("full fine-tuning of %s (fingerprint %s): %s", loaded.name, loaded.fingerprint,
                     model.trainable_report())
        return model
    model = build_lora_model(loaded.asr_model, loaded.family, LoRAConfig.from_dict(args.lora_conf), args.pad_to_30s, augment)
    if args.init_adapter_dir:
        init_language_adapter(model, Path(args.init_adapter_dir), loaded.name, loaded.fingerprint)
        logging.info("adapter %s starts from %s", model.languages[0], args.init_adapter_dir)
    logging.info("LoRA on %s (fingerprint %s):\n%s", loaded.name, loaded.fingerprint, trainable_report(model.model))
    return model


def _check_token_list(args: argparse.Namespace, loaded: LoadedModel) -> None:
    """The text_int targets were made with the token list in --token_list: it must be the model's."""
    if not args.token_list:
        raise ValueError("--token_list is required: the token list the text_int targets were made with")
    path = Path(args.token_list)
    tokens = path.read_text(encoding="utf-8").split("\n")[:-1]
    if tokens != list(loaded.config["token_list"]):
        raise ValueError(
            f"{path} ({len(tokens)} tokens) is not the token list of {loaded.name} "
            f"({len(loaded.config['token_list'])} tokens); the exp dir was prepared for another model. "
            "Prepare it again with espnet_ext.bin.train_lora"
        )


def _adopt_registry_architecture(task, args: argparse.Namespace, loaded: LoadedModel) -> None:
    """Copy the registry's model options into `args`; refuse a config that set them otherwise."""
    parser = task.get_parser()
    for key, value in loaded.config.items():
        if key in ("token_list",) + TRAINING_ONLY_OPTIONS or not hasattr(args, key):
            continue
        current = getattr(args, key)
        if current != value and current != parser.get_default(key):
            raise ValueError(
                f"config option {key}: {current!r} cannot apply: the architecture of {loaded.name} is fixed "
                f"by the registry ({key}: {value!r}); remove {key} from the training config"
            )
        setattr(args, key, value)
