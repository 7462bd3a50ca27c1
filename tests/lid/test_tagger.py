"""The LID frame tagger: it learns where the language changes, ignores padding, round-trips, and gives the
language over time from one encoder pass; its CLI trains it on code-switched dirs."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet_ext.bin import codeswitch_lid, train_tagger
from espnet_ext.data.kaldi import LanguageSegment as Seg
from espnet_ext.data.kaldi import Utterance, write_data_dir, write_segments_lang
from espnet_ext.lid.features import FrameFeatures
from espnet_ext.lid.heads import TaggerHead, load_head, make_head
from espnet_ext.lid.segments import (
    TAGGER_TRACK, WINDOW_TRACK, language_track, track_settings, viterbi_segments,
)
from espnet_ext.lid.train import TaggerTraining, fit_tagger, frame_accuracy
from test_segments import MeanHead, level_encoder
from train_helpers import chirp

LANGS = ("hi", "pa", "te", "it")


def code_switched(n: int, seed: int):
    """Utterances of 2-3 pieces of 15-40 frames in 16 dimensions, each piece its language's centre plus
    noise, and each frame's label; the language of a lone frame is hard to tell (noise sd 1.5 against a
    centre 2 away), so the tagger must pool its neighbours."""
    rng = np.random.default_rng(seed)
    frames, labels, switches = [], [], []
    for _ in range(n):
        langs = rng.choice(4, size=int(rng.integers(2, 4)), replace=False)
        lengths = rng.integers(15, 41, len(langs))
        frames.append(np.concatenate([2 * np.eye(4, 16)[y] + rng.normal(0, 1.5, (k, 16))
                                      for y, k in zip(langs, lengths)]).astype(np.float32))
        labels.append(np.repeat(langs, lengths))
        switches.append(list(np.cumsum(lengths)[:-1]))
    features = FrameFeatures([f"u{i}" for i in range(n)], [LANGS[y[0]] for y in labels],
                             np.array([len(f) / 50 for f in frames]), frames)
    return features, labels, switches


def test_the_tagger_learns_where_the_language_changes():
    (train, labels), (dev, dev_labels) = code_switched(150, 0)[:2], code_switched(30, 1)[:2]
    test, test_labels, switches = code_switched(40, 2)
    tagger = make_head("tagger", 3, LANGS, 16)
    history = fit_tagger(tagger, train, labels, dev, dev_labels, TaggerTraining(epochs=8, lr=5e-3))
    assert len(history) == 8
    nearest_centre = np.mean(np.concatenate([f[:, :4].argmax(1) == y for f, y in zip(test.frames, test_labels)]))
    accuracy = frame_accuracy(tagger, test, test_labels)
    assert nearest_centre < 0.75 and accuracy > 0.95  # frame by frame ~0.7; pooled over neighbours far more
    found = []
    for frames, truth in zip(test.frames, switches):
        track = tagger.frame_posteriors(torch.from_numpy(frames)[None], torch.tensor([len(frames)]))[0]
        predicted = [s.start for s in viterbi_segments(track, TAGGER_TRACK.switch_penalty)[1:]]
        found.append(len(predicted) == len(truth) and all(abs(p - t) <= 5 for p, t in zip(predicted, truth)))
    assert np.mean(found) > 0.9  # every switch of the utterance within 5 frames (0.1 s), and no other


def test_the_tagger_ignores_padding_pools_its_frames_and_round_trips(tmp_path):
    tagger = make_head("tagger", 2, LANGS, 16).eval()
    x = torch.randn(1, 30, 16)
    padded = torch.cat([x, torch.full((1, 20, 16), 1e3)], dim=1)
    frames = tagger.frame_posteriors(x, torch.tensor([30]))
    torch.testing.assert_close(tagger.frame_posteriors(padded, torch.tensor([30]))[:, :30], frames, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(tagger(padded, torch.tensor([30])), frames.mean(1), atol=1e-5, rtol=1e-4)
    tagger.save(tmp_path / "tagger", {"base_model": "whisper_tiny_random", "base_fingerprint": "abc"})
    loaded = load_head(tmp_path / "tagger", "whisper_tiny_random", "abc")
    assert isinstance(loaded, TaggerHead) and loaded.dilations == (1, 2, 4, 8, 16)
    torch.testing.assert_close(loaded.frame_posteriors(x, torch.tensor([30])), frames)


def test_a_tagger_reads_one_pass_and_a_head_reads_windows():
    audio = torch.cat([torch.full((2 * 16000,), 0.5), torch.full((2 * 16000 + 100,), -0.5)])
    seen = []

    def encode(w):
        seen.append(tuple(w.shape))
        return level_encoder(w[:, : w.size(1) // 320 * 320])

    tagger = make_head("tagger", 1, ("a", "b"), 2)
    track = language_track(encode, tagger, audio)
    assert seen == [(1, len(audio))] and track.shape == (200, 2)  # the whole recording in one pass, 20 ms frames
    states = level_encoder(audio[None, : 200 * 320])
    torch.testing.assert_close(track, tagger.frame_posteriors(states, torch.tensor([200]))[0])
    seen.clear()
    assert language_track(encode, MeanHead(), audio).shape == (200, 2) and seen[0][0] > 1 and seen[0][1] == 16000  # 1 s windows
    assert track_settings(tagger) == TAGGER_TRACK and track_settings(make_head("asp", 1, ("a", "b"), 2)) == WINDOW_TRACK


def cs_dir(root, name, pieces):
    """A code-switched dir of one utterance per list of (language, seconds) pieces (chirps)."""
    utterances, segments = [], {}
    (root / "wav").mkdir(exist_ok=True)
    for i, plan in enumerate(pieces):
        waves = [chirp(seconds, 3 * i + j) for j, (_, seconds) in enumerate(plan)]
        utt, path = f"cs-s{i}-{name}{i}", root / "wav" / f"{name}{i}.wav"
        sf.write(str(path), np.concatenate(waves), 16000, subtype="FLOAT")
        bounds = np.cumsum([0] + [len(w) for w in waves]) / 16000
        segments[utt] = [Seg(float(a), float(b), lang) for (lang, _), a, b in zip(plan, bounds, bounds[1:])]
        utterances.append(Utterance(utt, f"cs-s{i}", "x y", plan[0][0], str(path), float(bounds[-1])))
    write_data_dir(root / name, utterances)
    write_segments_lang(root / name, segments)
    return root / name


def test_cli_trains_the_tagger_and_codeswitch_lid_reads_it_with_its_own_penalty(tmp_path):
    plans = [[("hi", 1.0), ("it", 1.5)], [("it", 1.2), ("hi", 0.8), ("it", 1.0)], [("hi", 2.0), ("en", 1.0)]]
    train, dev = cs_dir(tmp_path, "train_cs_inter", plans), cs_dir(tmp_path, "dev_cs_inter", plans[:2])
    out = tmp_path / "lid" / "tagger"
    train_tagger.main(["--model", "whisper_tiny_random", "--layer", "1", "--train_dir", str(train), "--dev_dir",
                       str(dev), "--out_dir", str(out), "--epochs", "2", "--threads", "1"])
    config = json.loads((out / "lid_config.json").read_text())
    assert config["kind"] == "tagger" and config["languages"] == ["hi", "it", "en"] and config["layer"] == 1
    report = json.loads((out / "eval.json").read_text())
    assert report["train_utterances"] == 3 and len(report["history"]) == 2
    assert (tmp_path / "lid" / "feats" / "train_cs_inter" / "feats.scp").is_file()  # stage 4's cache beside it
    codeswitch_lid.main(["--model", "whisper_tiny_random", "--lid_dir", str(out), "--data_dir", str(dev),
                         "--out_dir", str(tmp_path / "cs"), "--threads", "1"])
    results = json.loads((tmp_path / "cs" / "cs_lid.json").read_text())["dev_cs_inter"]
    setting = f"{TAGGER_TRACK.switch_penalty:g}_0"  # the tagger's own penalty
    assert list(results) == [setting] and results[setting]["switches"] == 3


def test_cli_names_a_dir_without_segments_lang(tmp_path, capsys):
    plain = tmp_path / "train_hi"
    write_data_dir(plain, [Utterance("s-u", "s", "x", "hi", str(tmp_path / "u.wav"), 1.0)])
    with pytest.raises(SystemExit) as exit_info:
        train_tagger.main(["--model", "whisper_tiny_random", "--layer", "1", "--train_dir", str(plain), "--dev_dir",
                           str(plain), "--out_dir", str(tmp_path / "t")])
    assert "segments_lang" in str(exit_info.value) and "make_codeswitch" in str(exit_info.value)
