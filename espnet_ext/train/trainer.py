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

ESPnet resumes at epoch boundaries: a run killed mid-epoch repeats that epoch from the last
checkpoint. It reseeds every epoch (`seed + epoch`) and shuffles batches by epoch, so the repeated
epoch, and the whole resumed run, trains exactly as an uninterrupted one, but on a real corpus an epoch
is hours. `--save_every_n_steps N` adds step checkpoints within the epoch (`step_checkpoint.pth`,
atomic like the rest): the trainable weights, optimizers, schedulers, AMP scaler, the epoch's reporter
statistics and step count, the random states, and how many batches of the epoch are done. A resumed
run (`--resume true`) that finds one for the epoch it is starting loads it, draws the done batches from
the epoch's iterator without training on them (ESPnet's iterator of an epoch is the same batches in the
same order on every run, data-loader workers' seeds included), puts the random states back and goes on:
the same steps, and adapters bit-identical to an uninterrupted run's (tests/train/test_kill_resume.py).
A checkpoint is written only when the epoch has a next batch, so a resumed epoch never starts empty.

Every epoch ends with one log line of its training throughput (`Throughput`): batches, utterances and
seconds of audio per second of the epoch's training loop, and the peak GPU memory on a GPU, so the speed of
a run on a given machine is read off its log (bench/gpu_train.py reads it there).
"""
import contextlib
import dataclasses
import logging
import os
import pickle
import random
import re
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional

import numpy as np
import torch

from espnet_ext.data.audio import SAMPLE_RATE
from espnet_ext.errors import UserError
from espnet_ext.fileio import atomic_open
from espnet_ext.models.espnet_import import import_espnet_module

_espnet_trainer = import_espnet_module("espnet2.train.trainer")
_Trainer = _espnet_trainer.Trainer
STEP_CHECKPOINT = "step_checkpoint.pth"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that --resume cannot load (truncated or corrupt): the message names it and the fix."""


@dataclasses.dataclass
class LoRATrainerOptions(_espnet_trainer.TrainerOptions):
    save_every_n_steps: int = 0  # 0: checkpoints at epoch ends only (ESPnet's)


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


def load_checkpoint(path: Path, fix: str) -> dict:
    """The states in checkpoint `path`; CheckpointError, saying `fix`, where the file cannot be loaded.
    Our saves are atomic, so such a file was damaged afterwards (a disk filling up, a partial copy)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        reason = str(err).split(". ")[0]  # torch's first sentence; the rest is advice about saving
        raise CheckpointError(f"{path} cannot be loaded, it is truncated or corrupt ({reason}); {fix}") from None


def restore_last_epoch_file(output_dir: Path) -> None:
    """Rewrite `<N>epoch.pth` from checkpoint.pth when a kill fell between ESPnet's two saves. It is
    also the first load of checkpoint.pth on resume, so a damaged one stops here, named, before ESPnet's."""
    checkpoint = output_dir / "checkpoint.pth"
    if not checkpoint.is_file():
        return
    states = load_checkpoint(checkpoint, (
        "--resume needs it (the optimizer, scheduler and epoch state, which <N>epoch.pth files lack): restore it "
        "from a copy, or start the training over in a new --exp_dir (without checkpoint.pth, --resume true would "
        "retrain this one from epoch 1)"))
    epoch_file = output_dir / f"{states['reporter']['epoch']}epoch.pth"
    if not epoch_file.exists():
        logging.warning("%s is missing (run killed while saving); rewriting it from %s", epoch_file, checkpoint)
        with atomic_torch_save():
            torch.save(states["model"], epoch_file)


def _rank0(distributed_option) -> bool:
    """Whether this process writes the checkpoints (the only one, or rank 0 of a DDP run)."""
    return not distributed_option.distributed or distributed_option.dist_rank == 0


