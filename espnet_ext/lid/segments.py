"""Language over time: frame-level posteriors (a track), smoothed into segments.

Two tracks (`language_track`). The frame tagger (espnet_ext.lid.heads.TaggerHead, trained on
code-switched speech) gives each tap frame of one encoder pass over the recording its posteriors:
the default wherever a tagger was trained (README, "Code-switched speech": on the test sets it
finds 96-100% of the switches within 0.5 s where the windows found 29-95%). An utterance-level head
instead maps a stretch of tap frames to posteriors; run on sliding windows of the audio
(WINDOW_SECONDS long, every HOP_SECONDS, each encoded alone up to the tap) it gives a track in which
each tap frame takes the window centred nearest to it. Either track is noisy, so it is cut into
segments by Viterbi decoding over the languages: the best path maximises the summed log posteriors
minus `switch_penalty` per change of language (an HMM whose switch probability is exp(-penalty)),
optionally with every segment at least `min_frames` long (a chain of states per language). A larger
penalty or minimum trades missed switches for fewer false ones; both are tuned on the dev code-
switched sets. A minimum finds more switches at the same false rate, but each false segment it keeps
is longer, so transcripts lose: measured, it is off by default (README: "Code-switched speech"). Then
on the window track each switch moves to the quietest moment near it (snap_to_pauses).
"""
from dataclasses import dataclass
from typing import Callable, List, Sequence

import numpy as np
import torch

from espnet_ext.data.audio import SAMPLE_RATE, quietest_point
from espnet_ext.data.kaldi import LanguageSegment

FRAMES_PER_SECOND = 50  # Whisper's encoder (and the tap) emit one state per 20 ms
SAMPLES_PER_FRAME = SAMPLE_RATE // FRAMES_PER_SECOND
WINDOW_SECONDS = 1.0
HOP_SECONDS = 0.25
# README: "Code-switched speech" for how each was chosen
# the shortest segment (s) the path may hold: none, because 24 nats with 1 s found more test switches at
# the same false rate but raised inter-sentential WER with predicted segments by 12% [4, 22]
DEFAULT_MIN_SEGMENT_S = 0.0


@dataclass(frozen=True)
class TrackSettings:
    """What cuts a track into the segments decoding uses, chosen on dev for each kind of track."""

    switch_penalty: float  # nats per switch: the least at which every dev kind has at most 2 false switches/min
    pause_reach_s: float  # each switch moves to the quietest PAUSE_SECONDS within this many seconds (0: stays)


# The windows (penalty over 32/64/96/128/192 with the default head): a switch is placed only to within a
# hop, often inside a word, so it moves to a pause (0.4 s, set before measuring): predicted-segment WER
# -10% [-18, -3] inter-sentential, -12% [-22, -2] intra, -12% [-21, +1] rapid on the default run's test sets.
WINDOW_TRACK = TrackSettings(switch_penalty=96.0, pause_reach_s=0.4)
# The frame tagger (penalty over 2/4/8/16/32/64): its switches lie 6 ms (median) from the true ones, and
# moving them to pauses raised dev predicted-segment WER: inter 31.6 -> 35.1, intra 43.4 -> 71.9, rapid
# 88.8 -> 147.0.
TAGGER_TRACK = TrackSettings(switch_penalty=32.0, pause_reach_s=0.0)
DEFAULT_SWITCH_PENALTY = WINDOW_TRACK.switch_penalty  # viterbi_segments' default
PAUSE_SECONDS = 0.05


@dataclass(frozen=True)
class FrameSegment:
    """Frames [start, end) of one language (an index into the head's languages)."""

    start: int
    end: int
    lang: int


