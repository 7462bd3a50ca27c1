"""Frame-level language posteriors and their Viterbi segmentation."""
import itertools

import numpy as np
import pytest
import torch

from espnet_ext.lid.segments import FrameSegment, runs, snap_to_pauses, viterbi_segments, window_posteriors


def noisy_track(labels, langs=5, flip=0.25, seed=0):
    """Posteriors that favour `labels[t]` (0.7) but in `flip` of the frames put the top mass (0.5) on a
    language not planted, the true one second (0.3): what a 1 s window head gives on short stretches."""
    g = torch.Generator().manual_seed(seed)
    others = [lang for lang in range(langs) if lang not in set(labels)]
    post = torch.empty(len(labels), langs)
    for t, lang in enumerate(labels):
        post[t] = 0.3 / (langs - 1)
        post[t, lang] = 0.7
        if torch.rand(1, generator=g) < flip:  # a wrong top language; the true one still second
            post[t] = 0.2 / (langs - 2)
            post[t, others[int(torch.randint(len(others), (1,), generator=g))]] = 0.5
            post[t, lang] = 0.3
    return post


def test_planted_switch_is_found_within_one_frame():
    for switch, seed in ((87, 0), (40, 1), (150, 2)):
        labels = [1] * switch + [3] * (200 - switch)
        segments = viterbi_segments(noisy_track(labels, seed=seed), switch_penalty=64.0)  # 40 noisy frames pay 64 nats
        assert [s.lang for s in segments] == [1, 3]
        assert abs(segments[0].end - switch) <= 1 and segments[1].end == 200


def test_constant_language_gets_no_switch_and_penalty_zero_follows_the_noise():
    track = noisy_track([2] * 300, seed=3)
    assert viterbi_segments(track) == [FrameSegment(0, 300, 2)]
    assert len(viterbi_segments(track, 0.0, min_frames=1)) > 10  # the argmax path: penalty and minimum smooth


def brute_force_best(log_p, penalty, min_frames):
    """The best path's score by trying every label sequence whose runs are all >= min_frames long."""
    frames, langs = log_p.shape
    best = float("-inf")
    for labels in itertools.product(range(langs), repeat=frames):
        segments = runs(labels)
        if all(s.end - s.start >= min_frames for s in segments):
            score = sum(float(log_p[t, lang]) for t, lang in enumerate(labels)) - penalty * (len(segments) - 1)
            best = max(best, score)
    return best


@pytest.mark.parametrize("penalty,min_frames", [(0.0, 1), (0.7, 1), (0.0, 3), (0.5, 2), (2.0, 4)])
def test_viterbi_finds_the_best_path_with_every_segment_at_least_min_frames(penalty, min_frames):
    for seed in range(4):
        post = torch.softmax(3 * torch.randn(8, 3, generator=torch.Generator().manual_seed(seed)), dim=1)
        segments = viterbi_segments(post, penalty, min_frames)
        log_p = post.clamp_min(1e-8).log()
        score = sum(float(log_p[s.start:s.end, s.lang].sum()) for s in segments) - penalty * (len(segments) - 1)
        assert all(s.end - s.start >= min_frames for s in segments) and segments[-1].end == 8
        assert score == pytest.approx(brute_force_best(log_p, penalty, min_frames), abs=1e-4)


def test_a_blip_shorter_than_the_minimum_must_pay_for_its_stretch():
    post = torch.full((120, 3), 0.05)
    post[:, 0] = 0.9
    post[50:70] = torch.tensor([0.25, 0.7, 0.05])  # 20 frames (0.4 s) leaning to language 1: +20.6 nats alone
    assert [s.lang for s in viterbi_segments(post, 8.0, min_frames=1)] == [0, 1, 0]  # beats two penalties (16)
    assert [s.lang for s in viterbi_segments(post, 8.0, min_frames=20)] == [0, 1, 0]  # as long as the minimum
    # stretched to 25 frames the blip costs 5 x 2.9 nats of language 0's frames: no longer worth two switches
    assert viterbi_segments(post, 8.0, min_frames=25) == [FrameSegment(0, 120, 0)]
    assert viterbi_segments(post[:10], 0.0, min_frames=25) == [FrameSegment(0, 10, 0)]  # shorter than it: one segment


def test_switches_move_to_the_quietest_moment_within_reach():
    audio = np.random.default_rng(0).normal(0, 0.1, 5 * 16000).astype(np.float32)
    audio[int(2.3 * 16000):int(2.4 * 16000)] = 0.0  # a 100 ms pause 0.3 s after the predicted switch
    audio[int(4.5 * 16000):int(4.6 * 16000)] = 0.0  # another, out of the switch's reach
    segments = [FrameSegment(0, 100, 0), FrameSegment(100, 250, 1)]
    snapped = snap_to_pauses(segments, audio, reach_s=0.4, pause_s=0.05)
    assert snapped[0].end == snapped[1].start and 2.3 <= snapped[1].start / 50 <= 2.4  # inside the pause
    assert (snapped[0].start, snapped[1].end) == (0, 250) and [s.lang for s in snapped] == [0, 1]
    assert snap_to_pauses(segments, audio, reach_s=0.0) == segments  # no reach: left where the track put it
    short = [FrameSegment(0, 100, 0), FrameSegment(100, 101, 1), FrameSegment(101, 250, 0)]
    assert all(s.end > s.start for s in snap_to_pauses(short, audio, 0.4))  # every segment keeps a frame


def test_runs_are_maximal():
    assert runs([0, 0, 1, 1, 1, 0]) == [FrameSegment(0, 2, 0), FrameSegment(2, 5, 1), FrameSegment(5, 6, 0)]


class MeanHead:
    """Posteriors = softmax(5 x the mean of the first two feature dims over valid frames)."""

    def __call__(self, hidden, lengths):
        mask = torch.arange(hidden.size(1))[None] < lengths[:, None]
        mean = (hidden[..., :2] * mask[..., None]).sum(1) / lengths[:, None]
        return torch.softmax(5 * mean, dim=-1)


def level_encoder(windows):
    """A fake tap: per 20 ms frame, feature 0 = 1 where the audio is positive, feature 1 = 1 where negative."""
    frames = windows.reshape(windows.size(0), -1, 320).mean(2)
    return torch.stack([(frames > 0).float(), (frames < 0).float()], dim=2)


def test_window_posteriors_follow_the_windows_each_encoded_alone():
    audio = torch.cat([torch.full((2 * 16000,), 0.5), torch.full((2 * 16000,), -0.5)])  # "language" 0, then 1
    seen = []
    post = window_posteriors(lambda w: seen.append(w.shape) or level_encoder(w), MeanHead(), audio, 1.0, 0.25)
    assert post.shape == (200, 2) and all(shape[1] == 16000 for shape in seen)  # every window 1 s, alone
    assert post[:75, 0].min() > 0.9 and post[125:, 1].min() > 0.9  # windows wholly inside one language
    assert abs(viterbi_segments(post, 2.0)[0].end - 100) <= 13  # the switch at frame 100, within one hop (0.25 s)
    short = window_posteriors(level_encoder, MeanHead(), audio[:8000], 1.0, 0.25)  # 0.5 s: one window, whole
    assert short.shape == (25, 2) and torch.allclose(short, MeanHead()(level_encoder(audio[None, :8000]), torch.tensor([25])).expand(25, -1))
