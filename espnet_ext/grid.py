"""An experiment grid: models x languages x ranks, each task one system of the recipe, trained, decoded
and scored, on a laptop (utils/run.pl) or as Slurm job arrays (utils/slurm.pl).

`conf/grid.yaml` says what to run. `submit()` (`run.sh --grid conf/grid.yaml`) writes the task table
`<expdir>/grid/<name>/tasks.tsv` (task index -> model, language, rank, exp dir) and submits through the
job runner three calls, each logged under `<expdir>/grid/<name>/log/`:

1. a training array: task i runs the recipe's stage 3 for its system (`train.<i>.log`);
2. a decode-and-score array, task i starting when training task i succeeded (slurm.pl's
   `--dependency aftercorr:<training array>`), so a failed training cancels only its own decoding: stages
   5-6 with oracle routing, the dev set and the test set of its language (`decode.<i>.log`);
3. the results table once every decode has ended (`results.log`, `<expdir>/grid/<name>/RESULTS.md`).

With slurm.pl the calls only submit (`--wait false`) and `submit()` returns; run.pl runs them in turn.
A task is done when its test decode has a result.txt; a rerun submits only the others, and a training
that was killed resumes from its last checkpoint (stage 3 always runs with `--resume true`). Any rank
works with any training config: the task passes `--lora_rank R --lora_alpha alpha_per_rank*R` to
training, so no per-rank copy of a config is needed.
"""
import json
import logging
import os
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_ext.errors import UserError
from espnet_ext.fileio import atomic_write_text, read_yaml_config
from espnet_ext.languages import ADAPTER_LANGUAGES

log = logging.getLogger(__name__)

PHASES = ("train", "decode", "results")
RUNNER_OPTIONS = ("mem", "num_threads", "gpu", "time")  # the generic job options a phase may ask for


class GridError(UserError, ValueError):
    """A grid file or grid dir that cannot be used."""


@dataclass
class GridSpec:
    """conf/grid.yaml, read and checked (its comments say what each key means)."""

    path: str
    name: str
    models: Dict[str, Dict[str, str]]
    langs: List[str]
    ranks: List[int]
    alpha_per_rank: float = 2.0
    tag: str = ""
    run_args: str = ""
    train_args: str = ""
    resources: Dict[str, Dict[str, str]] = field(default_factory=dict)
    max_jobs_run: int = 0
    mail_type: str = ""
    wandb: bool = False


def read_grid(path: Path) -> GridSpec:
    """Read and check a grid file; a missing or malformed key is one error naming the file and the key."""
    raw = read_yaml_config(path)

    def need(key, kind):
        if key not in raw:
            raise GridError(f"{path}: no '{key}'; add it (see conf/grid.yaml)")
        if not isinstance(raw[key], kind):
            raise GridError(f"{path}: '{key}' must be a {kind.__name__}, not {raw[key]!r}")
        return raw[key]

    unknown = set(raw) - (set(GridSpec.__dataclass_fields__) - {"path"})
    if unknown:
        raise GridError(f"{path}: unknown key(s) {sorted(unknown)}; the keys are "
                        f"{sorted(set(GridSpec.__dataclass_fields__) - {'path'})}")
    models = need("models", dict)
    for model, options in models.items():
        if not isinstance(options, dict) or "train_config" not in options:
            raise GridError(f"{path}: model {model} needs a 'train_config' (e.g. {model}: "
                            "{train_config: conf/tuning/train_lora_whisper_base_r16.yaml})")
        extra = set(options) - {"train_config", "model_path"}
        if extra:
            raise GridError(f"{path}: model {model} has unknown key(s) {sorted(extra)} (train_config, model_path)")
    langs = [str(lang) for lang in need("langs", list)]
    bad = [lang for lang in langs if lang != "all" and lang not in ADAPTER_LANGUAGES]
    if bad:
        raise GridError(f"{path}: langs {bad} are not adapter languages ({', '.join(ADAPTER_LANGUAGES)}, or all)")
    ranks = need("ranks", list)
    if not all(isinstance(r, int) and r > 0 for r in ranks):
        raise GridError(f"{path}: ranks must be positive integers, not {ranks}")
    resources = raw.get("resources") or {}
    for phase, options in resources.items():
        if phase not in PHASES or not isinstance(options, dict) or set(options) - set(RUNNER_OPTIONS):
            raise GridError(f"{path}: resources.{phase}: give {{{', '.join(RUNNER_OPTIONS)}}} for a phase of "
                            f"{PHASES}")
    spec = GridSpec(path=str(path), name=str(need("name", str)), models=models, langs=langs, ranks=ranks,
                    resources=resources,
                    **{k: raw[k] for k in ("alpha_per_rank", "tag", "run_args", "train_args", "max_jobs_run",
                                           "mail_type", "wandb") if k in raw and raw[k] is not None})
    return spec


