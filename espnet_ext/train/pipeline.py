"""Stage 3 end to end: prepare an exp dir, train through ESPnet's trainer, export the adapters (or, with
`--finetune full`, the fully fine-tuned model).

    <exp>/train_lora_args.yaml   the options of the last run that passed its checks (espnet_ext.bin.train_lora)
    <exp>/conf/<config>.yaml     the training config as given
    <exp>/tokens.txt             the base model's token list (the text_int targets index it)
    <exp>/data/{train,valid}/    ESPnet's data and shape files (prep.py)
    <exp>/config.yaml            ESPnet's resolved config: every option, the seed, the base fingerprint
    <exp>/checkpoint.pth, <N>epoch.pth, valid.loss.best.pth, ..., tensorboard/, images/   (ESPnet)
    <exp>/adapters/<lang>/       the exported adapters (export.py); `init_from` in their configs when the
                                 run started from another adapter (--init_adapter_dir, few-shot transfer)
    <exp>/full_model/            instead, with --finetune full: the exported model (export.py)

A new run refuses an exp dir that already holds a checkpoint (continue it with resume, or remove it);
a resumed run refuses a base model whose weights changed since the run started, or another --finetune.

Several processes (DDP through ESPnet's own distributed path: `--ngpu N` spawns one process per GPU;
a launcher such as torchrun or srun starts one process per GPU, `--ngpu 1`, or per CPU, `--ngpu 0`):
every process a launcher started runs this pipeline on the same exp dir, but only rank 0 writes into
it: the data files, train_lora_args.yaml, ESPnet's checkpoints (ESPnet's rule) and the adapters. The
other processes check the same options and give ESPnet the same file names; ESPnet reads the files only
after its rendezvous (`torch.distributed.init_process_group`), which waits for rank 0, and rank 0 gets
there only once they are written. ESPnet gives rank r the utterances r, r + world_size, ... of each
batch, so `batch_bins` is the global batch and the run trains what one process would
(tests/train/test_ddp.py). The exp dir must be on a file system that every node sees.
"""
import argparse
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import yaml

from espnet_ext.data.kaldi import read_data_dir
from espnet_ext.fileio import atomic_write_text, yaml_syntax_error
from espnet_ext.languages import ADAPTER_LANGUAGES
from espnet_ext.models.espnet_import import import_espnet_module
from espnet_ext.models.registry import LoadedModel, load_model
from espnet_ext.train import targets as training_targets
from espnet_ext.train.export import export_adapters, export_full_model, read_training_config
from espnet_ext.train.model import LoRAConfig, build_full_model, build_lora_model, check_init_adapter
from espnet_ext.train.prep import PreparedSet, prepare_set, prepared_elsewhere
from espnet_ext.train.task import LoRAASRTask, finetune_mode

log = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    """What one stage-3 training needs; `espnet_args` go to ESPnet's trainer as they are."""

    model: str
    train_dir: Path
    valid_dir: Path
    exp_dir: Path
    config: Path
    model_path: Optional[str] = None
    finetune: Optional[str] = None  # lora | full; None: the config's (default lora)
    lora_rank: Optional[int] = None
    lora_alpha: Optional[float] = None
    ngpu: int = 0
    resume: bool = False
    use_amp: bool = False
    use_wandb: bool = False
    export: str = "best"
    espnet_args: List[str] = field(default_factory=list)


def _check_exp_dir(options: TrainOptions, loaded: LoadedModel, finetune: str) -> None:
    """A fresh run never overwrites a training; a resumed one never continues on another base or kind."""
    exp = options.exp_dir
    if not options.resume and (exp / "checkpoint.pth").exists():
        raise ValueError(f"{exp} already holds a training (checkpoint.pth); continue it with --resume true, "
                         "or remove the dir to start over")
    if options.resume and (exp / "config.yaml").is_file():
        previous = read_training_config(exp)
        if (previous["base_model"], previous["base_fingerprint"]) != (loaded.name, loaded.fingerprint):
            raise ValueError(
                f"{exp} was trained on {previous['base_model']} (fingerprint {previous['base_fingerprint']}) but "
                f"the base is now {loaded.name} ({loaded.fingerprint}); resume with the same base, or use a new "
                "exp dir"
            )
        if previous.get("finetune", "lora") != finetune:  # config.yaml of runs older than --finetune: lora
            raise ValueError(f"{exp} holds a --finetune {previous.get('finetune', 'lora')} training; resume it "
                             f"as such, or use a new exp dir for --finetune {finetune}")


