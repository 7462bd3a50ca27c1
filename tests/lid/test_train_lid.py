"""The stage-4 CLI: tap frames cached once, heads trained, evaluated, saved where decode.py reads them."""
import json
from functools import partial

import numpy as np
import pytest
import soundfile as sf

from espnet_ext.bin import train_lid
from espnet_ext.data.kaldi import Utterance, write_data_dir
from espnet_ext.lid.features import TapCache, cached_tap_frames, extract_tap_caches, random_crops, read_frame_cache, tap_frames
from espnet_ext.lid.heads import load_head
from espnet_ext.models.registry import load_model
from train_helpers import chirp, make_corpus


def make_lang_dir(root, name, lang, count, seed):
    """A Kaldi dir of `count` chirps labelled `lang` (English for the LID-only class, or out-of-set)."""
    utterances = []
    for j in range(count):
        wav = root / "wav" / f"{name}-{j}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        wave = chirp(0.5 + 0.1 * j, seed=seed + j)
        sf.write(str(wav), wave, 16000, subtype="FLOAT")
        utterances.append(Utterance(f"{lang}-s1-{name}-{j:02d}", f"{lang}-s1", "hello", lang, str(wav), len(wave) / 16000))
    write_data_dir(root / name, utterances)
    return root / name


def test_cached_frames_are_the_taps_valid_frames_and_a_rerun_reads_them(tmp_path):
    data = make_corpus(tmp_path)
    loaded = load_model("whisper_tiny_random")
    loaded.asr_model.eval()
    fresh = tap_frames(loaded, data, layer=1, batch_size=3)
    cached = cached_tap_frames(loaded, data, 1, tmp_path / "feats", batch_size=3)
    assert sorted(cached.utt_ids) == sorted(fresh.utt_ids) and (tmp_path / "feats/feats.scp").is_file()
    by_id = dict(zip(fresh.utt_ids, fresh.frames))
    for utt, frames, duration in zip(cached.utt_ids, cached.frames, cached.durations):
        assert frames.shape == by_id[utt].shape and frames.shape[0] == pytest.approx(50 * duration, abs=1)
        scale = np.abs(by_id[utt]).max()
        np.testing.assert_allclose(frames, by_id[utt], rtol=1e-3, atol=1e-4 * scale)  # float16
    import kaldiio  # a cache of Kaldi compressed matrices (stage 4 before 7 Dec 2026) still reads
    (tmp_path / "old").mkdir()
    kaldiio.save_ark(str(tmp_path / "old/feats.ark"), by_id, scp=str(tmp_path / "old/feats.scp"), compression_method=2)
    for name in ("utt2lang", "utt2dur"):
        (tmp_path / "old" / name).write_bytes((tmp_path / "feats" / name).read_bytes())
    assert sorted(cached_tap_frames(None, data, 1, tmp_path / "old").utt_ids) == sorted(fresh.utt_ids)
    (tmp_path / "feats/feats.ark").write_bytes(b"")  # the scp is the record: a rerun never re-extracts
    with pytest.raises(Exception):
        cached_tap_frames(loaded, data, 1, tmp_path / "feats")


def test_caches_extracted_side_by_side_hold_what_one_process_extracts_in_turn(tmp_path):
    data, english = make_corpus(tmp_path), make_lang_dir(tmp_path, "train_en", "en", 3, seed=40)
    loaded = load_model("whisper_tiny_random")
    loaded.asr_model.eval()

    def caches(root):
        return [TapCache(d, root / f"{d.name}{suffix}", transform) for d in (data, english)
                for suffix, transform in (("", None), ("_crops", partial(random_crops, (0.2, 0.4), seed=1)))]

    extract_tap_caches(loaded, 1, caches(tmp_path / "turn"), batch_size=3, processes=1)
    extract_tap_caches(loaded, 1, caches(tmp_path / "forked"), batch_size=3, processes=2)
    extract_tap_caches(loaded, 1, caches(tmp_path / "alone")[3:], batch_size=3)  # English crops, nothing before
    for name in ("train", "train_crops", "train_en", "train_en_crops"):
        turn, forked = read_frame_cache(tmp_path / "turn" / name), read_frame_cache(tmp_path / "forked" / name)
        assert forked.utt_ids == turn.utt_ids and forked.durations.tolist() == turn.durations.tolist()
        for a, b in zip(forked.frames, turn.frames):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * np.abs(b).max())
    crops = read_frame_cache(tmp_path / "turn/train_en_crops")
    assert all(0.19 <= d <= 0.4 for d in crops.durations)
    # a seeded transform is made fresh per cache: the same stretches whatever was extracted before it
    assert read_frame_cache(tmp_path / "alone/train_en_crops").durations.tolist() == crops.durations.tolist()


