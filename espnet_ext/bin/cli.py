"""Small helpers shared by the command-line entry points: argument parsing, logging, user errors."""
import argparse
import functools
import inspect
import logging
from pathlib import Path

from espnet_ext.errors import UserError
from espnet_ext.fileio import atomic_write_text, read_yaml_config

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def start_cli(parser: argparse.ArgumentParser, argv=None, level: int = logging.INFO) -> argparse.Namespace:
    """Parse `argv`, set up logging, and the torch CPU threads when the parser has `--threads` (0: torch's
    default): the opening every model-running CLI shares."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=level, format=LOG_FORMAT)
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(args.threads)
    return args


def peak_memory_mb() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB), for the efficiency table."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def exits_on_user_error(main):
    """Decorate a CLI's `main(argv)`: a UserError (espnet_ext.errors: bad data, audio, model, adapter or
    option, its message naming the file and the fix) ends the command with that one line and exit
    status 1, `<command>.py: <message>`; any other exception is a bug and keeps its traceback."""
    prog = Path(inspect.getfile(main)).name  # decode.py, also when run as `python -m espnet_ext.bin.decode`

    @functools.wraps(main)
    def run(argv=None):
        try:
            return main(argv)
        except UserError as err:
            raise SystemExit(f"{prog}: {err}") from None

    return run


def str2bool(value: str) -> bool:
    """Parse the `true|false` spelling the Kaldi-style shell scripts pass to every boolean option."""
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def parse_args_with_config(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse `argv`, taking defaults from the YAML file given by `--config` (command line wins).

    This is ESPnet's convention: `conf/*.yaml` holds an experiment's settings, flags override them.
    Unknown keys in the YAML are an error naming the file, so a typo never passes silently.
    """
    parser.add_argument("--config", default=None, help="YAML file of option defaults (keys = option names)")
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        values = read_yaml_config(pre.config)
        known = {a.dest for a in parser._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            parser.error(f"{pre.config}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        parser.set_defaults(**values)
    return parser.parse_args(argv)


def resolved_args_yaml(args: argparse.Namespace) -> str:
    """Every option of `args` (config file and flags resolved) as YAML, paths as strings."""
    import yaml

    values = {k: str(v) if hasattr(v, "__fspath__") else v for k, v in sorted(vars(args).items())}
    return yaml.safe_dump(values, allow_unicode=True, sort_keys=True)


def save_resolved_args(args: argparse.Namespace, path) -> None:
    """Record every option a step ran with (config file and flags resolved), for reproduction."""
    atomic_write_text(path, resolved_args_yaml(args))
