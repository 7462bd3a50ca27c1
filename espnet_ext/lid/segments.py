"""Language over time: frame-level posteriors from an utterance-level head, smoothed into segments.

A head maps a stretch of tap frames to posteriors; run on sliding windows (WINDOW_SECONDS long,
every HOP_SECONDS) it gives a posterior track, and each tap frame takes the track of the window
centred nearest to it. The track is noisy at the scale of a window, so it is cut into segments by
Viterbi decoding over the languages: the best path maximises the summed log posteriors minus
`switch_penalty` per change of language (an HMM whose switch probability is exp(-penalty)); a larger
penalty trades missed switches for fewer false ones and is tuned on a dev code-switched set.
"""
from dataclasses import dataclass
from typing import List, Sequence

import torch

FRAMES_PER_SECOND = 50  # Whisper's encoder (and the tap) emit one state per 20 ms
WINDOW_SECONDS = 1.0
HOP_SECONDS = 0.1
DEFAULT_SWITCH_PENALTY = 8.0  # nats per switch; tune with the code-switch evaluation's --penalties


@dataclass(frozen=True)
class FrameSegment:
    """Frames [start, end) of one language (an index into the head's languages)."""

    start: int
    end: int
    lang: int


@torch.no_grad()
def frame_posteriors(head, hidden: torch.Tensor, window: int = round(WINDOW_SECONDS * FRAMES_PER_SECOND),
                     hop: int = round(HOP_SECONDS * FRAMES_PER_SECOND)) -> torch.Tensor:
    """`[frames, languages]` posteriors of one utterance's tap states `hidden` `[frames, width]`: the head
    on every `window`-frame stretch starting each `hop` frames (the whole utterance if shorter), each
    frame taking the window whose centre is nearest."""
    frames = hidden.size(0)
    if frames <= window:
        return head(hidden[None], torch.tensor([frames])).expand(frames, -1)
    starts = list(range(0, frames - window + 1, hop))
    if starts[-1] != frames - window:
        starts.append(frames - window)
    windows = torch.stack([hidden[s:s + window] for s in starts])
    track = head(windows, torch.full((len(starts),), window))  # [windows, languages]
    centres = torch.tensor(starts, dtype=torch.float32) + window / 2
    nearest = (torch.arange(frames, dtype=torch.float32)[:, None] + 0.5 - centres[None]).abs().argmin(1)
    return track[nearest]


def viterbi_segments(posteriors: torch.Tensor, switch_penalty: float = DEFAULT_SWITCH_PENALTY) -> List[FrameSegment]:
    """The most likely language path through `posteriors` `[frames, L]` with `switch_penalty` nats per
    change of language, as segments in time order (at least one)."""
    log_p = posteriors.float().clamp_min(1e-8).log()
    frames, langs = log_p.shape
    score = log_p[0].clone()
    back = torch.zeros(frames, langs, dtype=torch.long)
    stay = torch.eye(langs, dtype=torch.bool)
    for t in range(1, frames):
        # arrive in language j from i: score[i], less the penalty when i != j
        moves = score[:, None] - switch_penalty * (~stay).float()
        best, back[t] = moves.max(0)
        score = best + log_p[t]
    path = [int(score.argmax())]
    for t in range(frames - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return runs(path[::-1])


def runs(labels: Sequence[int]) -> List[FrameSegment]:
    """Maximal runs of one label, as segments."""
    segments, start = [], 0
    for t in range(1, len(labels) + 1):
        if t == len(labels) or labels[t] != labels[start]:
            segments.append(FrameSegment(start, t, labels[start]))
            start = t
    return segments
