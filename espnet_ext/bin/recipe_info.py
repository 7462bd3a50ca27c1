#!/usr/bin/env python3
"""Answers the recipe driver's small questions so that no such logic lives in shell.

    python -m espnet_ext.bin.recipe_info langs --lang all     # -> "hi pa te it"
    python -m espnet_ext.bin.recipe_info lid_only_langs        # -> "en": LID classes without an adapter
    python -m espnet_ext.bin.recipe_info corpus_langs --lang all   # every language stage 1 synthesises
    python -m espnet_ext.bin.recipe_info threads --nj 2       # CPUs per job here (in a Slurm job: of its allocation)
    python -m espnet_ext.bin.recipe_info routings --routings "none oracle hard"   # checked; "all" expanded
    python -m espnet_ext.bin.recipe_info routing_source --routing soft            # -> lid_head
    python -m espnet_ext.bin.recipe_info lid_routings     # -> "hard soft threshold hierarchical": they read the head
"""
import argparse
import os

from espnet_ext.languages import ADAPTER_LANGUAGES, LANGUAGES, LID_ONLY_LANGUAGES, adapter_language
from espnet_ext.bin.cli import exits_on_user_error


def langs(lang: str) -> str:
    """Expand `--lang` (an adapter language's code or `all`) into the adapter languages it covers."""
    return " ".join(ADAPTER_LANGUAGES) if lang == "all" else adapter_language(lang, "--lang")


def lid_only_langs() -> str:
    """The LID classes with no adapter (decoded by the base model): their dirs join the LID's data."""
    return " ".join(LID_ONLY_LANGUAGES)


def corpus_langs(lang: str) -> str:
    """What stage 1 prepares for `--lang`: with `all`, every language of the table (the LID-only and
    out-of-set ones too, for the LID and its out-of-set report); else that adapter language alone."""
    return " ".join(LANGUAGES) if lang == "all" else langs(lang)


def threads(nj: int) -> int:
    """Split the CPUs this process may use evenly between `nj` parallel jobs (at least one each): inside a
    Slurm job its allocation (SLURM_CPUS_PER_TASK), inside a run.pl job the threads it was given
    (OMP_NUM_THREADS), else the cores this process is allowed to run on."""
    cpus = int(os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("OMP_NUM_THREADS")
               or len(os.sched_getaffinity(0)))
    return max(1, cpus // max(1, nj))


def routings(names: str) -> str:
    """The `--routings` list checked against the registry; `all` = every routing, registry order."""
    from espnet_ext.routing.routers import ROUTINGS  # imports torch (seconds): only the questions that need it

    wanted = list(ROUTINGS) if names.strip() == "all" else names.split()
    unknown = [n for n in wanted if n not in ROUTINGS]
    if unknown:
        raise ValueError(f"unknown routing(s) {unknown}; the routings are {', '.join(ROUTINGS)} (or all)")
    return " ".join(wanted)


def routing_source(name: str) -> str:
    """Where routing `name`'s posteriors come from: none | utt2lang | language_token | lid_head."""
    from espnet_ext.routing.routers import ROUTINGS

    return ROUTINGS[routings(name)].source


def lid_routings() -> str:
    """The routings whose decisions come from the LID head (a decode made with them depends on the head)."""
    from espnet_ext.routing.routers import ROUTINGS

    return " ".join(name for name, routing in ROUTINGS.items() if routing.source == "lid_head")


@exits_on_user_error
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="question", required=True)
    sub.add_parser("langs").add_argument("--lang", required=True)
    sub.add_parser("lid_only_langs")
    sub.add_parser("corpus_langs").add_argument("--lang", required=True)
    sub.add_parser("threads").add_argument("--nj", type=int, required=True)
    sub.add_parser("routings").add_argument("--routings", required=True)
    sub.add_parser("routing_source").add_argument("--routing", required=True)
    sub.add_parser("lid_routings")
    args = p.parse_args(argv)
    answer = {"langs": lambda: langs(args.lang), "lid_only_langs": lid_only_langs,
              "corpus_langs": lambda: corpus_langs(args.lang), "threads": lambda: threads(args.nj),
              "routings": lambda: routings(args.routings), "routing_source": lambda: routing_source(args.routing),
              "lid_routings": lid_routings}
    try:
        print(answer[args.question]())
    except ValueError as e:
        raise SystemExit(f"recipe_info.py: {e}")


if __name__ == "__main__":
    main()
