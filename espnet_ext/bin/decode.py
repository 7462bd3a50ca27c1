#!/usr/bin/env python3
"""Decode a Kaldi data dir with a registry model (stage 5 of the recipe).

Usage (one job of a run.pl JOB=1:NJ array, then the merge):
    python -m espnet_ext.bin.decode --model whisper_base --data_dir data/test_hi \
        --out_dir exp/whisper_base_zeroshot/decode_test_hi_none --job 1 --nj 2
    python -m espnet_ext.bin.decode --merge --nj 2 --out_dir exp/whisper_base_zeroshot/decode_test_hi_none

A fully fine-tuned model (train_lora --finetune full) is decoded like the base, with its weights loaded
over it: `--routing none --finetuned_dir exp/whisper_base_all_full/full_model`.

Zero-shot transfer (cross-lingual): `--routing oracle --adapter hi` decodes every utterance through the
Hindi adapter while the decoder's language token stays each utterance's own (utt2lang), e.g. data/test_te
into exp/whisper_base_all_r16/decode_test_te_adapter_hi (espnet_ext.analysis.transfer reads the matrix).

A job writes `<out_dir>/split<NJ>/<JOB>/{text,lid.json}`; the merge joins them into `<out_dir>/text`
(Kaldi `uttid transcript`) and `<out_dir>/lid.json` (language used and the model's own language
posteriors per utterance). Any Kaldi data dir with `wav.scp text utt2lang` works, also outside data/.
"""
import argparse
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch

from espnet_ext.bin.cli import (
    exits_on_user_error, parse_args_with_config, peak_memory_mb, resolved_args_yaml, save_resolved_args, str2bool,
)
from espnet_ext.data.kaldi import (
    SEGMENTS_LANG, LanguageSegment, Utterance, check_segments, read_data_dir, read_segments_json, read_segments_lang,
)
from espnet_ext.decode.int8 import PARTS as INT8_PARTS
from espnet_ext.decode.search import SearchConfig
from espnet_ext.decode.transcribe import JOB_DONE, DecodeOptions, decode_data_dir, merge_jobs
from espnet_ext.fileio import atomic_write_text
from espnet_ext.lora.inject import parameter_counts
from espnet_ext.routing.routers import DEFAULT_TAU, ROUTINGS, SOFT_TEMPERATURE, make_router

log = logging.getLogger("decode")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--nj", type=int, default=1, help="number of jobs the data dir is split into")
    p.add_argument("--merge", action="store_true", help="join the jobs' outputs instead of decoding")
    p.add_argument("--job", type=int, default=1, help="this job's index, 1..nj")
    p.add_argument("--model", default="whisper_base", help="registry name (see espnet_ext.models.registry)")
    p.add_argument("--model_path", default=None, help="local weights for models that need them")
    p.add_argument("--data_dir", type=Path, help="Kaldi data dir with wav.scp, text, utt2lang")
    p.add_argument("--language", choices=["oracle", "detect"], default="oracle",
                   help="with --routing none: force each utterance's language from utt2lang, or let the "
                        "model detect it")
    p.add_argument("--routing", choices=list(ROUTINGS), default="none",
                   help="; ".join(f"{k.name}: {k.help}" for k in ROUTINGS.values()) + " (lid.json records the source)")
    p.add_argument("--adapter_dir", type=Path, default=None,
                   help="<exp>/adapters holding <lang>/{adapter_config.json,adapter_model.safetensors}")
    p.add_argument("--adapter", default=None,
                   help="with --routing oracle: every utterance through this adapter of the bank (and the shared "
                        "adapter where the layout has one), its language token still utt2lang's: zero-shot "
                        "transfer, e.g. decode_test_te_adapter_hi (espnet_ext.analysis.transfer)")
    p.add_argument("--lid_dir", type=Path, default=None,
                   help="a LID head (lid_config.json + lid_model.safetensors, stage 4) for the routings that "
                        "read the tap: " + ", ".join(k.name for k in ROUTINGS.values() if k.source == "lid_head"))
    p.add_argument("--temperature", type=float, default=SOFT_TEMPERATURE,
                   help="soft routing: w = softmax(log p / T) (default: chosen on dev)")
    p.add_argument("--tau", type=float, default=None,
                   help=f"threshold routing: hard when the top posterior >= tau (default: the LID head's, set on dev "
                        f"by stage 4; {DEFAULT_TAU:g} for a head without one)")
    p.add_argument("--top_k", type=int, default=2, help="threshold routing: adapters mixed below tau")
    p.add_argument("--language_candidates", type=int, default=1,
                   help="where the routing mixes languages (soft, threshold below tau, hierarchical), decode with "
                        "each of the top N languages (its decoder adapter and token) and keep the best-scoring; "
                        "1 = the top language's token only")
    p.add_argument("--min_confidence", type=float, default=0.0,
                   help="LID routings: below this top posterior, decode with the base model (0: never)")
    p.add_argument("--finetuned_dir", type=Path, default=None,
                   help="<exp>/full_model of a --finetune full training, holding model_config.json and "
                        "model.safetensors: decode that model instead of the base (with --routing none)")
    p.add_argument("--segments", default=None,
                   help="code-switched speech with --routing oracle: decode each language segment alone, its "
                        "language forced: `oracle` (the data dir's segments_lang) or a segments JSON of "
                        "espnet_ext.bin.codeswitch_lid (predicted segments)")
    p.add_argument("--one_pass", type=str2bool, default=False,
                   help="with --segments: encode each utterance once, every frame through its segment's adapter, "
                        "and decode each segment over its own frames (default: re-encode each segment alone)")
    p.add_argument("--pad_to_30s", type=str2bool, default=None,
                   help="encode the 30 s window or the real length; default: what the adapters or the "
                        "fine-tuned model were trained on (their config's pad_to_30s), and for the base "
                        "model alone the 30 s window it was trained on")
    p.add_argument("--beam_size", type=int, default=1, help="1 = greedy")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--max_tokens", type=int, default=SearchConfig.max_tokens)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--ngpu", type=int, default=0, help="0: CPU; 1: decode on the first CUDA device")
    p.add_argument("--int8", choices=INT8_PARTS, default="none",
                   help="CPU: run these parts on int8 weights (dynamic quantisation) where an adapter is merged or "
                        "none is loaded; faster, at a WER cost (README, decoding speed)")
    return p


