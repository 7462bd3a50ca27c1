#!/usr/bin/env python3
"""Where the language changes: frame-level LID on the tap of code-switched sets, against their
`segments_lang` (local/make_codeswitch.py), for one or more Viterbi switch penalties and minimum
segment lengths (every pair of the two lists).

The track comes from the frame tagger on one encoder pass when --lid_dir holds one (stage 4 with
--codeswitch true trains it: espnet_ext.bin.train_tagger), else from an utterance head on sliding
windows (espnet_ext.lid.segments).

Usage (the default run's bank and tagger; tune the penalty on dev, report it on test):
    python -m espnet_ext.bin.codeswitch_lid --model whisper_base --adapter_dir exp/whisper_base_all_r16/adapters \\
        --lid_dir exp/whisper_base_all_r16/lid/tagger \\
        --data_dir data/dev_cs_inter data/dev_cs_intra data/dev_cs_rapid \\
        --out_dir exp/whisper_base_all_r16/codeswitch_lid/dev --penalties 2 4 8 16 32 64 --min_segments 0 0.5 1
    ... --data_dir data/test_cs_* --out_dir exp/.../codeswitch_lid/test      # the penalty chosen on dev

Per set, penalty and minimum: switches detected within TOLERANCE_S of a true one (each true switch matched to at
most one predicted, nearest first), the boundary error of the detected ones (median, 90th percentile,
ms), missed switches, and false switches per minute of audio; segment LID accuracy (a true segment
counts as right when the language predicted over most of its frames is its own) and frame accuracy.
On the window track each predicted switch is first moved to the quietest moment within --pause_reach of it.
Writes `cs_lid.md` / `cs_lid.json` (keyed `<penalty>_<min>`), each set's predicted segments
(`<set>/segments_<penalty>_<min>.json`, and the first pair's as `<set>/segments.json`, which the
recipe's --codeswitch decodes read) and a
grid PNG per set of the first utterances' posteriors over time, the true (solid) and predicted
(dashed) boundaries drawn in.
"""
import argparse
import itertools
import json
import logging
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch
from tqdm import tqdm

from espnet_ext.bin.cli import exits_on_user_error, start_cli
from espnet_ext.data.audio import utterance_audio
from espnet_ext.data.kaldi import DataDirError, LanguageSegment, read_data_dir, read_segments_lang, write_segments_json
from espnet_ext.fileio import atomic_write_text
from espnet_ext.lid.segments import (
    DEFAULT_MIN_SEGMENT_S, FRAMES_PER_SECOND, HOP_SECONDS, WINDOW_SECONDS, frames_in, is_tagger, language_at,
    language_track, snap_to_pauses, tap_encoder, track_settings, viterbi_segments,
)

log = logging.getLogger("codeswitch_lid")
TOLERANCE_S = 0.5  # the project plan's: a switch is detected within 0.5 s


def switch_times(segments: Sequence[LanguageSegment]) -> List[float]:
    return [s.start for s in segments[1:]]


def match_switches(true: Sequence[float], predicted: Sequence[float], tolerance: float = TOLERANCE_S) -> List[float]:
    """Errors (s) of the true switches matched one-to-one to a predicted one within `tolerance`, the
    closest pairs first."""
    pairs = sorted((abs(t - p), i, j) for i, t in enumerate(true) for j, p in enumerate(predicted))
    used_true, used_pred, errors = set(), set(), []
    for distance, i, j in pairs:
        if distance <= tolerance and i not in used_true and j not in used_pred:
            used_true.add(i), used_pred.add(j), errors.append(distance)
    return errors