def _random_states() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_random_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _trainable_state(model: torch.nn.Module) -> dict:
    """The weights training changes (a LoRA bank's: megabytes, not the frozen base's hundreds)."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def _load_step_checkpoint(path: Path, model, optimizers, schedulers, scaler, reporter) -> Optional[dict]:
    """The step checkpoint's states loaded into the training objects, when it belongs to the epoch
    `reporter` is starting; None otherwise (none yet, or a finished epoch's, which checkpoint.pth holds)."""
    if not path.is_file():
        return None
    states = load_checkpoint(path, "delete it: the run then redoes its epoch from the start (checkpoint.pth)")
    if states["epoch"] != reporter.epoch:
        return None
    module = getattr(model, "module", model)  # DDP wraps the model
    missing = {name for name, p in module.named_parameters() if p.requires_grad} - set(states["model"])
    if missing:
        raise RuntimeError(f"{path} lacks trainable weights {sorted(missing)[:3]}...: it was written by another "
                           "training; delete it (the run then resumes from checkpoint.pth)")
    module.load_state_dict(states["model"], strict=False)
    for optimizer, state in zip(optimizers, states["optimizers"]):
        optimizer.load_state_dict(state)
    for scheduler, state in zip(schedulers, states["schedulers"]):
        if scheduler is not None:
            scheduler.load_state_dict(state)
    if scaler is not None and states["scaler"] is not None:
        scaler.load_state_dict(states["scaler"])
    reporter.__dict__.update(states["reporter"])  # the epoch's statistics so far and the step count
    return states


def _with_step_checkpoints(iterator: Iterable, done: int, every: int, save: Callable[[int], None],
                           restore: Optional[Callable[[], None]]) -> Iterator:
    """`iterator`'s batches after the first `done`; `save(n)` runs when n batches are trained, n a
    multiple of `every`, and the next batch is fetched (so on resume, `restore` runs at the same point:
    after fetching batch done + 1, before training on it)."""
    batches = iter(iterator)
    for _ in range(done):
        next(batches)
    count = done
    for batch in batches:
        if count == done and restore is not None:
            restore()
        elif count > done and count % every == 0:
            save(count)
        yield batch
        count += 1


@dataclasses.dataclass
class Throughput:
    """What one epoch's training loop went through, counted batch by batch (this process's share under DDP)."""

    batches: int = 0
    utterances: int = 0
    audio_seconds: float = 0.0

    def counted(self, iterator: Iterable) -> Iterator:
        """`iterator`'s (utterance ids, tensors) batches, each counted as it is handed to the trainer."""
        for utt_ids, batch in iterator:
            self.batches += 1
            self.utterances += len(utt_ids)
            self.audio_seconds += float(batch["speech_lengths"].sum()) / SAMPLE_RATE  # raw 16 kHz samples
            yield utt_ids, batch

    # `message`'s line, read back (bench/gpu_train.py reads a run's speed off its train.log)
    LINE = re.compile(r"epoch (\d+) throughput: (\d+) batches, (\d+) utterances, \d+ s of audio in [\d.]+ s: "
                      r"[\d.]+ batches/s, ([\d.]+) utterances/s, (\d+) s of audio/s"
                      r"(?:, peak GPU memory ([\d.]+) GiB allocated)?")

    @classmethod
    def read_log(cls, text: str) -> List[dict]:
        """Every epoch's throughput line in a training log: epoch, batches, utterances, utt_s, audio_s and
        memory_gib (nan where the run had no GPU)."""
        rows = []
        for match in cls.LINE.finditer(text):
            epoch, batches, utts, utt_s, audio_s, memory = match.groups()
            rows.append({"epoch": int(epoch), "batches": int(batches), "utterances": int(utts),
                         "utt_s": float(utt_s), "audio_s": float(audio_s),
                         "memory_gib": float(memory) if memory else float("nan")})
        return rows

    def message(self, epoch: int, seconds: float, device: Optional[torch.device] = None) -> str:
        """The epoch's log line (the per-second figures over `seconds` of training, validation excluded)."""
        text = (f"epoch {epoch} throughput: {self.batches} batches, {self.utterances} utterances, "
                f"{self.audio_seconds:.0f} s of audio in {seconds:.1f} s: {self.batches / seconds:.2f} batches/s, "
                f"{self.utterances / seconds:.1f} utterances/s, {self.audio_seconds / seconds:.0f} s of audio/s")
        if device is not None and device.type == "cuda":
            text += f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2 ** 30:.2f} GiB allocated"
        return text


class LoRATrainer(_Trainer):
    """ESPnet's Trainer with atomic checkpoint files and optional step checkpoints (module docstring)."""

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--save_every_n_steps", type=int, default=0,
                            help="also checkpoint every N optimizer steps within an epoch (step_checkpoint.pth); "
                                 "a run killed mid-epoch resumes there with --resume true. 0: epoch ends only")

    @classmethod
    def build_options(cls, args):
        return _espnet_trainer.build_dataclass(LoRATrainerOptions, args)

    @classmethod
    def train_one_epoch(cls, model, iterator, optimizers, schedulers, scaler, reporter, summary_writer, options,
                        distributed_option) -> bool:
        every = getattr(options, "save_every_n_steps", 0) * options.accum_grad  # in batches
        if every > 0:
            iterator = cls._step_checkpointed(iterator, every, model, optimizers, schedulers, scaler, reporter,
                                              options, distributed_option)
        throughput = Throughput()
        started = time.perf_counter()
        stop = super().train_one_epoch(model=model, iterator=throughput.counted(iterator), optimizers=optimizers,
                                       schedulers=schedulers, scaler=scaler, reporter=reporter,
                                       summary_writer=summary_writer, options=options,
                                       distributed_option=distributed_option)
        device = next(model.parameters()).device
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        logging.info(throughput.message(reporter.epoch, time.perf_counter() - started, device))
        return stop

    @staticmethod
    def _step_checkpointed(iterator, every, model, optimizers, schedulers, scaler, reporter, options,
                           distributed_option) -> Iterator:
        """The epoch's batches, resumed after the step checkpoint of this epoch if there is one, with a
        new step checkpoint every `every` batches (written by rank 0)."""
        path = Path(options.output_dir) / STEP_CHECKPOINT
        loaded = _load_step_checkpoint(path, model, optimizers, schedulers, scaler, reporter) if options.resume else None
        done = loaded["batches"] if loaded else 0
        if loaded:
            logging.info("resuming epoch %d after its batch %d (%s)", reporter.epoch, done, path)

        def save(batches: int) -> None:
            if not _rank0(distributed_option):
                return
            torch.save({"epoch": reporter.epoch, "batches": batches,
                        "model": _trainable_state(getattr(model, "module", model)),
                        "optimizers": [o.state_dict() for o in optimizers],
                        "schedulers": [s.state_dict() if s is not None else None for s in schedulers],
                        "scaler": scaler.state_dict() if scaler is not None else None,
                        "reporter": {k: v for k, v in reporter.__dict__.items() if k != "start_time"},
                        "random": _random_states()}, path)
            logging.info("step checkpoint: epoch %d, batch %d -> %s", reporter.epoch, batches, path)

        restore = (lambda: _set_random_states(loaded["random"])) if loaded else None
        return _with_step_checkpoints(iterator, done, every, save, restore)

    @classmethod
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory,
            plot_attention_iter_factory, trainer_options, distributed_option) -> None:
        if trainer_options.resume and _rank0(distributed_option):
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