def _languages(resolved: argparse.Namespace, train_dir: Path) -> List[str]:
    """lora_conf.languages as ESPnet will see it, else the training data's, in the language table's order."""
    named = resolved.lora_conf.get("languages") if resolved.finetune == "lora" else None
    if named:
        return list(named)
    present = {utt.lang for utt in read_data_dir(train_dir)}
    return [code for code in ADAPTER_LANGUAGES if code in present]


def _check_coverage(train: PreparedSet, languages: Sequence[str]) -> None:
    """Every adapter needs training data: an untrained one would be exported as if it were trained."""
    missing = [lang for lang in languages if not train.per_language.get(lang)]
    if missing:
        raise ValueError(f"{train.source} has no usable utterances for {missing}, which lora_conf.languages "
                         "lists; add data for them or remove them from lora_conf.languages")


def _prepare(options: TrainOptions, loaded: LoadedModel, languages: Sequence[str],
             rank: int) -> Dict[str, PreparedSet]:
    exp = options.exp_dir
    targets = training_targets.for_model(loaded)
    sets = {"train": (options.train_dir, exp / "data" / "train"), "valid": (options.valid_dir, exp / "data" / "valid")}
    if rank != 0:  # rank 0 writes them before ESPnet's rendezvous, where this process waits (module docstring)
        return {mode: prepared_elsewhere(source, out, targets) for mode, (source, out) in sets.items()}
    prepared = {mode: prepare_set(source, out, targets, languages) for mode, (source, out) in sets.items()}
    _check_coverage(prepared["train"], languages)
    atomic_write_text(exp / "tokens.txt", "".join(f"{token}\n" for token in loaded.config["token_list"]))
    (exp / "conf").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(options.config, exp / "conf" / options.config.name)
    return prepared


def espnet_command(options: TrainOptions, loaded: LoadedModel) -> List[str]:
    """LoRAASRTask's command line without the data: the config, our overrides, then `espnet_args`."""
    exp = options.exp_dir
    args = ["--config", str(options.config), "--output_dir", str(exp), "--token_list", str(exp / "tokens.txt"),
            "--base_model", loaded.name, "--base_fingerprint", loaded.fingerprint, "--use_preprocessor", "false",
            "--ngpu", str(options.ngpu), "--resume", str(options.resume).lower(),
            "--use_amp", str(options.use_amp).lower(), "--use_wandb", str(options.use_wandb).lower()]
    args += _distributed_defaults(options.ngpu)
    if options.model_path:
        args += ["--base_model_path", options.model_path]
    if options.finetune:
        args += ["--finetune", options.finetune]
    if options.lora_rank is not None:
        args += ["--lora_conf", f"rank={options.lora_rank}"]
    if options.lora_alpha is not None:
        args += ["--lora_conf", f"alpha={options.lora_alpha}"]
    return args + list(options.espnet_args)


def _distributed_defaults(ngpu: int) -> List[str]:
    """ESPnet's distributed options that follow from --ngpu (any given in the espnet args still win).

    --ngpu N > 1: one process per GPU (DDP), spawned by ESPnet, as ESPnet's asr.sh asks with
    --multiprocessing_distributed true; ESPnet's own default (false) would run one process with
    torch's DataParallel instead. --ngpu 0: the gloo backend, so that a run started by a launcher
    (torchrun, srun) on CPUs works; ESPnet's default, nccl, cannot use CPU tensors. Without a launcher
    (WORLD_SIZE unset, or 1) an --ngpu 0 or 1 run is one process, whatever these options say."""
    if ngpu > 1:
        return ["--multiprocessing_distributed", "true"]
    return ["--dist_backend", "gloo"] if ngpu == 0 else []


def _rank(resolved: argparse.Namespace) -> int:
    """This process's rank among those a launcher started, as ESPnet's distributed_utils reads it
    (RANK, or SLURM_PROCID with --dist_launcher slurm, or --dist_rank): 0 when not distributed, and
    for the parent process that spawns one process per GPU on the first node."""
    dist = import_espnet_module("espnet2.train.distributed_utils")
    args = argparse.Namespace(**vars(resolved))  # resolve_distributed_mode sets options on what it gets
    dist.resolve_distributed_mode(args)
    if not args.distributed:
        return 0
    if args.multiprocessing_distributed:  # this process spawns the node's; RANK is the node's rank
        return dist.get_node_rank(args.dist_rank, args.dist_launcher) or 0
    return dist.get_rank(args.dist_rank, args.dist_launcher)


