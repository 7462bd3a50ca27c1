"""ESPnet's Trainer, with checkpoints that a killed run can never leave half-written.

ESPnet 202511 writes `checkpoint.pth`, `<N>epoch.pth` and the n-best averages with a plain
`torch.save(obj, path)`, straight onto the final name: a run killed while saving leaves a truncated
checkpoint.pth that `--resume true` then fails to load, losing the whole run. `LoRATrainer` runs
ESPnet's unchanged training loop with `torch.save` onto a path redirected through
`espnet_ext.fileio.atomic_open` (temporary sibling, fsync, rename), so every such file is either the
previous complete version or the new complete one.

ESPnet saves checkpoint.pth before `<N>epoch.pth`; a kill between the two leaves the last epoch's
file missing although the checkpoint counts the epoch as done, and the final n-best averaging would
then fail. On resume, that file is rewritten from checkpoint.pth, which holds the same model state.

Resuming is at epoch boundaries (ESPnet's design): a run killed mid-epoch repeats that epoch from the
last checkpoint. ESPnet reseeds every epoch (`seed + epoch`) and shuffles batches by epoch, so the
repeated epoch, and the whole resumed run, trains exactly as an uninterrupted one.
"""
import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

import torch

from espnet_ext.fileio import atomic_open
from espnet_ext.models.espnet_import import import_espnet_module

_Trainer = import_espnet_module("espnet2.train.trainer").Trainer


@contextlib.contextmanager
def atomic_torch_save() -> Iterator[None]:
    """Within the block, `torch.save(obj, <path>)` writes atomically; file objects pass through."""
    original = torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            with atomic_open(f, "wb") as handle:
                original(obj, handle, *args, **kwargs)
        else:
            original(obj, f, *args, **kwargs)

    torch.save = save
    try:
        yield
    finally:
        torch.save = original


def restore_last_epoch_file(output_dir: Path) -> None:
    """Rewrite `<N>epoch.pth` from checkpoint.pth when a kill fell between ESPnet's two saves."""
    checkpoint = output_dir / "checkpoint.pth"
    if not checkpoint.is_file():
        return
    states = torch.load(checkpoint, map_location="cpu", weights_only=False)
    epoch_file = output_dir / f"{states['reporter']['epoch']}epoch.pth"
    if not epoch_file.exists():
        logging.warning("%s is missing (run killed while saving); rewriting it from %s", epoch_file, checkpoint)
        with atomic_torch_save():
            torch.save(states["model"], epoch_file)


class LoRATrainer(_Trainer):
    """ESPnet's Trainer with atomic checkpoint files (see the module docstring)."""

    @classmethod
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory,
            plot_attention_iter_factory, trainer_options, distributed_option) -> None:
        rank0 = not distributed_option.distributed or distributed_option.dist_rank == 0
        if trainer_options.resume and rank0:
            restore_last_epoch_file(Path(trainer_options.output_dir))
        with atomic_torch_save():
            super().run(
                model=model,
                optimizers=optimizers,
                schedulers=schedulers,
                train_iter_factory=train_iter_factory,
                valid_iter_factory=valid_iter_factory,
                plot_attention_iter_factory=plot_attention_iter_factory,
                trainer_options=trainer_options,
                distributed_option=distributed_option,
            )
