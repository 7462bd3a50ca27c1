"""Decoding with a LoRA bank: a mixed-language batch routed per utterance (greedy and beam) gives what
each utterance gets alone with its own adapter merged into the base weights; routing decided by a LID
head on the tap (inside the pass, or after a bare pass for per_language banks) or by the base's own
language token gives the oracle's transcripts when the decision is right, and says where it came from."""
import copy
import dataclasses

import pytest
import torch

from espnet_ext.data.audio import pad_batch
from espnet_ext.decode.search import SearchConfig
from espnet_ext.decode.transcribe import make_backend, transcribe_batch
from espnet_ext.lora.inject import BankLayout, banks, inject, merge_adapter, unmerge_all
from decode_helpers import random_audio

from espnet_ext.models.family import WHISPER
from espnet_ext.models.registry import load_model

LANGS = ["hi", "pa", "te", "it"]


def banked_tiny(kind: str = "per_language", tap_layer: int = 0):
    base = load_model("whisper_tiny_random")
    model = dataclasses.replace(base, asr_model=copy.deepcopy(base.asr_model))
    lower = tuple(WHISPER.encoder_block_names(model.asr_model)[:tap_layer])
    inject(model.asr_model, ["whisper_all"], rank=4, alpha=8, languages=LANGS,
           layout=BankLayout(kind, tap_layer, lower))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for bank in banks(model.asr_model).values():
            bank.lora_A.copy_(torch.randn(bank.lora_A.shape, generator=gen) * 0.3)
            bank.lora_B.copy_(torch.randn(bank.lora_B.shape, generator=gen) * 0.3)
    model.asr_model.eval()
    return model


def one_utterance_dir(tmp_path, wave, name: str = "cs"):
    """A data dir `tmp_path/name` holding `wave` as utterance s1-u (Hindi by utt2lang)."""
    import soundfile as sf

    from espnet_ext.data.kaldi import Utterance, write_data_dir

    sf.write(str(tmp_path / f"{name}.wav"), wave, 16000, subtype="FLOAT")
    write_data_dir(tmp_path / name, [Utterance("s1-u", "s1", "x", "hi", str(tmp_path / f"{name}.wav"), len(wave) / 16000)])
    return tmp_path / name


@pytest.fixture(scope="module")
def routed_tiny():
    return banked_tiny()


@pytest.mark.parametrize("beam", [1, 2])
@torch.no_grad()
def test_mixed_batch_equals_merged_single_language(routed_tiny, beam):
    backend = make_backend(routed_tiny, pad_to_30s=False)
    audios = [random_audio(s, i) for i, s in enumerate([0.8, 0.5, 1.1, 0.7])]  # padding is masked
    config = SearchConfig(beam_size=beam, max_tokens=8)
    batched = transcribe_batch(backend, audios, LANGS, config)
    for i, lang in enumerate(LANGS):
        merge_adapter(routed_tiny.asr_model, lang)
        try:
            for bank in banks(routed_tiny.asr_model).values():
                bank.routing = None  # merged: the bank path is off, the base weight carries the adapter
            alone = transcribe_batch(backend, [audios[i]], [lang], config)[0]
        finally:
            unmerge_all(routed_tiny.asr_model)
        assert batched[i].text == alone.text, lang


@torch.no_grad()
def test_a_one_language_batch_runs_merged_with_the_routed_result_and_leaves_the_weights_as_they_were(
        routed_tiny, monkeypatch):
    import espnet_ext.decode.transcribe as transcribe

    backend = make_backend(routed_tiny, pad_to_30s=False)
    audios = [random_audio(s, i) for i, s in enumerate([0.9, 0.6, 0.7])]
    config = SearchConfig(max_tokens=8)
    before = {k: v.clone() for k, v in routed_tiny.asr_model.state_dict().items()}
    merged_calls = []
    real_merge = transcribe.merge_adapter
    monkeypatch.setattr(transcribe, "merge_adapter", lambda m, n: (merged_calls.append(n), real_merge(m, n)))
    merged = transcribe_batch(backend, audios, ["te"] * 3, config)
    assert merged_calls == ["te"]
    monkeypatch.setattr(transcribe, "_one_adapter", lambda *args: None)  # the bank's routed path instead
    routed = transcribe_batch(backend, audios, ["te"] * 3, config)
    assert [h.text for h in merged] == [h.text for h in routed]
    after = routed_tiny.asr_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@torch.no_grad()