def launched_rank(options: TrainOptions) -> int:
    """`_rank` of the run `options` describe, before anything is loaded or written: only rank 0 takes
    the exp dir's training lock (train_lora), the other processes of its run must not wait for it."""
    command = ["--ngpu", str(options.ngpu), *_distributed_defaults(options.ngpu), *options.espnet_args]
    if options.config.is_file():  # a missing config is run_training's error to report
        command = ["--config", str(options.config), *command]
    return _rank(_resolve(command))


def _resolve(command: List[str]) -> argparse.Namespace:
    """Parse the command as ESPnet will (config file, then flags), so we prepare what it will train; a
    config (or a key=value option) that is not valid YAML is a one-line error naming where."""
    try:
        return LoRAASRTask.get_parser().parse_args(command)
    except yaml.YAMLError as err:
        raise yaml_syntax_error(err) from None


def run_training(options: TrainOptions, validated: Optional[Callable[[], None]] = None) -> Dict[str, Path]:
    """Prepare, train (ESPnet's LoRAASRTask.main) and export; returns each exported directory by name
    (the languages' adapters, or `full_model`). `validated` runs once the config, the exp dir and the
    data have passed every check, just before ESPnet trains: what a run that fails its checks must not
    overwrite is written there (train_lora: the record of the options that trained the exp dir).
    In a run of several processes (module docstring) only rank 0 prepares, calls `validated` and
    exports; the others return {} once ESPnet's training is done."""
    if not options.config.is_file():
        raise FileNotFoundError(f"training config {options.config} does not exist (see conf/tuning/train_*.yaml)")
    options.exp_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_model(options.model, model_path=options.model_path)
    command = espnet_command(options, loaded)
    resolved = _resolve(command)
    finetune = finetune_mode(resolved)
    _check_exp_dir(options, loaded, finetune)
    languages = _languages(resolved, options.train_dir)
    init_from = _init_from(resolved, finetune, languages, options.config, loaded)
    rank = _rank(resolved)
    prepared = _prepare(options, loaded, languages, rank)
    if finetune == "lora":
        command += ["--lora_conf", f"languages={json.dumps(languages)}"]
    command += prepared["train"].espnet_args("train") + prepared["valid"].espnet_args("valid")
    if validated is not None and rank == 0:
        validated()
    log.info("training %s (--finetune %s) on %s in %s", loaded.name, finetune, languages, options.exp_dir)
    LoRAASRTask.main(cmd=command)
    if rank != 0:
        return {}
    data = {f"{mode}_data": {"dir": str(p.source), "utterances": p.per_language} for mode, p in prepared.items()}
    return _export(options, loaded, {**data, **({"init_from": init_from} if init_from else {})})


def _init_from(resolved: argparse.Namespace, finetune: str, languages: Sequence[str], config: Path,
               loaded: LoadedModel) -> Optional[Dict[str, str]]:
    """`--init_adapter_dir`, checked before any data is prepared; the record the exported configs carry."""
    if not resolved.init_adapter_dir:
        return None
    if finetune != "lora":
        raise ValueError(f"--init_adapter_dir starts a LoRA adapter from another; --finetune {finetune} trains none")
    conf = LoRAConfig.from_dict({**resolved.lora_conf, "languages": languages})
    return check_init_adapter(Path(resolved.init_adapter_dir), conf, config, loaded.name, loaded.fingerprint)


def _export(options: TrainOptions, loaded: LoadedModel, data: Dict[str, dict]) -> Dict[str, Path]:
    """Export what ESPnet trained, as its config.yaml describes it, onto the unmodified base `loaded`."""
    exp, trained = options.exp_dir, read_training_config(options.exp_dir)
    if trained["finetune"] == "full":
        model = build_full_model(loaded.asr_model, loaded.family, trained["pad_to_30s"])
        return {"full_model": export_full_model(exp, model, loaded.name, loaded.fingerprint, options.export, data)}
    model = build_lora_model(loaded.asr_model, loaded.family, LoRAConfig.from_dict(trained["lora_conf"]), trained["pad_to_30s"])
    return export_adapters(exp, model, loaded.name, loaded.fingerprint, options.export, data)
