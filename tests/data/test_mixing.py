"""Mixing corpora: shares of hours per source, temperature sampling across languages, test sentences kept
out of training, test sets per source."""
import json

import pytest
from wavegen import write_tone

from espnet_ext.data.corpus import write_validated
from espnet_ext.data.kaldi import Utterance, read_data_dir
from espnet_ext.data.mixing import MIX_REPORT, Source, language_scales, mix_corpora, parse_ratios


def write_source(folder, name, langs_seconds, test_text=None):
    """train/dev/test dirs of `name` per language; train utterances last 1.0-2.9 s (varied, known)."""
    for lang, seconds in langs_seconds.items():
        for split in ("train", "dev", "test"):
            durations = seconds if split == "train" else [1.0, 1.5]
            utts = []
            for i, d in enumerate(durations):
                spk = f"{lang}-{name}-{split}{i % 3}"
                wav = write_tone(folder / "wav" / f"{spk}-{i}.wav", d)
                text = test_text if (split == "test" and test_text and i == 0) else f"{name} {split} {lang} {i}"
                utts.append(Utterance(f"{spk}-{i:03d}", spk, text, lang, str(wav), d))
            write_validated(folder / f"{split}_{lang}", utts)


def train_seconds(data_dir):
    src = dict(line.split() for line in (data_dir / "utt2src").read_text().splitlines())
    totals = {}
    for u in read_data_dir(data_dir):
        totals[src[u.utt_id]] = totals.get(src[u.utt_id], 0.0) + u.duration
    return totals


DURATIONS_A = [1.0 + 0.1 * (i % 20) for i in range(40)]  # 58 s
DURATIONS_B = [2.0 + 0.05 * (i % 10) for i in range(12)]  # 26.7 s


@pytest.mark.parametrize("ratio", ["0.8,0.2", "0.5,0.5", "0.3,0.7", "1,0"])
def test_training_hours_per_source_follow_the_ratio_within_one_utterance(tmp_path, ratio):
    write_source(tmp_path / "a", "a", {"hi": DURATIONS_A})
    write_source(tmp_path / "b", "b", {"hi": DURATIONS_B})
    shares = parse_ratios(["a", "b"], ratio)
    mix_corpora(tmp_path, [Source("a", tmp_path / "a", shares[0]), Source("b", tmp_path / "b", shares[1])], ["hi"])
    got = train_seconds(tmp_path / "train_hi")
    total = min(avail / r for avail, r in zip([sum(DURATIONS_A), sum(DURATIONS_B)], shares) if r > 0)
    for name, share, longest in (("a", shares[0], max(DURATIONS_A)), ("b", shares[1], max(DURATIONS_B))):
        assert share * total - longest < got.get(name, 0.0) <= share * total + 1e-6
    assert ("b" in got) == (shares[1] > 0)  # a share of 0: out of training, its test set is cross-domain
    assert sorted(p.name for p in tmp_path.glob("test_*")) == ["test_hi_a", "test_hi_b"]
    assert set((tmp_path / "test_hi_b" / "utt2src").read_text().split()[1::2]) == {"b"}
    report = json.loads((tmp_path / MIX_REPORT).read_text())
    assert report["languages"]["hi"]["train_hours"]["a"] == pytest.approx(got["a"] / 3600)


def test_a_test_sentence_of_any_source_is_dropped_from_training(tmp_path, caplog):
    write_source(tmp_path / "a", "a", {"hi": DURATIONS_A})
    write_source(tmp_path / "b", "b", {"hi": DURATIONS_B}, test_text="A Train HI 3")  # = a's train text 3
    with caplog.at_level("INFO"):
        mix_corpora(tmp_path, [Source("a", tmp_path / "a", 1.0), Source("b", tmp_path / "b", 0.0)], ["hi"])
    texts = [u.text for u in read_data_dir(tmp_path / "train_hi")]
    assert "a train hi 3" not in texts and "a train hi 4" in texts
    assert "a train_hi: dropped 1 training utterances whose sentence is in a test set" in caplog.text


def test_alpha_flattens_languages_by_subsampling(tmp_path):
    write_source(tmp_path / "a", "a", {"hi": DURATIONS_A, "te": DURATIONS_A[:10]})
    src = [Source("a", tmp_path / "a", 1.0)]
    mix_corpora(tmp_path / "o1", src, ["hi", "te"], alpha=1.0)
    mix_corpora(tmp_path / "o0", src, ["hi", "te"], alpha=0.0)
    natural = {lang: train_seconds(tmp_path / "o1" / f"train_{lang}")["a"] for lang in ("hi", "te")}
    flat = {lang: train_seconds(tmp_path / "o0" / f"train_{lang}")["a"] for lang in ("hi", "te")}
    assert natural == pytest.approx({"hi": sum(DURATIONS_A), "te": sum(DURATIONS_A[:10])})
    assert flat["te"] == natural["te"] and natural["te"] - max(DURATIONS_A) < flat["hi"] <= natural["te"]
    assert len(read_data_dir(tmp_path / "o0" / "train_all")) == len(read_data_dir(tmp_path / "o0" / "train_hi")) + 10
    assert language_scales({"hi": 4.0, "te": 1.0}, 0.5) == pytest.approx({"hi": 0.5, "te": 1.0})


def test_bad_ratio_names_the_corpora():
    with pytest.raises(ValueError, match=r"--mix_ratio 0\.8: give 2 non-negative shares.*\(kathbath commonvoice\)"):
        parse_ratios(["kathbath", "commonvoice"], "0.8")
    assert parse_ratios(["a", "b"], "3,1") == [0.75, 0.25]
