#!/usr/bin/env python3
"""Stage 7: analyse what a trained bank learned and write the run's report.

Usage (what `./run.sh` runs after stage 6):
    python -m espnet_ext.bin.analyze --exp_root exp --exp_dir exp/whisper_base_all_r16 \
        --probe_data data/dev_all --report_dir exp/report

Cheap analyses only (minutes on a CPU): the weight space of `<exp_dir>/adapters` (read from the files,
no model) and, on a probe subset of `--probe_data` (`--probe_per_language` utterances of each language),
linear CKA between the base's and each adapter's encoder layers and linear probes of language and
family with shuffled-label controls. Each analysis is cached as `<exp_dir>/analysis/<name>.json` and
reread by a later run (`--force true` recomputes). Then `<report_dir>/{README.md,index.html,slides.pdf}`
and `<report_dir>/figures/*.{png,pdf}` gather every result under `--exp_root`: stage 6's tables, the LID
heads, training curves, these analyses and every study that has been run (`./run.sh --stage 7 --studies`).
"""
import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from espnet_ext.analysis import gather, weights
from espnet_ext.analysis.report import Section, write_report
from espnet_ext.bin.cli import exits_on_user_error, start_cli, str2bool
from espnet_ext.errors import UserError
from espnet_ext.fileio import atomic_write_text
from espnet_ext.lora.inject import parameter_counts

log = logging.getLogger("analyze")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_root", type=Path, required=True, help="the recipe's exp/ (every result under it is reported)")
    p.add_argument("--exp_dir", type=Path, required=True, help="the trained system analysed (holds adapters/)")
    p.add_argument("--report_dir", type=Path, required=True)
    p.add_argument("--model", default="whisper_base", help="registry name of the base the adapters were trained on")
    p.add_argument("--model_path", default=None, help="local weights for models that need them")
    p.add_argument("--probe_data", type=Path, default=None,
                   help="Kaldi dir with utt2lang the representation analysis reads (none: skip it)")
    p.add_argument("--probe_per_language", type=int, default=10, help="utterances per language in the probe subset")
    p.add_argument("--importance_per_language", type=int, default=0,
                   help="the layers study: teacher-forced loss and decoded CER with each block's adapters off on this "
                        "many probe utterances per language (0: only report an earlier run's)")
    p.add_argument("--phonetic_data", type=Path, default=None,
                   help="the phonetic study: the syllable set of local/make_syllable_set.py to probe (none: only "
                        "report an earlier run's)")
    p.add_argument("--lexical_per_language", type=int, default=0,
                   help="the lexical study: which frequent training words each of this many probe utterances per "
                        "language holds, probed on every encoder layer (0: only report an earlier run's)")
    p.add_argument("--force", type=str2bool, default=False, help="recompute the cached analyses")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return p


class AnalysisInputError(UserError, ValueError):
    """An exp dir the analysis cannot read."""