def evaluate_set(truth: Dict[str, List[LanguageSegment]], predicted: Dict[str, List[LanguageSegment]],
                 frame_truth: Dict[str, np.ndarray], frame_pred: Dict[str, np.ndarray], seconds: float) -> Dict:
    errors, n_true, n_pred, right_segments, n_segments = [], 0, 0, 0, 0
    for utt, segments in truth.items():
        true_switches, pred_switches = switch_times(segments), switch_times(predicted[utt])
        errors += match_switches(true_switches, pred_switches)
        n_true, n_pred = n_true + len(true_switches), n_pred + len(pred_switches)
        centres = (np.arange(len(frame_pred[utt])) + 0.5) / FRAMES_PER_SECOND
        for seg in segments:
            inside = frame_pred[utt][(centres >= seg.start) & (centres < seg.end)]
            if len(inside):
                values, counts = np.unique(inside.astype(str), return_counts=True)
                right_segments += values[counts.argmax()] == seg.lang
                n_segments += 1
    frames_right = sum(int((frame_pred[u] == frame_truth[u]).sum()) for u in truth)
    frames_all = sum(len(frame_truth[u]) for u in truth)
    ms = 1000 * np.asarray(errors) if errors else np.asarray([np.nan])
    return {"utterances": len(truth), "minutes": seconds / 60, "switches": n_true,
            "detected": len(errors) / max(1, n_true), "missed": n_true - len(errors),
            "false_per_min": (n_pred - len(errors)) / (seconds / 60),
            "boundary_ms_median": float(np.median(ms)), "boundary_ms_p90": float(np.percentile(ms, 90)),
            "segment_accuracy": right_segments / max(1, n_segments), "frame_accuracy": frames_right / max(1, frames_all)}


def to_seconds(frame_segments, languages: Sequence[str]) -> List[LanguageSegment]:
    return [LanguageSegment(s.start / FRAMES_PER_SECOND, s.end / FRAMES_PER_SECOND, languages[s.lang])
            for s in frame_segments]


def plot_grid(examples: List[Dict], languages: Sequence[str], path: Path, title: str) -> None:
    """Posteriors over time per example; true switches solid black, predicted dashed red."""
    from espnet_ext.analysis.plotting import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(len(examples), 1, figsize=(10, 1.9 * len(examples)), squeeze=False)
    for ax, ex in zip(axes[:, 0], examples):
        seconds = (np.arange(len(ex["posteriors"])) + 0.5) / FRAMES_PER_SECOND
        for k, lang in enumerate(languages):
            ax.plot(seconds, ex["posteriors"][:, k], label=lang, linewidth=1.2)
        for t in switch_times(ex["truth"]):
            ax.axvline(t, color="black", linewidth=1.5)
        for t in switch_times(ex["predicted"]):
            ax.axvline(t, color="red", linestyle="--", linewidth=1.2)
        truth = " | ".join(s.lang for s in ex["truth"])
        ax.set_title(f"{ex['utt']}   true: {truth}", fontsize=8, loc="left")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("p(lang)", fontsize=8)
    axes[0, 0].legend(ncol=len(languages), fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds (black: true switch, dashed red: predicted)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def track_name(head, window: float, hop: float) -> str:
    if is_tagger(head):
        return "frame tagger on one encoder pass"
    return f"{head.kind} head, {window:g} s windows every {hop:g} s"


def table(results: Dict[str, Dict[str, Dict]]) -> str:
    rows = ["| set | penalty | min segment s | switches | detected within 0.5 s | missed | false / min | "
            "boundary ms median / p90 | segment LID acc | frame acc |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, by_setting in results.items():
        for setting, r in by_setting.items():
            penalty, min_segment = setting.split("_")
            rows.append(f"| {name} | {penalty} | {min_segment} | {r['switches']} | {100 * r['detected']:.1f}% | "
                        f"{r['missed']} | "
                        f"{r['false_per_min']:.2f} | {r['boundary_ms_median']:.0f} / {r['boundary_ms_p90']:.0f} | "
                        f"{100 * r['segment_accuracy']:.1f}% | {100 * r['frame_accuracy']:.1f}% |")
    return "\n".join(rows) + "\n"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="whisper_base")
    p.add_argument("--model_path", default=None)
    p.add_argument("--adapter_dir", type=Path, default=None, help="the bank whose tap the head reads")
    p.add_argument("--lid_dir", type=Path, required=True, help="<exp>/lid/<head>")
    p.add_argument("--data_dir", type=Path, nargs="+", required=True, help="code-switched dirs with segments_lang")
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--penalties", type=float, nargs="+", default=None,
                   help="Viterbi switch penalties (nats) to evaluate; tune on dev (default: the one chosen for the "
                        "head's track, espnet_ext.lid.segments)")
    p.add_argument("--min_segments", type=float, nargs="+", default=[DEFAULT_MIN_SEGMENT_S],
                   help="shortest segments (s) the Viterbi path may hold, each with every penalty; tune on dev")
    p.add_argument("--pause_reach", type=float, default=None,
                   help="move each switch to the quietest moment within this many seconds of it (0: leave it; "
                        "default: the one chosen for the head's track, espnet_ext.lid.segments)")
    p.add_argument("--window", type=float, default=WINDOW_SECONDS, help="seconds of audio per LID window")
    p.add_argument("--hop", type=float, default=HOP_SECONDS, help="seconds between LID windows")
    p.add_argument("--plots", type=int, default=6, help="utterances drawn per set (0: no plot)")
    p.add_argument("--threads", type=int, default=0)
    return p