@dataclass
class Task:
    """One system of the grid: the recipe's options that name it, and where its results land."""

    index: int
    model: str
    lang: str
    rank: int
    exp_dir: str
    run_args: List[str]  # run.sh options shared by its training and its decoding
    ngpu: Dict[str, int]  # GPUs of its training and its decoding job (the grid's resources.<phase>.gpu)

    @property
    def result(self) -> Path:
        """The completion marker: the test set's scores (stage 6 writes result.txt last)."""
        return Path(self.exp_dir) / f"decode_test_{self.lang}_oracle" / "result.txt"

    @property
    def trained(self) -> Path:
        return Path(self.exp_dir) / "adapters" / ".done"

    def done(self) -> bool:
        return self.result.is_file()

    def command(self, phase: str) -> List[str]:
        stages = {"train": ["--stage", "3", "--stop_stage", "3"],
                  "decode": ["--stage", "5", "--stop_stage", "6", "--routings", "oracle"]}[phase]
        return ["./run.sh", *self.run_args, "--ngpu", str(self.ngpu[phase]), *stages]


def expand(spec: GridSpec, expdir: Path, datadir: Path) -> List[Task]:
    """Every task, numbered from 1 in the order models x langs x ranks."""
    tasks = []
    for model, options in spec.models.items():
        for lang in spec.langs:
            for rank in spec.ranks:
                name = f"{model}_{lang}_r{rank}" + (f"_{spec.tag}" if spec.tag else "")
                train_args = f"--lora_rank {rank} --lora_alpha {spec.alpha_per_rank * rank:g} {spec.train_args}"
                if spec.wandb:
                    train_args += (f" --use_wandb true --wandb_project {spec.name} --wandb_name {name}"
                                   f" --wandb_id {spec.name}-{name}")
                args = ["--model", model, "--lang", lang, "--lora_rank", str(rank),
                        "--train_config", options["train_config"], "--datadir", str(datadir),
                        "--expdir", str(expdir), "--cmd", "run.pl", "--nj", "1", "--train_args", train_args.strip()]
                if options.get("model_path"):
                    args += ["--model_path", options["model_path"]]
                if spec.tag:
                    args += ["--tag", spec.tag]
                ngpu = {phase: int(spec.resources.get(phase, {}).get("gpu", 0)) for phase in ("train", "decode")}
                tasks.append(Task(len(tasks) + 1, model, lang, rank, str(expdir / name),
                                  args + shlex.split(spec.run_args), ngpu))
    return tasks


def grid_dir(spec: GridSpec, expdir: Path) -> Path:
    return expdir / "grid" / spec.name


def write_tasks(directory: Path, spec: GridSpec, tasks: List[Task]) -> None:
    """tasks.json (read by each task) and tasks.tsv (for people: index, model, lang, rank, training
    config, exp dir)."""
    atomic_write_text(directory / "tasks.json", json.dumps(
        {"grid": asdict(spec), "tasks": [asdict(t) for t in tasks]}, indent=1, ensure_ascii=False) + "\n")
    lines = ["task\tmodel\tlang\trank\ttrain_config\texp_dir"] + [
        f"{t.index}\t{t.model}\t{t.lang}\t{t.rank}\t{spec.models[t.model]['train_config']}\t{t.exp_dir}"
        for t in tasks]
    atomic_write_text(directory / "tasks.tsv", "\n".join(lines) + "\n")


def read_tasks(directory: Path) -> Tuple[GridSpec, List[Task]]:
    path = Path(directory) / "tasks.json"
    if not path.is_file():
        raise GridError(f"{path} does not exist; submit the grid first (run.sh --grid conf/grid.yaml)")
    data = json.loads(path.read_text(encoding="utf-8"))
    return GridSpec(**data["grid"]), [Task(**t) for t in data["tasks"]]