def load_adapters(model, adapter_dir) -> List[Dict[str, Any]]:
    """Load every language's adapter under `adapter_dir` into one LoRA bank of `model`; their configs.
    Shared by the CLIs (decode, train_lid, lid_probe, transcribe): errors are AdapterFileErrors, which
    each CLI prints under its own name."""
    from espnet_ext.lora.adapter_files import bank_languages, load_adapter_bank

    langs = bank_languages(adapter_dir)
    configs = load_adapter_bank(model.asr_model, adapter_dir, langs, model.name, model.fingerprint)
    layout = configs[langs[0]].get("layout", {}).get("kind", "per_language")
    log.info("loaded LoRA adapters %s from %s (layout %s)", ", ".join(configs), adapter_dir, layout)
    return list(configs.values())


def load_lid_head(model, lid_dir: Optional[Path]):
    """The LID head in `lid_dir`, checked against the base `model`."""
    from espnet_ext.lid.heads import LIDFileError, load_head

    if lid_dir is None:
        raise LIDFileError("this --routing reads a LID head on the tap; give --lid_dir <exp>/lid/<head> (stage 4 "
                           "trains it)")
    head = load_head(lid_dir, model.name, model.fingerprint)
    log.info("loaded LID head %s (%s on encoder layer %d, %s)", lid_dir, head.kind, head.layer, ", ".join(head.languages))
    return head.to(next(model.asr_model.parameters()).device)


def load_finetuned_model(model, finetuned_dir: Path) -> Dict[str, Any]:
    """Load the fully fine-tuned weights in `finetuned_dir` over the registry base `model`; their config."""
    from espnet_ext.models.finetuned import load_finetuned

    config = load_finetuned(model.asr_model, finetuned_dir, model.name, model.fingerprint)
    log.info("loaded the fine-tuned weights of %s from %s", model.name, finetuned_dir)
    return config


def input_window(requested: Optional[bool], trained_configs: Sequence[Mapping[str, Any]]) -> bool:
    """pad_to_30s for decoding: `requested`, or else the input length the loaded weights were trained on.

    Adapters trained on the real length and decoded on the 30 s window (or the reverse) lose much of
    what they learned, so the default follows their training record; a deliberate mismatch is logged.
    """
    trained = {bool(c["pad_to_30s"]) for c in trained_configs if "pad_to_30s" in c}
    if len(trained) > 1:
        raise SystemExit("decode.py: the adapters were trained on different input lengths (pad_to_30s true and "
                         "false in their adapter_config.json); decode them separately")
    if requested is None:
        return trained.pop() if trained else True
    if trained and requested not in trained:
        log.warning("decoding with pad_to_30s %s, but the weights were trained with pad_to_30s %s",
                    requested, not requested)
    return requested


def read_segments(spec: str, data_dir: Path, utterances: List[Utterance],
                  routing: str) -> Dict[str, List[LanguageSegment]]:
    """`--segments`: `oracle` reads `<data_dir>/segments_lang`; a path, a codeswitch_lid segments JSON;
    either checked against the data dir's `utterances` (check_segments) before any model loads."""
    if routing != "oracle":
        raise SystemExit(f"decode.py: --segments decodes each segment with its own language forced; use it with "
                         f"--routing oracle, not {routing}")
    segments = read_segments_lang(data_dir) if spec == "oracle" else read_segments_json(spec)
    check_segments(segments, utterances, data_dir, data_dir / SEGMENTS_LANG if spec == "oracle" else spec)
    return segments