def cached(path: Path, compute: Callable[[], Dict], force: bool) -> Dict:
    """`path`'s JSON, or `compute()` written there atomically first (each analysis runs once per exp)."""
    if path.is_file() and not force:
        log.info("reading %s (--force true recomputes it)", path)
        return json.loads(path.read_text(encoding="utf-8"))
    start = time.time()
    result = compute()
    result["wall_seconds"] = round(time.time() - start, 1)
    atomic_write_text(path, json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    log.info("wrote %s (%.0f s)", path, result["wall_seconds"])
    return result


def _weight_space(args, figures: Path) -> Dict:
    adapters = args.exp_dir / "adapters"
    result = cached(args.exp_dir / "analysis" / "weights.json", lambda: weights.weight_analysis(adapters), args.force)
    weights.plot_similarity(result, figures / "weight_similarity")
    weights.plot_dendrogram(result, figures / "weight_dendrogram")
    weights.plot_spectra(result, figures / "weight_spectra")
    return result


def _loaded_model(args) -> Tuple[Any, List[Dict]]:
    """The base with the bank of `--exp_dir` loaded, and the adapters' configs."""
    from espnet_ext.bin.decode import load_adapters
    from espnet_ext.models.registry import load_model

    loaded = load_model(args.model, model_path=args.model_path)
    configs = load_adapters(loaded, args.exp_dir / "adapters")
    loaded.asr_model.eval()
    return loaded, configs


def _probe_study(args, name: str, per_language: int, option: str, run: Callable[[Path], Dict]) -> Optional[Dict]:
    """A study read on a probe subset of --probe_data (`per_language` utterances of each language, written
    to <exp_dir>/analysis/probe_<name>): `run(subset)` cached as <exp_dir>/analysis/<name>.json; None where
    the study was neither asked for (`option` 0) nor run before."""
    from espnet_ext.analysis.subsets import probe_subset

    path = args.exp_dir / "analysis" / f"{name}.json"
    if not path.is_file() and not per_language:
        return None
    if per_language and args.probe_data is None:
        raise AnalysisInputError(f"{option} needs --probe_data (a Kaldi dir with utt2lang)")
    subset = args.exp_dir / "analysis" / f"probe_{name}"
    return cached(path, lambda: run(probe_subset(args.probe_data, per_language, subset)), args.force and bool(per_language))


def _layer_importance(args, loaded, configs: List[Dict], figures: Path) -> Optional[Section]:
    from espnet_ext.analysis.importance import layer_importance
    from espnet_ext.bin.decode import input_window
    from espnet_ext.decode.search import SearchConfig

    result = _probe_study(args, "importance", args.importance_per_language, "--importance_per_language",
                          lambda probe: layer_importance(loaded, probe, args.batch_size, input_window(None, configs),
                                                         SearchConfig()))
    return None if result is None else gather.importance_section(
        result, figures, f"{args.exp_dir}/analysis/importance.json (./run.sh --stage 7 --studies layers)")


def _representations(args, loaded, figures: Path) -> Optional[Section]:
    from espnet_ext.analysis.representations import representation_analysis
    from espnet_ext.analysis.subsets import probe_subset

    path = args.exp_dir / "analysis" / "representations.json"
    if args.probe_data is None and not path.is_file():
        return None

    def compute() -> Dict:
        probe = probe_subset(args.probe_data, args.probe_per_language, args.exp_dir / "analysis" / "probe")
        return representation_analysis(loaded, probe, args.batch_size)

    result = cached(path, compute, args.force)
    return gather.representation_section(result, figures, f"{path} (stage 7)")


def _phonetic(args, loaded, figures: Path) -> Optional[Section]:
    from espnet_ext.analysis.phonetic import phonetic_probes

    path = args.exp_dir / "analysis" / "phonetic.json"
    if args.phonetic_data is None and not path.is_file():
        return None
    result = cached(path, lambda: phonetic_probes(loaded, args.phonetic_data), args.force and bool(args.phonetic_data))
    return gather.phonetic_section(result, figures, f"{path} (./run.sh --stage 7 --studies phonetic)")


def _lexical(args, loaded, configs: List[Dict], figures: Path) -> Optional[Section]:
    from espnet_ext.analysis.lexical import lexical_probes

    def run(probe: Path) -> Dict:  # the words are the most frequent of the bank's training text
        return lexical_probes(loaded, probe, Path(configs[0]["train_data"]["dir"]),
                              args.exp_dir / "analysis" / "probe_lexical_by_language", args.batch_size)

    result = _probe_study(args, "lexical", args.lexical_per_language, "--lexical_per_language", run)
    return None if result is None else gather.lexical_section(
        result, figures, f"{args.exp_dir}/analysis/lexical.json (./run.sh --stage 7 --studies lexical)")


def _zero_shot(args) -> Optional[Dict]:
    """The zero-shot transfer matrix, where the transfer study has decoded any cell."""
    from espnet_ext.analysis.transfer import zero_shot_matrix
    from espnet_ext.lora.adapter_files import bank_languages

    if not any(args.exp_dir.glob("decode_test_*_adapter_*/scores.json")):
        return None
    from espnet_ext.languages import LANGUAGES

    bank = bank_languages(args.exp_dir / "adapters")
    tests = [f"test_{lang}" for lang in LANGUAGES if lang in bank]  # the language table's order
    base = next(iter(sorted(args.exp_root.glob("*_zeroshot/decode_test_all_none"))), None)
    return zero_shot_matrix(args.exp_dir, tests, base, args.exp_dir / "decode_test_all_oracle")


UNRUN = {  # what the report lists when a study's results are absent, with the command that runs it
    "seeds": "Run-to-run spread and the same-language baseline: `./run.sh --stage 7 --studies seeds`.",
    "layers": "Layer importance: `./run.sh --stage 7 --studies layers`.",
    "transfer": "Cross-lingual zero-shot transfer matrix: `./run.sh --stage 7 --studies transfer`.",
    "phonetic": "Phonetic probes (voicing, place, manner, onset of synthesised syllables): `./run.sh --stage 7 "
                "--studies phonetic`.",
    "lexical": "Lexical probe (which frequent training words an utterance holds, per encoder layer): "
               "`./run.sh --stage 7 --studies lexical`.",
    "fewshot": "Few-shot transfer (hi->pa, hi->te, it->te at 25/100/400 utterances): `./run.sh --stage 7 --studies "
               "fewshot`.",
}


def build_sections(args, figures: Path) -> List[Section]:
    """The report in its order: baseline -> adapters -> routing -> what the adapters learned -> studies ->
    efficiency; each absent study named with its command at the end."""
    from espnet_ext.analysis.transfer import few_shot_curves

    weight_result = _weight_space(args, figures)
    loaded, configs = _loaded_model(args)
    base_parameters = parameter_counts(loaded.asr_model)["base"]
    matrix = _zero_shot(args)
    studies = {
        "seeds": gather.seeds_section(args.exp_root, args.exp_dir, weight_result),
        "layers": _layer_importance(args, loaded, configs, figures),
        "phonetic": _phonetic(args, loaded, figures),
        "lexical": _lexical(args, loaded, configs, figures),
        "transfer": gather.transfer_section(matrix, figures) if matrix else None,
        "fewshot": gather.fewshot_section(few_shot_curves(args.exp_root), figures, f"{args.exp_root}/*_r*_n*_*/"
                                          "decode_dev_*_oracle/scores.json (./run.sh --stage 7 --studies fewshot)"),
    }
    sections = [
        *gather.results_sections(args.exp_root, args.exp_dir, figures),
        gather.lid_section(args.exp_dir),
        gather.robustness_section(args.exp_root, figures),
        gather.errors_section(args.exp_dir, figures),
        gather.weight_section(weight_result, figures,
                              f"{args.exp_dir}/analysis/weights.json from {args.exp_dir}/adapters (stage 7)"),
        gather.ranks_section(args.exp_root, figures),
        _representations(args, loaded, figures),
        *studies.values(),
        gather.efficiency_section(args.exp_root, base_parameters, figures, args.exp_dir),
        gather.not_in_report([UNRUN[name] for name, section in studies.items() if section is None]),
    ]
    return [section for section in sections if section is not None]


@exits_on_user_error
def main(argv=None) -> None:
    args = start_cli(get_parser(), argv)
    if not (args.exp_dir / "adapters").is_dir():
        raise AnalysisInputError(f"{args.exp_dir}/adapters is missing: stage 7 analyses a LoRA bank; run stage 3 "
                                 "first, or give --exp_dir of a trained LoRA exp")
    figures = args.report_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    sections = build_sections(args, figures)
    unrun = [name for name in UNRUN if any(UNRUN[name] in p for s in sections for p in s.paragraphs)]
    title = f"Multilingual LoRA adapters: {args.exp_dir.name}"
    subtitle = (f"Every result under {args.exp_root}: baseline -> adapters -> routing -> analysis. Written by "
                "espnet_ext.bin.analyze (stage 7)." + (f"\n\nStudies not run yet (./run.sh --stage 7 --studies "
                                                       f"...): {', '.join(unrun)}." if unrun else ""))
    for path in write_report(title, subtitle, sections, args.report_dir):
        log.info("wrote %s", path)

if __name__ == "__main__":
    main()