def test_train_lid_writes_each_head_its_report_and_the_comparison(tmp_path):
    data = make_corpus(tmp_path)
    out = tmp_path / "lid"
    train_lid.main(["--model", "whisper_tiny_random", "--layer", "1", "--train_dir", str(data), "--dev_dir",
                    str(data), "--test_dir", str(data), "--out_dir", str(out), "--heads", "linear,asp",
                    "--epochs", "3", "--crop", "0.2", "0.5", "--crop_eval", "0.3", "0.5", "--speed_perturb", "1.1", "--alone_crops", "2",
                    "--alone_crop_seconds", "0.2", "0.4", "--threads", "1"])
    table = (out / "heads.md").read_text()
    # by default each head is a seed ensemble of three
    assert table.count("\n| linear x3 |") == 1 and table.count("\n| asp x3 |") == 1 and "| mlp" not in table
    report = json.loads((out / "asp/eval.json").read_text())
    assert [(h["member"], h["epoch"]) for h in report["history"]] == [(m, e) for m in range(3) for e in (1, 2, 3)]
    assert report["train_utterances"] == 32  # 8 + the same 8 at speed 1.1 + two copies of 8 stretches
    first, second = ({u: float(d) for u, d in zip(*[iter((out / f"feats/train_crops_0.2-0.4s_{c}/utt2dur").read_text().split())] * 2)}
                     for c in (1, 2))
    assert all(0.19 <= d <= 0.4 for d in [*first.values(), *second.values()])  # stretches encoded alone
    assert first.keys() == second.keys() and first != second  # each copy draws new stretches
    fast = (out / "feats/train_sp1.1/utt2dur").read_text().split()[1::2]  # a cache per data dir name
    plain = (out / "feats/train/utt2dur").read_text().split()[1::2]
    assert sum(map(float, fast)) == pytest.approx(sum(map(float, plain)) / 1.1, rel=0.01)
    assert report["eval"]["test"]["n"] == 8 and sum(map(sum, report["eval"]["test"]["confusion"])) == 8
    assert (out / "asp/confusion_test.png").stat().st_size > 1000
    assert report["eval"]["test_crops_0.3-0.5s"]["n"] == 8 and "| test crops 0.3-0.5s |" in table
    crops = (out / "feats/train_crops_0.3-0.5s/utt2dur").read_text().split()[1::2]  # named after the test dir
    assert all(0.29 <= float(d) <= 0.5 for d in crops)  # each test utterance cut to a 0.3-0.5 s crop
    head = load_head(out / "asp", "whisper_tiny_random", load_model("whisper_tiny_random").fingerprint)
    assert head.kind == "asp" and head.layer == 1 and set(head.languages) == {"hi", "pa", "te", "it"}
    assert len(head.members) == 3


def test_train_lid_names_a_bad_head_and_a_missing_layer(tmp_path):
    data = make_corpus(tmp_path)
    base = ["--model", "whisper_tiny_random", "--train_dir", str(data), "--dev_dir", str(data), "--test_dir",
            str(data), "--out_dir", str(tmp_path / "lid")]
    with pytest.raises(SystemExit, match="unknown --heads"):
        train_lid.main(base + ["--layer", "1", "--heads", "transformer"])
    with pytest.raises(SystemExit, match="give --adapter_dir .* or --layer"):
        train_lid.main(base)
    with pytest.raises(SystemExit, match="--members 0; give 1"):
        train_lid.main(base + ["--layer", "1", "--members", "0"])