@exits_on_user_error
def main(argv=None) -> None:
    args = start_cli(get_parser(), argv)
    if args.penalties and min(args.penalties) < 0:
        get_parser().error(f"--penalties {' '.join(f'{p:g}' for p in args.penalties)}: a switch penalty is a cost in "
                           f"nats, 0 or more")
    if min(args.min_segments) < 0:
        get_parser().error(f"--min_segments {' '.join(f'{m:g}' for m in args.min_segments)}: a segment's minimum "
                           f"length is in seconds, 0 or more ({DEFAULT_MIN_SEGMENT_S:g} is the default)")
    from espnet_ext.bin.decode import load_lid_head
    from espnet_ext.bin.train_lid import tap_layer
    from espnet_ext.models.registry import load_model

    try:
        truth_by_set = {d.name: read_segments_lang(d) for d in args.data_dir}
    except DataDirError as err:
        raise SystemExit(f"codeswitch_lid.py: {err}")
    loaded = load_model(args.model, model_path=args.model_path)
    head = load_lid_head(loaded, args.lid_dir)
    tap_layer(loaded, args.adapter_dir, head.layer)
    loaded.asr_model.eval()
    encode = tap_encoder(loaded, head.layer)
    settings = track_settings(head)
    penalties = args.penalties or [settings.switch_penalty]
    pause_reach = settings.pause_reach_s if args.pause_reach is None else args.pause_reach
    languages, results = list(head.languages), {}
    for data_dir in args.data_dir:
        truth = truth_by_set[data_dir.name]
        utterances = read_data_dir(data_dir)
        audio = {u.utt_id: torch.from_numpy(utterance_audio(u)) for u in utterances}
        posteriors = {u: language_track(encode, head, wave, args.window, args.hop)
                      for u, wave in tqdm(audio.items(), desc=f"LID over time {data_dir.name}", unit="utt")}
        frame_truth = {u: language_at(truth[u], len(p)) for u, p in posteriors.items()}
        seconds = sum(u.duration for u in utterances)
        results[data_dir.name], drawn = {}, None
        for penalty, min_segment in itertools.product(penalties, args.min_segments):
            predicted = {u: to_seconds(snap_to_pauses(viterbi_segments(p, penalty, frames_in(min_segment)),
                                                      audio[u].numpy(), pause_reach), languages)
                         for u, p in posteriors.items()}
            frame_pred = {u: language_at(predicted[u], len(p)) for u, p in posteriors.items()}
            setting = f"{penalty:g}_{min_segment:g}"
            results[data_dir.name][setting] = evaluate_set(truth, predicted, frame_truth, frame_pred, seconds)
            write_segments_json(args.out_dir / data_dir.name / f"segments_{setting}.json", predicted)
            if drawn is None:  # the first pair's segments: the plots' and the recipe's (<set>/segments.json)
                drawn = predicted
                write_segments_json(args.out_dir / data_dir.name / "segments.json", predicted)
        penalty, min_segment = penalties[0], args.min_segments[0]
        examples = [{"utt": u, "posteriors": posteriors[u].numpy(), "truth": truth[u], "predicted": drawn[u]}
                    for u in sorted(posteriors)[: args.plots]]
        if examples:
            plot_grid(examples, languages, args.out_dir / f"{data_dir.name}.png",
                      f"{data_dir.name}: LID posteriors over time ({track_name(head, args.window, args.hop)}, "
                      f"penalty {penalty:g}" + (f", segments >= {min_segment:g} s" if min_segment else "")
                      + (f", switches moved to pauses within {pause_reach:g} s" if pause_reach else "") + ")")
    report = table(results)
    atomic_write_text(args.out_dir / "cs_lid.md", report)
    atomic_write_text(args.out_dir / "cs_lid.json", json.dumps(results, indent=1) + "\n")
    print(report, end="")


if __name__ == "__main__":
    main()