def test_adapters_change_the_output(routed_tiny):
    backend = make_backend(routed_tiny, pad_to_30s=False)
    clip = [random_audio(0.8, 7)]
    outputs = {lang: transcribe_batch(backend, clip, [lang], SearchConfig(max_tokens=8))[0].text for lang in LANGS}
    assert len(set(outputs.values())) > 1


class RightHead:
    """A LID head that knows the answer: one-hot posteriors of `truth`; records the states it saw. Its
    classes are in another order than the bank's adapters: routing maps them by name."""

    def __init__(self, layer, truth):
        self.layer, self.languages, self.truth, self.seen = layer, tuple(reversed(LANGS)), truth, []

    def __call__(self, hidden, lengths):
        self.seen.append(hidden)
        index = torch.tensor([self.languages.index(t) for t in self.truth])
        return torch.nn.functional.one_hot(index, len(LANGS)).float()


@pytest.mark.parametrize("kind, tap_layer, where", [("per_language", 0, "bare pass"),
                                                    ("above_tap", 1, "inside the pass"),
                                                    ("shared_below", 1, "inside the pass")])
@torch.no_grad()
def test_routing_by_a_head_on_the_tap_equals_oracle_when_the_head_is_right(kind, tap_layer, where):
    model = banked_tiny(kind, tap_layer)
    backend = make_backend(model, pad_to_30s=False)
    audios = [random_audio(s, 20 + i) for i, s in enumerate([0.9, 0.4, 1.2, 0.6])]
    truth = ["te", "hi", "it", "pa"]
    config = SearchConfig(max_tokens=8)
    oracle = transcribe_batch(backend, audios, truth, config)
    head = RightHead(1, truth)
    routed = transcribe_batch(backend, audios, [None] * 4, config, lid=head)
    assert [h.text for h in routed] == [h.text for h in oracle]
    assert [h.lang for h in routed] == truth
    assert where in routed[0].source and "utt2lang" in oracle[0].source
    assert len(head.seen) == 1
    if kind != "shared_below":  # nothing below the tap is adapted: the head sees the bare base's states
        bare = load_model("whisper_tiny_random").asr_model.eval()
        expected = WHISPER.encode(bare, *pad_batch(audios), False, all_hidden=True).hidden[1]
        torch.testing.assert_close(head.seen[0], expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_the_language_token_baseline_decides_on_the_bare_30s_window_and_says_so(routed_tiny):
    backend = make_backend(routed_tiny, pad_to_30s=False)
    hyp = transcribe_batch(backend, [random_audio(0.7, 30)], [None], SearchConfig(max_tokens=4))[0]
    assert "bare base" in hyp.source and "30 s window" in hyp.source
    assert hyp.lang == max(hyp.lang_posteriors, key=hyp.lang_posteriors.get)


class FixedHead:
    """A LID head with given posteriors per utterance (rows in batch order), classes in the bank's order."""

    def __init__(self, layer, posteriors):
        self.layer, self.languages, self.posteriors = layer, tuple(LANGS), torch.tensor(posteriors)

    def __call__(self, hidden, lengths):
        return self.posteriors


UNSURE = [[0.6, 0.4, 0.0, 0.0], [0.1, 0.1, 0.7, 0.1], [0.0, 0.0, 0.05, 0.95], [0.45, 0.55, 0.0, 0.0]]


@pytest.mark.parametrize("routing", ["soft", "threshold", "hierarchical"])
@torch.no_grad()
def test_a_mixed_batch_routed_by_weights_equals_each_utterance_alone(routing):
    from espnet_ext.routing.routers import make_router

    model = banked_tiny("shared_below", 1)
    backend = make_backend(model, pad_to_30s=False)
    audios = [random_audio(s, 40 + i) for i, s in enumerate([0.9, 0.4, 1.2, 0.6])]
    config, router = SearchConfig(max_tokens=8), make_router(routing, tau=0.9)
    batched = transcribe_batch(backend, audios, [None] * 4, config, FixedHead(1, UNSURE), router)
    for i, audio in enumerate(audios):
        alone = transcribe_batch(backend, [audio], [None], config, FixedHead(1, UNSURE[i : i + 1]), router)[0]
        assert (batched[i].text, batched[i].weights) == (alone.text, alone.weights)
    assert sum(batched[0].weights.values()) == pytest.approx(1.0) and batched[0].weights["pa"] > 0
    assert routing in batched[0].source


@torch.no_grad()
def test_low_confidence_falls_back_to_the_base_model():
    from espnet_ext.routing.routers import make_router

    model = banked_tiny("per_language", 0)
    backend = make_backend(model, pad_to_30s=False)
    audios = [random_audio(s, 50 + i) for i, s in enumerate([0.9, 0.4, 1.2, 0.6])]
    config = SearchConfig(max_tokens=8)
    routed = transcribe_batch(backend, audios, [None] * 4, config, FixedHead(0, UNSURE),
                              make_router("hard", min_confidence=0.9))
    bare = make_backend(load_model("whisper_tiny_random"), pad_to_30s=False)
    base = transcribe_batch(bare, audios, ["hi", "te", "it", "pa"], config)
    assert [h.lang for h in routed] == ["hi", "te", "it", "pa"]
    assert [h.text for h in routed[:2] + routed[3:]] == [h.text for h in base[:2] + base[3:]]  # below 0.9
    assert sum(routed[0].weights.values()) == 0 and routed[2].weights["it"] == 1.0
    sure = transcribe_batch(backend, audios[2:3], ["it"], config)[0]
    assert routed[2].text == sure.text  # 0.95 >= 0.9: its adapter


@torch.no_grad()
def test_segments_decode_alone_with_their_language_and_join_in_order(routed_tiny, tmp_path):
    import json

    import soundfile as sf

    from espnet_ext.data.kaldi import LanguageSegment, Utterance, write_data_dir
    from espnet_ext.decode.transcribe import DecodeOptions, decode_data_dir

    waves = {"s1-a": random_audio(1.2, 0), "s1-b": random_audio(0.9, 1)}
    utts = []
    for utt, wave in waves.items():
        sf.write(str(tmp_path / f"{utt}.wav"), wave, 16000, subtype="FLOAT")
        utts.append(Utterance(utt, "s1", "x", "hi", str(tmp_path / f"{utt}.wav"), len(wave) / 16000))
    write_data_dir(tmp_path / "cs", utts)
    options = DecodeOptions(search=SearchConfig(max_tokens=6), pad_to_30s=False)
    whole = {u: [LanguageSegment(0.0, len(w) / 16000, "hi")] for u, w in waves.items()}
    decode_data_dir(routed_tiny, tmp_path / "cs", tmp_path / "plain", options)
    decode_data_dir(routed_tiny, tmp_path / "cs", tmp_path / "whole", options, segments=whole)
    assert (tmp_path / "whole" / "text").read_text() == (tmp_path / "plain" / "text").read_text()
    split = {u: [LanguageSegment(0.0, 0.5, "hi"), LanguageSegment(0.5, len(w) / 16000, "it")] for u, w in waves.items()}
    decode_data_dir(routed_tiny, tmp_path / "cs", tmp_path / "split", options, segments=split)
    backend = make_backend(routed_tiny, pad_to_30s=False)
    for line in (tmp_path / "split" / "text").read_text().splitlines():
        utt, text = (line.split(" ", 1) + [""])[:2]
        first = transcribe_batch(backend, [waves[utt][:8000]], ["hi"], options.search)[0].text
        second = transcribe_batch(backend, [waves[utt][8000:]], ["it"], options.search)[0].text
        assert text == " ".join(t for t in (first, second) if t)
        record = json.loads((tmp_path / "split" / "lid.json").read_text())[utt]
        assert [s[2] for s in record["segments"]] == ["hi", "it"] and record["segments"][1][3] == second


@torch.no_grad()
def test_a_segment_without_adapter_is_decoded_by_the_base_on_its_30s_window(routed_tiny, tmp_path):
    from espnet_ext.data.kaldi import LanguageSegment
    from espnet_ext.decode.transcribe import DecodeOptions, decode_data_dir

    wave = random_audio(1.0, 9)
    one_utterance_dir(tmp_path, wave)
    options = DecodeOptions(search=SearchConfig(max_tokens=6), pad_to_30s=False)
    segments = {"s1-u": [LanguageSegment(0.0, 0.5, "hi"), LanguageSegment(0.5, 1.0, "en")]}
    decode_data_dir(routed_tiny, tmp_path / "cs", tmp_path / "out", options, segments=segments)
    text = (tmp_path / "out" / "text").read_text().split(" ", 1)[1].strip()
    hindi = transcribe_batch(make_backend(routed_tiny, pad_to_30s=False), [wave[:8000]], ["hi"], options.search)[0].text
    english = transcribe_batch(make_backend(routed_tiny, pad_to_30s=True), [wave[8000:]], ["en"], options.search)[0].text
    assert text == " ".join(t for t in (hindi, english) if t)


@pytest.mark.parametrize("kind, tap_layer", [("per_language", 0), ("shared_below", 1)])
@torch.no_grad()
def test_per_frame_routing_equals_per_utterance_routing_when_a_segment_is_the_whole_utterance(kind, tap_layer):
    from espnet_ext.data.kaldi import LanguageSegment
    from espnet_ext.decode.transcribe import transcribe_segments_one_pass

    model = banked_tiny(kind, tap_layer)
    backend = make_backend(model, pad_to_30s=False)
    audios = [random_audio(s, i) for i, s in enumerate([0.8, 0.5, 1.1, 0.7])]
    config = SearchConfig(max_tokens=8)
    whole = [[LanguageSegment(0.0, len(a) / 16000, lang)] for a, lang in zip(audios, LANGS)]
    one_pass = transcribe_segments_one_pass(backend, audios, whole, config)
    per_utterance = transcribe_batch(backend, audios, LANGS, config)
    assert [[h.text for h in hyps] for hyps in one_pass] == [[h.text] for h in per_utterance]
    assert [hyps[0].weights[lang] for hyps, lang in zip(one_pass, LANGS)] == [1.0] * 4


@torch.no_grad()
def test_one_pass_decodes_each_segment_over_its_own_frames_with_its_language(routed_tiny, tmp_path):
    import json

    from espnet_ext.data.kaldi import LanguageSegment
    from espnet_ext.decode.transcribe import DecodeOptions, decode_data_dir, transcribe_segments_one_pass

    wave = random_audio(1.2, 3)
    one_utterance_dir(tmp_path, wave)
    options = DecodeOptions(search=SearchConfig(max_tokens=6), pad_to_30s=False)
    split = [LanguageSegment(0.0, 0.5, "hi"), LanguageSegment(0.5, 0.9, "en"), LanguageSegment(0.9, 1.2, "it")]
    decode_data_dir(routed_tiny, tmp_path / "cs", tmp_path / "out", options, segments={"s1-u": split}, one_pass=True)
    record = json.loads((tmp_path / "out" / "lid.json").read_text())["s1-u"]
    assert [s[2] for s in record["segments"]] == ["hi", "en", "it"] and "one encoder pass" in record["source"]
    hyps = transcribe_segments_one_pass(make_backend(routed_tiny, pad_to_30s=False), [wave], [split], options.search)[0]
    assert [h.text for h in hyps] == [s[3] for s in record["segments"]]
    assert sum(hyps[1].weights.values()) == 0 and hyps[2].weights["it"] == 1.0  # English: the base model
    # the reference written out: frames 0-24 through hi, 25-44 the base, 45-59 through it (50 per second);
    # the last segment decoded over frames 45-59 alone, its decoder through it
    from espnet_ext.decode.search import beam_search
    from espnet_ext.lora.inject import set_language_routing, set_shared_adapter
    from espnet_ext.models.whisper_forward import EncoderOutput

    backend = make_backend(routed_tiny, pad_to_30s=False)
    asr = routed_tiny.asr_model
    encoder = [n for n in banks(asr) if n.startswith("encoder.")]
    decoder = [n for n in banks(asr) if not n.startswith("encoder.")]
    frames = torch.zeros(1, 60, 4)
    frames[0, :25, 0], frames[0, 45:, 3] = 1.0, 1.0
    set_shared_adapter(asr, True)
    set_language_routing(asr, frames, encoder)
    speech, lengths = pad_batch([wave])
    features = backend.encode(speech, lengths).features
    set_language_routing(asr, None, encoder)
    set_language_routing(asr, torch.tensor([[0.0, 0, 0, 1]]), decoder)
    with backend.state(EncoderOutput(features[:, 45:60], torch.tensor([15]))) as state:
        tokens = beam_search(state, [backend.prompt("it")], backend.eot, backend.suppress, [6], options.search)
    assert backend.decode_text(tokens[0]) == hyps[2].text


@torch.no_grad()
def test_language_candidates_decode_a_mixed_routing_once_per_language_and_keep_the_best():
    from espnet_ext.decode.search import beam_search
    from espnet_ext.lora.inject import set_language_routing, set_routing_weights
    from espnet_ext.routing.routers import make_router

    model = banked_tiny("per_language", 0)
    backend = make_backend(model, pad_to_30s=False)
    asr = model.asr_model
    audios = [random_audio(s, 60 + i) for i, s in enumerate([0.9, 0.4, 1.2, 0.6])]
    config, router = SearchConfig(max_tokens=8), make_router("threshold", tau=0.9)
    top1 = transcribe_batch(backend, audios, [None] * 4, config, FixedHead(0, UNSURE), router)
    tried = transcribe_batch(backend, audios, [None] * 4, config, FixedHead(0, UNSURE), router, candidates=2)
    assert (tried[2].text, tried[2].lang) == (top1[2].text, top1[2].lang)  # 0.95 >= tau: one candidate
    decoder = [n for n in banks(asr) if not n.startswith("encoder.")]
    for i in (0, 1, 3):  # below tau: the top two languages mixed, each tried in the decoder
        weights = torch.tensor([list(tried[i].weights.values())])
        assert (weights > 0).sum() == 2 and tried[i].weights == top1[i].weights
        set_routing_weights(asr, weights)
        encoded = backend.encode(*pad_batch([audios[i]]))
        scored = {}
        for lang in [LANGS[j] for j in weights[0].nonzero().flatten().tolist()]:
            set_language_routing(asr, torch.eye(4)[[LANGS.index(lang)]], decoder)
            with backend.state(encoded) as state:
                budget = 8 + int(config.tokens_per_second * len(audios[i]) / 16000)
                (tokens, score), = beam_search(state, [backend.prompt(lang)], backend.eot, backend.suppress,
                                              [min(config.max_tokens, budget)], config, with_scores=True)
            scored[lang] = (score, backend.decode_text(tokens))
        lang = max(scored, key=lambda k: scored[k][0])
        assert (tried[i].lang, tried[i].text) == (lang, scored[lang][1])
    assert "best-scoring of the top 2" in tried[0].source


@torch.no_grad()
def test_a_recording_over_30s_is_decoded_in_windows_cut_at_its_pauses(routed_tiny, tmp_path):
    import json

    import numpy as np

    from espnet_ext.decode.transcribe import DecodeOptions, decode_data_dir

    pause = np.zeros(16000, dtype=np.float32)
    parts = [random_audio(27.0, 71), random_audio(26.0, 72), random_audio(15.0, 73)]
    wave = np.concatenate([parts[0], pause, parts[1], pause, parts[2]])  # 70 s, pauses at 27-28 s and 54-55 s
    one_utterance_dir(tmp_path, wave, "long")
    options = DecodeOptions(search=SearchConfig(max_tokens=6), pad_to_30s=False)
    decode_data_dir(routed_tiny, tmp_path / "long", tmp_path / "out", options)
    record = json.loads((tmp_path / "out" / "lid.json").read_text())["s1-u"]
    assert len(record["windows"]) == 3 and "3 windows cut at quiet points" in record["source"]
    from espnet_ext.data.audio import cut_points

    cuts = cut_points(wave, 30.0)  # each window ends inside a pause, none past the 30 s window
    assert 27 * 16000 <= cuts[0] < 28 * 16000 and 54 * 16000 <= cuts[1] < 55 * 16000
    cuts = [0, *cuts, len(wave)]
    backend = make_backend(routed_tiny, pad_to_30s=False)
    alone = [transcribe_batch(backend, [wave[a:b]], ["hi"], options.search)[0].text for a, b in zip(cuts, cuts[1:])]
    text = (tmp_path / "out" / "text").read_text().split(" ", 1)[1].strip()
    assert text == " ".join(t for t in alone if t) and all(alone)