def test_train_lid_joins_a_lid_only_class_and_reports_out_of_set_languages(tmp_path):
    data, english = make_corpus(tmp_path), make_lang_dir(tmp_path, "train_en", "en", 2, seed=40)
    oos = make_lang_dir(tmp_path, "test_oos", "es", 3, seed=50)
    out = tmp_path / "lid"
    train_lid.main(["--model", "whisper_tiny_random", "--layer", "1", "--train_dir", str(data), str(english),
                    "--dev_dir", str(data), "--test_dir", str(data), str(english), "--oos_dir", str(oos),
                    "--out_dir", str(out), "--heads", "linear", "--epochs", "2", "--threads", "1"])
    report = json.loads((out / "linear/eval.json").read_text())
    assert report["languages"] == ["hi", "pa", "te", "it", "en"]  # English joins the classes, last as in the table
    # the 10 utterances and, by default, two copies of them cut to stretches encoded alone
    assert report["train_utterances"] == 3 * 10 and report["eval"]["test"]["per_language"]["en"]["n"] == 2
    spanish = report["out_of_set"]["es"]
    assert spanish["n"] == 3 and sum(spanish["taken_for"].values()) == 3
    assert spanish["confident_adapter"] <= 1 - spanish["to_lid_only"]  # confident routing is to an adapter
    from espnet_ext.lid.heads import load_head

    config = json.loads((out / "linear/lid_config.json").read_text())
    head = load_head(out / "linear", config["base_model"], config["base_fingerprint"])
    assert head.tau == report["tau"] and 0.0 <= head.tau <= 1.0  # the dev tau travels with the head
    assert (out / "feats/train_en/feats.scp").is_file() and (out / "feats/test_oos/feats.scp").is_file()
    assert "Out-of-set clips routed confidently" in (out / "heads.md").read_text() and "es (n=3)" in (out / "heads.md").read_text()
    with pytest.raises(SystemExit, match="--oos_dir must hold other languages only"):
        train_lid.main(["--model", "whisper_tiny_random", "--layer", "1", "--train_dir", str(data), str(english),
                        "--dev_dir", str(data), "--test_dir", str(data), "--oos_dir", str(english),
                        "--out_dir", str(out), "--heads", "linear", "--epochs", "1", "--threads", "1"])


def test_train_lid_adds_a_channel_copy_of_the_training_set_and_reports_each_eval_dir(tmp_path):
    data = make_corpus(tmp_path)
    noisy = make_lang_dir(tmp_path, "test_tel", "hi", 3, seed=50)
    out = tmp_path / "lid"
    args = ["--model", "whisper_tiny_random", "--layer", "1", "--train_dir", str(data), "--dev_dir", str(data),
            "--test_dir", str(data), "--out_dir", str(out), "--heads", "linear", "--epochs", "1", "--alone_crops", "0",
            "--channels", "tel", "snr10", "--eval_dir", str(noisy), "--threads", "1"]
    train_lid.main(args)
    report = json.loads((out / "linear/eval.json").read_text())
    assert report["train_utterances"] == 16  # 8 + the same 8 through a channel each
    assert report["eval"]["test_tel"]["n"] == 3
    plain = cached_tap_frames(load_model("whisper_tiny_random"), data, 1, out / "feats/train")
    through = cached_tap_frames(load_model("whisper_tiny_random"), data, 1, out / "feats/train_channels_tel-snr10")
    assert sorted(through.utt_ids) == sorted(plain.utt_ids)
    by_id = dict(zip(plain.utt_ids, plain.frames))
    assert all(f.shape == by_id[u].shape and not np.allclose(f, by_id[u]) for u, f in zip(through.utt_ids, through.frames))
    with pytest.raises(SystemExit, match="unknown|condition"):
        train_lid.main(args[:-7] + ["--channels", "underwater"])
    other = tmp_path / "lid_e2"  # another head on the same bank, reading the first one's frames
    train_lid.main(args[:10] + ["--out_dir", str(other), "--feats_dir", str(out / "feats")] + args[12:] + ["--epochs", "2", "--members", "1"])
    assert not (other / "feats").exists() and len(json.loads((other / "linear/eval.json").read_text())["history"]) == 2