def check_transfer_adapter(adapter: str, adapter_dir: Optional[Path], routing: str, segments: bool) -> None:
    """`--adapter`, before any model loads: oracle routing of whole utterances, and one of the bank's
    adapters (a name outside it would silently decode with the base model)."""
    from espnet_ext.lora.adapter_files import AdapterFileError, bank_languages

    if routing != "oracle" or segments:
        raise SystemExit(f"decode.py: --adapter {adapter} sends whole utterances through one adapter with their own "
                         f"language token; use it with --routing oracle and without --segments (got --routing {routing}"
                         f"{', --segments' if segments else ''})")
    langs = bank_languages(adapter_dir)
    if adapter not in langs:
        raise AdapterFileError(f"--adapter {adapter}: {adapter_dir} holds no adapter {adapter!r}; its bank's languages "
                               f"are {', '.join(langs)}: pick one of them")


@exits_on_user_error
def main(argv=None) -> None:
    args = parse_args_with_config(get_parser(), argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.nj < 1:
        raise SystemExit(f"decode.py: --nj {args.nj}: give the number of jobs the data dir is split into, 1 or more")
    if args.merge:
        n = merge_jobs(args.out_dir, args.nj)
        log.info("merged %d jobs: %d utterances -> %s/text", args.nj, n, args.out_dir)
        return
    if args.data_dir is None:
        raise SystemExit("decode.py: --data_dir is required unless --merge is given")
    if args.finetuned_dir is not None and args.routing != "none":
        raise SystemExit(f"decode.py: --finetuned_dir decodes a fully fine-tuned model, which has no adapters to "
                         f"route; use it with --routing none, not {args.routing} (--language oracle|detect "
                         "picks the language)")
    if not 1 <= args.job <= args.nj:
        raise SystemExit(f"decode.py: --job {args.job} is not one of the --nj {args.nj} jobs; give --job 1 to "
                         f"{args.nj}")
    utterances = read_data_dir(args.data_dir)  # a bad data dir stops here, before the model loads
    segments = read_segments(args.segments, args.data_dir, utterances, args.routing) if args.segments else None
    if args.adapter is not None:
        check_transfer_adapter(args.adapter, args.adapter_dir, args.routing, segments is not None)
    if args.one_pass and segments is None:
        raise SystemExit("decode.py: --one_pass true routes the frames of language segments; give --segments too")
    job_dir = args.out_dir / f"split{args.nj}" / str(args.job)
    request = resolved_args_yaml(args)  # a rerun with the same options skips the job, any change redoes it
    if (job_dir / JOB_DONE).is_file() and (job_dir / JOB_DONE).read_text(encoding="utf-8") == request:
        log.info("job %d of %d already decoded with these options (%s); a rerun redoes only unfinished jobs",
                 args.job, args.nj, job_dir / JOB_DONE)
        return
    if args.int8 != "none" and args.ngpu > 0:
        raise SystemExit(f"decode.py: --int8 {args.int8} quantises for CPU decoding; drop it when decoding with --ngpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    from espnet_ext.models.registry import load_model

    start = time.time()
    device = "cuda" if args.ngpu > 0 else "cpu"
    model = load_model(args.model, device=device, model_path=args.model_path)
    trained_configs = []
    if args.routing != "none":
        trained_configs += load_adapters(model, args.adapter_dir)
    if args.finetuned_dir is not None:
        trained_configs.append(load_finetuned_model(model, args.finetuned_dir))
    args.pad_to_30s = input_window(args.pad_to_30s, trained_configs)
    source = ROUTINGS[args.routing].source
    lid = load_lid_head(model, args.lid_dir) if source == "lid_head" else None
    if args.tau is None:
        args.tau = lid.tau if lid is not None and lid.tau is not None else DEFAULT_TAU
    router = make_router(args.routing, args.temperature, args.tau, args.top_k, args.min_confidence,
                         lid.lid_only_min if lid is not None else None)
    model.asr_model.eval()
    log.info("loaded %s (%d base parameters) in %.1f s", args.model, parameter_counts(model.asr_model)["base"],
             time.time() - start)
    options = DecodeOptions(
        search=SearchConfig(beam_size=args.beam_size, max_tokens=args.max_tokens),
        batch_size=args.batch_size,
        pad_to_30s=args.pad_to_30s,
        detect_language=source in ("language_token", "lid_head") or (source == "none" and args.language == "detect"),
        language_candidates=args.language_candidates,
        adapter=args.adapter,
        int8=args.int8,
    )
    start = time.time()
    n = decode_data_dir(model, args.data_dir, job_dir, options, args.job, args.nj, lid, router, segments,
                        args.one_pass, utterances=utterances)
    atomic_write_text(job_dir / JOB_DONE, request)  # after the job's text and lid.json: the job is complete
    save_resolved_args(args, args.out_dir / "decode_args.yaml")  # only now: a failed run keeps the last record
    log.info("decoded %d utterances in %.1f s (peak memory %.0f MB) -> %s", n, time.time() - start, peak_memory_mb(),
             job_dir)


if __name__ == "__main__":
    main()
