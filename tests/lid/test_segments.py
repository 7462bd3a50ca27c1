"""Frame-level language posteriors and their Viterbi segmentation."""
import torch

from espnet_ext.lid.segments import FrameSegment, frame_posteriors, runs, viterbi_segments


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
        segments = viterbi_segments(noisy_track(labels, seed=seed))
        assert [s.lang for s in segments] == [1, 3]
        assert abs(segments[0].end - switch) <= 1 and segments[1].end == 200


def test_constant_language_gets_no_switch_and_penalty_zero_follows_the_noise():
    track = noisy_track([2] * 300, seed=3)
    assert viterbi_segments(track) == [FrameSegment(0, 300, 2)]
    assert len(viterbi_segments(track, switch_penalty=0.0)) > 10  # the argmax path: the penalty is what smooths


def test_runs_are_maximal():
    assert runs([0, 0, 1, 1, 1, 0]) == [FrameSegment(0, 2, 0), FrameSegment(2, 5, 1), FrameSegment(5, 6, 0)]


class MeanHead:
    """Posteriors = softmax(5 x the mean of the first two feature dims over valid frames)."""

    def __call__(self, hidden, lengths):
        mask = torch.arange(hidden.size(1))[None] < lengths[:, None]
        mean = (hidden[..., :2] * mask[..., None]).sum(1) / lengths[:, None]
        return torch.softmax(5 * mean, dim=-1)


def test_frame_posteriors_follow_the_windows_and_a_short_utterance_is_one_window():
    hidden = torch.zeros(200, 4)
    hidden[:100, 0] = 1.0  # language 0 for the first 2 s, language 1 after
    hidden[100:, 1] = 1.0
    post = frame_posteriors(MeanHead(), hidden, window=50, hop=5)
    assert post.shape == (200, 2)
    assert post[:75, 0].min() > 0.9 and post[125:, 1].min() > 0.9  # windows wholly inside one language
    assert viterbi_segments(post, 2.0)[0].end in range(95, 106)
    short = frame_posteriors(MeanHead(), hidden[90:120], window=50, hop=5)
    whole = MeanHead()(hidden[None, 90:120], torch.tensor([30]))
    assert torch.allclose(short, whole.expand(30, -1))