@torch.no_grad()
def window_posteriors(encode: Callable[[torch.Tensor], torch.Tensor], head, audio: torch.Tensor,
                      window_s: float = WINDOW_SECONDS, hop_s: float = HOP_SECONDS, batch: int = 16) -> torch.Tensor:
    """`[frames, languages]` posteriors over one recording's tap frames (FRAMES_PER_SECOND): every
    `window_s` stretch starting each `hop_s` is encoded alone up to the tap by `encode` (`[n, samples]`
    -> `[n, frames, width]`) and judged by the head (the whole recording if shorter); each frame takes
    the window whose centre is nearest. Encoding windows alone matters: the encoder attends over its
    whole input, so the states of one pass over a code-switched recording carry both languages in
    every frame (measured on the dev code-switched sets: switches detected 34-67% -> see the README)."""
    frames = max(1, len(audio) // SAMPLES_PER_FRAME)
    width, hop = round(window_s * SAMPLE_RATE), round(hop_s * SAMPLE_RATE)
    starts = list(range(0, max(1, len(audio) - width + 1), hop))
    if len(audio) > width and starts[-1] != len(audio) - width:
        starts.append(len(audio) - width)
    chunks = [audio[s:s + width] for s in starts]
    track = []
    for i in range(0, len(chunks), batch):
        states = encode(torch.stack(chunks[i:i + batch]))
        track.append(head(states, torch.full((states.size(0),), states.size(1))))
    track = torch.cat(track)
    centres = (torch.tensor(starts, dtype=torch.float32) + min(width, len(audio)) / 2) / SAMPLES_PER_FRAME
    nearest = (torch.arange(frames, dtype=torch.float32)[:, None] + 0.5 - centres[None]).abs().argmin(1)
    return track[nearest]


@torch.no_grad()
def one_pass_posteriors(encode: Callable[[torch.Tensor], torch.Tensor], tagger, audio: torch.Tensor) -> torch.Tensor:
    """`[frames, languages]` posteriors of the frame tagger over one encoder pass of the whole recording
    (`frames` as window_posteriors counts them: the tap's last frame repeated or dropped to match)."""
    frames = max(1, len(audio) // SAMPLES_PER_FRAME)
    states = encode(audio[None])
    track = tagger.frame_posteriors(states, torch.tensor([states.size(1)]))[0]
    return track[torch.arange(frames).clamp_max(len(track) - 1)]


def language_track(encode: Callable[[torch.Tensor], torch.Tensor], head, audio: torch.Tensor,
                   window_s: float = WINDOW_SECONDS, hop_s: float = HOP_SECONDS) -> torch.Tensor:
    """`[frames, languages]`: the tagger's one pass if `head` is a frame tagger, else its sliding windows."""
    if is_tagger(head):
        return one_pass_posteriors(encode, head, audio)
    return window_posteriors(encode, head, audio, window_s, hop_s)


def is_tagger(head) -> bool:
    """Whether `head` gives posteriors frame by frame (a TaggerHead) rather than per stretch."""
    return hasattr(head, "frame_posteriors")


def track_settings(head) -> TrackSettings:
    """The switch penalty and pause reach chosen on dev for `head`'s track."""
    return TAGGER_TRACK if is_tagger(head) else WINDOW_TRACK


def language_at(segments: Sequence[LanguageSegment], frames: int) -> np.ndarray:
    """The language of each tap frame (frame t covers [t, t+1) / FRAMES_PER_SECOND s, taken at its centre):
    the frame labels a tagger trains on and the truth a track is scored against."""
    centres = (np.arange(frames) + 0.5) / FRAMES_PER_SECOND
    labels = np.full(frames, segments[-1].lang, dtype=object)
    for seg in reversed(segments):
        labels[centres < seg.end] = seg.lang
    return labels


def tap_encoder(loaded, layer: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """`encode` for language_track: equal-length windows (or one recording) through `loaded` up to the tap,
    in the model's current routing state (the caller puts it in the tap's: espnet_ext.lora.inject.route_for_tap)."""
    from espnet_ext.models.whisper_forward import Tap

    def encode(windows: torch.Tensor) -> torch.Tensor:
        lengths = torch.full((windows.size(0),), windows.size(1))
        out = loaded.family.encode(loaded.asr_model, windows, lengths, False, tap=Tap(layer, stop=True))
        return out.tapped.float()

    return encode


def duration_transitions(langs: int, min_frames: int, switch_penalty: float) -> torch.Tensor:
    """Log transition weights `[states, states]` of the segmenting HMM. Each language is a left-to-right
    chain of `min_frames` states, entered at its first and left (to another language's first, at
    `-switch_penalty`) only from its last, which may also repeat: so every segment lasts at least
    `min_frames` frames, and a blip shorter than that cannot become a segment however confident it
    is. With `min_frames` 1 each language is one state: the plain switch-penalty HMM."""
    states = langs * min_frames
    trans = torch.full((states, states), float("-inf"))
    for lang in range(langs):
        first, last = lang * min_frames, (lang + 1) * min_frames - 1
        trans[torch.arange(first, last), torch.arange(first + 1, last + 1)] = 0.0  # along the chain
        trans[last, last] = 0.0  # stay, once the minimum is reached
        for other in range(langs):
            if other != lang:
                trans[last, other * min_frames] = -switch_penalty
    return trans


def frames_in(seconds: float) -> int:
    """The tap frames in `seconds`, at least one: a minimum segment length as viterbi_segments takes it."""
    return max(1, round(seconds * FRAMES_PER_SECOND))


def viterbi_segments(posteriors: torch.Tensor, switch_penalty: float = DEFAULT_SWITCH_PENALTY,
                     min_frames: int = frames_in(DEFAULT_MIN_SEGMENT_S)) -> List[FrameSegment]:
    """The most likely language path through `posteriors` `[frames, L]` with `switch_penalty` nats per
    change of language and every segment at least `min_frames` long (all of it if shorter), as
    segments in time order (at least one)."""
    log_p = posteriors.float().clamp_min(1e-8).log()
    frames, langs = log_p.shape
    chain = max(1, min(min_frames, frames))  # a recording shorter than the minimum is one segment
    trans = duration_transitions(langs, chain, switch_penalty)
    emit = log_p.repeat_interleave(chain, dim=1)  # a state emits its language's log posterior
    score = torch.full((langs * chain,), float("-inf"))
    score[::chain] = emit[0, ::chain]  # a path starts at a language's first state
    back = torch.zeros(frames, langs * chain, dtype=torch.long)
    for t in range(1, frames):
        best, back[t] = (score[:, None] + trans).max(0)
        score = best + emit[t]
    state = (chain - 1) + chain * int(score[chain - 1::chain].argmax())  # and ends at a last state
    path = [state]
    for t in range(frames - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return runs([s // chain for s in path[::-1]])


def snap_to_pauses(segments: Sequence[FrameSegment], audio: np.ndarray, reach_s: float,
                   pause_s: float = PAUSE_SECONDS) -> List[FrameSegment]:
    """The segments with each switch moved to the centre of the quietest `pause_s` of `audio` within
    `reach_s` of it (each segment kept at least one frame long; `reach_s` 0 leaves them). The window
    track places a switch only to within a hop, often inside a word; a cut inside a word costs both sides
    their edge words, while speakers mostly pause where they change language."""
    width, reach = max(1, round(pause_s * SAMPLE_RATE)), round(reach_s * SAMPLE_RATE)
    snapped = list(segments)
    for i in range(1, len(snapped)):
        switch = snapped[i].start * SAMPLES_PER_FRAME
        lo, hi = max(0, switch - reach), min(len(audio), switch + reach)
        if hi - lo > width:
            frame = round(quietest_point(audio, lo, hi, width) / SAMPLES_PER_FRAME)
            frame = min(max(frame, snapped[i - 1].start + 1), snapped[i].end - 1)
            snapped[i - 1] = FrameSegment(snapped[i - 1].start, frame, snapped[i - 1].lang)
            snapped[i] = FrameSegment(frame, snapped[i].end, snapped[i].lang)
    return snapped


def runs(labels: Sequence[int]) -> List[FrameSegment]:
    """Maximal runs of one label, as segments."""
    segments, start = [], 0
    for t in range(1, len(labels) + 1):
        if t == len(labels) or labels[t] != labels[start]:
            segments.append(FrameSegment(start, t, labels[start]))
            start = t
    return segments
