#!/usr/bin/env python3
"""Train per-language LoRA adapters on a frozen base through ESPnet's trainer (stage 3 of the recipe), or,
with `--finetune full`, every weight of the base: the full fine-tuning reference system.

Usage:
    python -m espnet_ext.bin.train_lora --model whisper_base --train_dir data/train_all \
        --valid_dir data/dev_all --exp_dir exp/whisper_base_all_r16 \
        --config conf/tuning/train_lora_whisper_base_r16.yaml [--lora_rank 8] [--ngpu 1] [--resume true]
    python -m espnet_ext.bin.train_lora --model whisper_base --train_dir data/train_all \
        --valid_dir data/dev_all --exp_dir exp/whisper_base_all_full \
        --config conf/tuning/train_full_whisper_base.yaml --finetune full

Few-shot transfer: on a one-language training (train_dir of one language, e.g. a 25-utterance subset made
by espnet_ext.analysis.transfer.few_shot_subset), `--init_adapter_dir exp/whisper_base_all_r16/adapters/hi`
starts that language's adapter from hi's weights (and the shared adapter from that bank's shared/) instead
of LoRA's initialisation; the exported adapter_config.json records it as `init_from`. An adapter of
another rank, alpha, targets, layout or base is refused, naming its file and the training config.

Writes the exp dir (see espnet_ext/train/pipeline.py): ESPnet's data/shape files and token list, the
training itself (config.yaml with every option and the seed, checkpoint.pth, epoch files, tensorboard/),
then `adapters/<lang>/{adapter_config.json,adapter_model.safetensors}` (with --finetune full:
`full_model/{model_config.json,model.safetensors}`, decoded with `espnet_ext.bin.decode --finetuned_dir`)
from the best epoch by the config's first best_model_criterion (`--export latest|ave` for the others).

Any option not listed below goes to ESPnet's trainer as it is (it overrides the config), e.g.
`--max_epoch 5 --seed 3 --accum_grad 2 --patience 3 --lora_conf dropout=0.1`; `--help` lists ours,
`python -c "from espnet_ext.train.task import LoRAASRTask as T; T.get_parser().print_help()"` ESPnet's.
Resuming (`--resume true`) continues from the last finished epoch, or with `--save_every_n_steps N`
from the last step checkpoint within the epoch (espnet_ext/train/trainer.py); either way the result is
bit-identical to an uninterrupted run's. One training at a time per exp dir: a second one started on
it stops at once, naming the process that holds `<exp_dir>/.train.lock`.

Several GPUs (ESPnet's DDP; `batch_bins` is the global batch, split between the processes, so the result
is the one-process run's): `--ngpu N` on one machine (ESPnet spawns a process per GPU); or one process
per GPU started by torchrun, `torchrun --nproc_per_node N -m espnet_ext.bin.train_lora ... --ngpu 1`; or
under Slurm one `srun` task per node with `--ngpu <GPUs per node> --dist_launcher slurm` and MASTER_PORT
set (ESPnet refuses --dist_launcher slurm with several tasks on a node). On CPUs, `--ngpu 0` under
torchrun trains with gloo (tests/train/test_ddp.py). Only rank 0 writes into the exp dir.
"""
import argparse
import contextlib
import functools
import logging
import os
from pathlib import Path

import torch

from espnet_ext.bin.cli import exits_on_user_error, peak_memory_mb, save_resolved_args, str2bool
from espnet_ext.errors import UserError
from espnet_ext.fileio import exclusive_lock
from espnet_ext.train.export import EXPORT_CHOICES
from espnet_ext.train.model import FINETUNE_CHOICES

log = logging.getLogger("train_lora")
TRAIN_LOCK = ".train.lock"  # held while a training runs in its exp dir: a second one stops at once, naming it