def run_task(directory: Path, phase: str, index: int) -> int:
    """Inside a job: run one task's phase through run.sh (in this, the recipe's, directory)."""
    spec, tasks = read_tasks(directory)
    task = next((t for t in tasks if t.index == index), None)
    if task is None:
        raise GridError(f"{directory}/tasks.json has no task {index} (tasks 1-{len(tasks)})")
    if phase == "decode" and not task.trained.is_file():
        raise GridError(f"task {index}: {task.trained} is missing: its training did not finish "
                        f"(see {directory}/log/train.{index}.log)")
    env = dict(os.environ)
    if spec.wandb:  # W&B groups the runs by model and tags each with its language and rank
        env.update(WANDB_RUN_GROUP=task.model, WANDB_TAGS=f"{task.model},{task.lang},r{task.rank}")
    command = task.command(phase)
    log.info("task %d (%s): %s", index, phase, shlex.join(command))
    code = subprocess.run(command, env=env).returncode
    if code == 0 and phase == "decode" and spec.wandb:
        log_final_scores(spec, task)
    return code


def test_scores(task: Task) -> Optional[Dict]:
    path = task.result.parent / "scores.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def log_final_scores(spec: GridSpec, task: Task) -> None:
    """The test WER/CER into the task's W&B run (same id as its training), as summary values."""
    from espnet_ext.bin.train_lora import choose_wandb_mode
    import wandb

    choose_wandb_mode()
    overall = test_scores(task)["scores"]["all"]
    name = Path(task.exp_dir).name
    run = wandb.init(project=spec.name, id=f"{spec.name}-{name}", name=name, resume="allow",
                     dir=task.exp_dir, group=task.model, tags=[task.model, task.lang, f"r{task.rank}"])
    run.summary.update({"test/wer": overall["wer"]["rate"], "test/cer": overall["cer"]["rate"],
                        "model": task.model, "lang": task.lang, "rank": task.rank})
    run.finish()


def _runner_call(runner: List[str], spec: GridSpec, phase: str, ids: List[int], directory: Path,
                 extra: List[str]) -> List[str]:
    """The job runner's command line for one phase (an array over `ids`, or one job for results)."""
    options = [opt for key, value in spec.resources.get(phase, {}).items()
               for opt in (f"--{key.replace('_', '-')}", str(value))]
    if spec.mail_type:
        options += ["--mail-type", spec.mail_type]
    if spec.max_jobs_run and phase != "results":
        options += ["--max-jobs-run", str(spec.max_jobs_run)]
    me = [sys.executable, "-m", "espnet_ext.bin.grid"]
    if phase == "results":
        return [*runner, *options, *extra, str(directory / "log" / "results.log"),
                *me, "results", "--grid_dir", str(directory)]
    return [*runner, *options, *extra, f"JOB={','.join(map(str, ids))}", str(directory / "log" / f"{phase}.JOB.log"),
            *me, "task", "--grid_dir", str(directory), "--phase", phase, "--task", "JOB"]


def submit(spec_path: Path, expdir: Path, datadir: Path, runner: List[str], dry_run: bool = False) -> int:
    """Write the task table and submit the grid's unfinished tasks (module docstring); with slurm.pl,
    return once submitted; with run.pl, once everything ran. Returns non-zero when a run.pl phase failed."""
    spec = read_grid(spec_path)
    for model, options in spec.models.items():  # relative to the recipe dir, where the tasks run
        if not Path(options["train_config"]).is_file():
            raise GridError(f"{spec_path}: model {model}'s train_config {options['train_config']} does not exist "
                            f"(relative to {Path.cwd()}); give an existing config")
    tasks = expand(spec, expdir, datadir)
    directory = grid_dir(spec, expdir)
    directory.mkdir(parents=True, exist_ok=True)
    write_tasks(directory, spec, tasks)
    pending = [t.index for t in tasks if not t.done()]
    log.info("grid %s: %d tasks (%s), %d done, submitting %s", spec.name, len(tasks), directory / "tasks.tsv",
             len(tasks) - len(pending), pending or "none")
    is_slurm = Path(runner[0]).name == "slurm.pl"
    if dry_run:
        print((directory / "tasks.tsv").read_text(encoding="utf-8"), end="")
        if not is_slurm:
            return 0
        runner = [*runner, "--dry-run", "true"]
    ids_of, code = {}, 0
    for phase in PHASES:
        if not pending and phase != "results":
            continue
        extra = ["--wait", "false"] if is_slurm else []
        upstream = ids_of.get("decode" if phase == "results" else "train")
        if upstream and phase != "train":
            extra += ["--dependency", f"{'afterany' if phase == 'results' else 'aftercorr'}:{upstream}"]
        call = _runner_call(runner, spec, phase, pending, directory, extra)
        log.info("grid %s: %s", phase, shlex.join(call))
        done = subprocess.run(call, stdout=subprocess.PIPE, text=True)
        if dry_run:
            print(done.stdout, end="")
            ids_of[phase] = f"<{phase} array id>"
            continue
        if done.returncode != 0:
            code = 1
            if is_slurm:  # nothing was submitted: the reason is slurm.pl's line above
                return 1
        if is_slurm:
            ids_of[phase] = done.stdout.split()[-1]
            _record_submission(directory, phase, ids_of[phase], pending)
    if is_slurm and not dry_run:
        log.info("grid %s submitted (training %s, decoding %s, results %s); watch it with: "
                 "local/grid_status.py %s", spec.name, ids_of.get("train"), ids_of.get("decode"),
                 ids_of.get("results"), directory)
    return code