def get_parser() -> argparse.ArgumentParser:
    # No abbreviations: an ESPnet option must never be taken for a prefix of one of ours.
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--model", default="whisper_base", help="registry name of the frozen base model")
    p.add_argument("--model_path", default=None, help="local weights for models that need them")
    p.add_argument("--train_dir", type=Path, required=True, help="Kaldi data dir with utt2lang")
    p.add_argument("--valid_dir", type=Path, required=True, help="Kaldi data dir for the validation loss")
    p.add_argument("--exp_dir", type=Path, required=True)
    p.add_argument("--config", type=Path, required=True,
                   help="ESPnet training config (conf/tuning/train_lora_*.yaml with a lora_conf section, or "
                        "train_full_*.yaml)")
    p.add_argument("--finetune", choices=FINETUNE_CHOICES, default=None,
                   help="lora: per-language adapters on the frozen base; full: every base weight (the "
                        "reference system). Default: the config's finetune, else lora")
    p.add_argument("--lora_rank", type=int, default=None, help="override lora_conf.rank")
    p.add_argument("--lora_alpha", type=float, default=None, help="override lora_conf.alpha")
    p.add_argument("--ngpu", type=int, default=0,
                   help="0: CPU; N > 1: ESPnet's DDP, one process per GPU; 1 per process under torchrun or srun")
    p.add_argument("--resume", type=str2bool, default=False, help="continue the training in --exp_dir")
    p.add_argument("--use_amp", type=str2bool, default=False, help="mixed precision (GPU)")
    p.add_argument("--use_wandb", type=str2bool, default=False,
                   help="log to Weights & Biases (offline, under <exp_dir>/wandb/, unless W&B is logged in)")
    p.add_argument("--export", choices=EXPORT_CHOICES, default="best", help="which checkpoint becomes the adapters")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return p


def choose_wandb_mode() -> None:
    """Offline W&B when nothing says otherwise: no WANDB_MODE, no API key, no `wandb login`.

    ESPnet calls `wandb.login()`, which waits for a key on a machine that has none; offline, the run is
    written under <exp_dir>/wandb/offline-run-*/ and `wandb sync <that dir>` uploads it later.
    """
    netrc = Path.home() / ".netrc"
    logged_in = netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="replace")
    if "WANDB_MODE" not in os.environ and not os.environ.get("WANDB_API_KEY") and not logged_in:
        os.environ["WANDB_MODE"] = "offline"
        log.info("W&B: no key or login found; logging offline (upload later with `wandb sync <exp_dir>/wandb/*`)")


@exits_on_user_error
def main(argv=None) -> None:
    args, espnet_args = get_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.use_wandb:
        choose_wandb_mode()
    from espnet_ext.train.model import NonFiniteLossError
    from espnet_ext.train.pipeline import TrainOptions, launched_rank, run_training

    options = TrainOptions(
        model=args.model, train_dir=args.train_dir, valid_dir=args.valid_dir, exp_dir=args.exp_dir,
        config=args.config, model_path=args.model_path, finetune=args.finetune, lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha, ngpu=args.ngpu, resume=args.resume, use_amp=args.use_amp,
        use_wandb=args.use_wandb, export=args.export, espnet_args=espnet_args,
    )
    # the record of what trained the exp dir, written only once this run has passed its checks: a run
    # refused for a bad option, config or data dir leaves the previous run's record in place
    record = functools.partial(save_resolved_args, argparse.Namespace(**vars(args), espnet_args=espnet_args),
                               args.exp_dir / "train_lora_args.yaml")
    # one training per exp dir; in a run of several processes (torchrun, srun) rank 0 holds the lock for all
    lock = (exclusive_lock(args.exp_dir / TRAIN_LOCK, f"training dir {args.exp_dir}") if launched_rank(options) == 0
            else contextlib.nullcontext())
    with lock:
        try:
            exported = run_training(options, validated=record)
        except (NonFiniteLossError, ValueError, FileNotFoundError) as err:  # the pipeline's bad-input errors
            raise UserError(str(err)) from None
    for name, path in exported.items():
        log.info("exported %s -> %s", name, path)
    log.info("peak memory %.0f MB", peak_memory_mb())


if __name__ == "__main__":
    main()