def _record_submission(directory: Path, phase: str, job_id: str, tasks: List[int]) -> None:
    path = directory / "submissions.json"
    history = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    history.append({"phase": phase, "job_id": job_id, "tasks": tasks})
    atomic_write_text(path, json.dumps(history, indent=1) + "\n")


def _queued() -> Dict[str, str]:
    """Slurm's pending and running array tasks: '<array id>_<task>' -> state (empty without Slurm)."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T"], capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return {}
    return dict(line.split(None, 1) for line in out.stdout.splitlines() if line.strip())


def _log_code(path: Path) -> Optional[int]:
    """run.pl's `# Ended (code N)` in a job log; None when the log is missing or has no footer."""
    if not path.is_file():
        return None
    codes = [line.split("(code ")[1].split(")")[0] for line in path.read_text(errors="replace").splitlines()
             if line.startswith("# Ended (code ")]
    return int(codes[-1]) if codes else None


def status(directory: Path) -> List[Dict[str, str]]:
    """Each task's state: done, trained, running/pending (in Slurm's queue), failed (its log's footer
    says so, or the log ends unfinished with nothing queued), or not run; with the log to read."""
    _, tasks = read_tasks(directory)
    history_path = directory / "submissions.json"
    history = json.loads(history_path.read_text(encoding="utf-8")) if history_path.is_file() else []
    queued = _queued()
    rows = []
    for task in tasks:
        state, log_path = ("trained" if task.trained.is_file() else "not run"), None
        for phase in ("train", "decode"):  # a queued job first: it is what happens next
            latest = [s["job_id"] for s in history if s["phase"] == phase and task.index in s["tasks"]][-1:]
            queued_state = queued.get(f"{latest[0]}_{task.index}") if latest else None
            if queued_state:
                state, log_path = f"{phase} {queued_state.lower()}", directory / "log" / f"{phase}.{task.index}.log"
                break
        else:
            for phase in ("decode", "train"):  # else what the latest log says
                path = directory / "log" / f"{phase}.{task.index}.log"
                if path.is_file():
                    log_path = path
                    if _log_code(path) != 0:  # a non-zero code, or no footer: killed
                        state = f"{phase} failed"
                    break
        if task.done():
            state, log_path = "done", task.result
        rows.append({"task": str(task.index), "model": task.model, "lang": task.lang, "rank": str(task.rank),
                     "state": state, "log": str(log_path or "")})
    return rows


def results_markdown(directory: Path) -> str:
    """The grid's table: one row per task (model, language, rank, state, trainable parameters per
    language, test WER / CER of its oracle routing), from the tasks' own files."""
    from espnet_ext.scoring.results import adapter_parameters
    from espnet_ext.scoring.report import format_rate

    spec, tasks = read_tasks(directory)
    states = {row["task"]: row["state"] for row in status(directory)}
    lines = [f"# Grid {spec.name}", "", f"{len(tasks)} tasks from `{spec.path}` (task table: `{directory}/tasks.tsv`); "
             "test sets, oracle routing, WER / CER in % (sclite; each exp dir's decode_test_*_oracle/result.txt).",
             "", "| task | model | lang | rank | state | params/lang | test WER | test CER |",
             "|---:|---|---|---:|---|---:|---:|---:|"]
    for task in tasks:
        scores = test_scores(task)
        configs = sorted(Path(task.exp_dir).glob("adapters/*/adapter_config.json"))
        params = f"{adapter_parameters(configs[0].parent) / 1e6:.3f}M" if configs else ""
        wer = format_rate(scores["scores"]["all"]["wer"]) if scores else ""
        cer = format_rate(scores["scores"]["all"]["cer"]) if scores else ""
        lines.append(f"| {task.index} | {task.model} | {task.lang} | {task.rank} | {states[str(task.index)]} | "
                     f"{params} | {wer} | {cer} |")
    return "\n".join(lines) + "\n"
