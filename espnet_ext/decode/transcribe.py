"""Batched transcription of audio and of whole Kaldi data dirs with an ESPnet Whisper/OWSM model.

One batch = one encoder pass, then one batched beam search. Utterances are sorted by duration before
batching so that real-length batches carry little padding (the forward masks it, so a transcript never
depends on its batch); where languages are known beforehand (forced), by language first, so that most
batches hold one language, whose adapter is then merged into the base weights for the batch: the bank's
routed path costs ~1.4x the merged one (bench/decode_speed.py --adapter_dir). With LoRA adapters loaded, each utterance goes through the adapter(s) of its
language, decided in one of three ways, recorded per utterance in lid.json ("source", with the
posteriors and the routing weights):

- forced (`utt2lang`, oracle routing): the routing is set before the pass; with `adapter` (zero-shot
  transfer), every utterance goes through that one adapter while its language token stays its own;
- a language-ID head on the encoder's tap (`lid`, anything with `layer`, `languages` and
  `__call__(hidden, lengths) -> posteriors`), whose posteriors a router (espnet_ext.routing) turns
  into weights: with a bank of layout above_tap or shared_below it decides inside the pass, between
  encoder block k and k+1; with per_language it needs a bare pass of the first k blocks first (those
  blocks hold adapters too);
- Whisper's (or OWSM's) own language token, the baseline: a bare-base pass on the 30 s window, where
  the base is at its best, then the routed pass at the length the adapters were trained on.
"""
import contextlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from espnet_ext.data.audio import SAMPLE_RATE, cut_points, pad_batch, utterance_audio
from espnet_ext.data.kaldi import LanguageSegment, Utterance, read_data_dir
from espnet_ext.decode.search import SearchConfig, beam_search, token_budget
from espnet_ext.errors import UserError
from espnet_ext.fileio import atomic_write_text
from espnet_ext.languages import LANGUAGES, LID_LANGUAGES
from espnet_ext.lora.inject import (
    adapter_names,
    bank_info,
    banks,
    language_banks,
    merge_adapter,
    reorder_routing_weights,
    route_for_tap,
    set_language_routing,
    set_routing_weights,
    set_shared_adapter,
    unmerge_all,
)
from espnet_ext.models.whisper_forward import EncoderOutput, Tap
from espnet_ext.routing.routers import HardRouter, Router, Routing, bank_weights

log = logging.getLogger(__name__)


@dataclass
class DecodeOptions:
    search: SearchConfig = field(default_factory=SearchConfig)
    batch_size: int = 8
    pad_to_30s: bool = True  # zero-shot Whisper is better on the 30 s window it was trained on
    detect_language: bool = False  # False: force each utterance's language from utt2lang (oracle)
    language_candidates: int = 1  # > 1: a mixed routing decodes its top languages and keeps the best
    adapter: Optional[str] = None  # oracle only: every utterance through this adapter, with its own language token
    int8: str = "none"  # parts on int8 weights, espnet_ext.decode.int8.PARTS: CPU speed for a little accuracy


@dataclass
class Hypothesis:
    text: str
    lang: str
    lang_posteriors: Dict[str, float]
    weights: Dict[str, float]  # the routing's weight per language (a zero row: the base model)
    source: str  # where `lang` and the posteriors came from


def make_backend(model, pad_to_30s: bool, int8: str = "none"):
    """The decoding backend of a registry `LoadedModel` (its family's)."""
    return model.family.backend(model, pad_to_30s, int8)


class _RoutedState:
    """Keeps the LoRA banks' per-row routing weights aligned with the search's hypothesis rows."""

    def __init__(self, state, model: torch.nn.Module):
        self.state, self.model = state, model

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.state.step(tokens)

    def reorder(self, index: torch.Tensor) -> None:
        self.state.reorder(index)
        reorder_routing_weights(self.model, index)


def _own_language_id(backend, encoded: EncoderOutput, candidates: Sequence[str]) -> torch.Tensor:
    with backend.state(encoded) as state:
        return backend.language_posteriors(state, candidates)


def _forced(backend, speech, lengths, langs,
            adapter: Optional[str] = None) -> Tuple[EncoderOutput, torch.Tensor, Routing, str]:
    """Each utterance through its language's adapter with its language token; with `adapter`, every
    utterance through that adapter instead, the token still its own (zero-shot transfer)."""
    model, candidates = backend.model, list(LANGUAGES)
    if adapter is not None and adapter not in adapter_names(model):  # (no bank at all: adapter_names says so)
        raise ValueError(f"adapter {adapter!r} is not in the model's LoRA bank {list(adapter_names(model))}")
    routed = [adapter or lang for lang in langs]
    routing = Routing(torch.stack([torch.tensor([float(c == lang) for c in candidates]) for lang in routed]), list(langs))
    if banks(model):
        set_routing_weights(model, bank_weights(routing, candidates, adapter_names(model)))
    encoded = backend.encode(speech, lengths)
    posteriors = _own_language_id(backend, encoded, candidates)
    how = "utt2lang" if adapter is None else (f"utt2lang for the language token; every utterance through adapter "
                                               f"{adapter} (zero-shot transfer)")
    return encoded, posteriors, routing, f"{how} (posteriors: the model's own language token, same pass)"


def _by_language_token(backend, speech, lengths) -> Tuple[EncoderOutput, torch.Tensor, Routing, str]:
    """The model's own language token restricted to the LID's classes (LID_LANGUAGES), argmax; with
    adapters, on a bare-base 30 s pass before the routed one."""
    model, candidates = backend.model, LID_LANGUAGES
    if not banks(model):
        encoded = backend.encode(speech, lengths)
        posteriors = _own_language_id(backend, encoded, candidates)
        window = "30 s window" if backend.pad_to_30s else "real length"
        return encoded, posteriors, HardRouter()(posteriors, candidates), f"the model's own language token ({window})"
    set_routing_weights(model, None)
    posteriors = _own_language_id(backend, backend.encode(speech, lengths, pad_to_30s=True), candidates)
    routing = HardRouter()(posteriors, candidates)
    set_routing_weights(model, bank_weights(routing, candidates, adapter_names(model)))
    source = "the bare base's own language token on the 30 s window (a separate pass), argmax"
    return backend.encode(speech, lengths), posteriors, routing, source


def _by_tap(backend, speech, lengths, lid, router: Router) -> Tuple[EncoderOutput, torch.Tensor, List[str], str]:
    """A LID head on encoder block `lid.layer`'s states; `router` turns its posteriors into the weights of
    the blocks above and the decoder, and the language token."""
    model = backend.model
    layout, bank_languages = bank_info(model).layout, adapter_names(model)
    missing = sorted(set(bank_languages) - set(lid.languages))
    if missing:
        raise ValueError(f"the LID head's languages {list(lid.languages)} lack the bank's adapters {missing}")
    decided = {}

    def route(hidden: torch.Tensor, frames: torch.Tensor) -> None:
        decided["posteriors"] = lid(hidden, frames)  # columns in the head's language order
        decided["routing"] = router(decided["posteriors"], lid.languages)
        set_language_routing(model, bank_weights(decided["routing"], lid.languages, bank_languages))

    set_language_routing(model, None)
    how = f"LID head on encoder layer {lid.layer}, router {router.name}"
    if layout.kind == "per_language":  # the blocks below the tap are routed too: decide on a bare pass
        set_shared_adapter(model, False)
        backend.encode(speech, lengths, tap=Tap(lid.layer, route, stop=True))
        encoded, source = backend.encode(speech, lengths), f"{how}, on a bare pass first (layout per_language)"
    else:
        if lid.layer != layout.tap_layer:
            raise ValueError(f"the LID head reads encoder layer {lid.layer} but the bank's layout {layout.kind} "
                             f"taps layer {layout.tap_layer}")
        route_for_tap(model)
        encoded = backend.encode(speech, lengths, tap=Tap(lid.layer, route))
        source = f"{how}, inside the pass (layout {layout.kind})"
    return encoded, decided["posteriors"], decided["routing"], source


def language_candidates(routing: Routing, languages: Sequence[str], n: int) -> List[List[str]]:
    """The decoder languages to try per utterance: where the weights mix languages, the `n` largest (a
    beam per candidate language, as Kwok et al., TASLP 2025, recover LID errors); else its token alone."""
    out = []
    for row, token in zip(routing.weights.float().cpu(), routing.langs):
        order = [int(j) for j in row.argsort(descending=True) if row[j] > 0]
        out.append([languages[j] for j in order[:n]] if len(order) > 1 and n > 1 else [token])
    return out


def _search(backend, encoded: EncoderOutput, routing: Routing, languages: Sequence[str], durations: Sequence[float],
            config: SearchConfig, candidates: int) -> Tuple[List[List[int]], List[str]]:
    """The batch's tokens and decoder languages. An utterance with several `language_candidates` is
    searched once per candidate, the decoder through that language's adapter alone and with its token
    (the encoder keeps the mix), and the best-scoring candidate kept: up to `candidates` times the
    decoder's cost for those utterances, none for the others."""
    model = backend.model
    routed = bool(banks(model))
    tried = language_candidates(routing, languages, candidates)
    rows = [(i, lang) for i, langs in enumerate(tried) for lang in langs]
    if len(rows) > len(tried):
        index = torch.tensor([i for i, _ in rows])
        encoded = EncoderOutput(encoded.features.index_select(0, index.to(encoded.features.device)),
                                encoded.lengths.index_select(0, index.to(encoded.lengths.device)))
        adapters = adapter_names(model)
        encoder, decoder = _encoder_and_decoder_banks(backend)
        set_language_routing(model, None, encoder)
        if decoder:
            one_hot = Routing(torch.stack([torch.tensor([float(c == lang) for c in languages]) for _, lang in rows]),
                              [lang for _, lang in rows])
            set_language_routing(model, bank_weights(one_hot, languages, adapters), decoder)
    budgets = token_budget([durations[i] for i, _ in rows], config)
    with backend.state(encoded) as state:
        search_state = _RoutedState(state, model) if routed else state
        if config.beam_size > 1:
            search_state.reorder(torch.arange(len(rows)).repeat_interleave(config.beam_size))
        prompts = [backend.prompt(lang) for _, lang in rows]
        found = beam_search(search_state, prompts, backend.eot, backend.suppress, budgets, config, with_scores=True)
    best: Dict[int, Tuple[float, List[int], str]] = {}
    for (i, lang), (tokens, score) in zip(rows, found):
        if i not in best or score > best[i][0]:
            best[i] = (score, tokens, lang)
    return [best[i][1] for i in range(len(tried))], [best[i][2] for i in range(len(tried))]


def _one_adapter(model, langs: Sequence[Optional[str]], adapter: Optional[str]) -> Optional[str]:
    """The one adapter every utterance of a forced batch goes through (`adapter`, or the batch's only
    language), if the model has it; None when the batch needs routing."""
    if not all(langs) or not banks(model) or any(bank.merged for bank in banks(model).values()):
        return None  # (a caller that merged an adapter itself keeps it)
    only = adapter or (langs[0] if len(set(langs)) == 1 else None)
    return only if only in adapter_names(model) else None


@contextlib.contextmanager
def _merged(model, name: Optional[str]) -> Iterator[None]:
    """Adapter `name` folded into the base weights for the block (routing is ignored while merged)."""
    if name is None:
        yield
        return
    merge_adapter(model, name)
    try:
        yield
    finally:
        unmerge_all(model)


@torch.no_grad()
def transcribe_batch(backend, audios: Sequence[np.ndarray], langs: Sequence[Optional[str]], config: SearchConfig,
                     lid=None, router: Optional[Router] = None, candidates: int = 1,
                     adapter: Optional[str] = None) -> List[Hypothesis]:
    """Transcribe one batch; `langs[i]` forces utterance i's language; None for all lets `lid` (a head
    on the tap, its posteriors turned into weights by `router`, hard by default) or else the model's own
    language token decide (module docstring). `candidates` > 1: an utterance whose routing mixes
    languages is decoded once per candidate language and the best kept (_search). `adapter`, with forced
    languages: every utterance through that adapter, its language token still `langs[i]`."""
    speech, lengths = pad_batch(audios)
    device = next(backend.model.parameters()).device
    speech, lengths = speech.to(device), lengths.to(device)
    languages = list(LANGUAGES)
    if adapter is not None and not all(langs):
        raise ValueError(f"adapter {adapter!r} keeps each utterance's own language token: force every language")
    if all(langs):  # a one-language batch (or one `adapter`) runs merged: the encoder and the search
        with _merged(backend.model, _one_adapter(backend.model, langs, adapter)):
            encoded, posteriors, routing, source = _forced(backend, speech, lengths, langs, adapter)
            return _hypotheses(backend, encoded, posteriors, routing, source, languages, lengths, config,
                               candidates)
    if any(langs):
        raise ValueError("force every utterance's language of a batch or none of them")
    if lid is not None:
        encoded, posteriors, routing, source = _by_tap(backend, speech, lengths, lid, router or HardRouter())
        languages = list(lid.languages)
    else:
        encoded, posteriors, routing, source = _by_language_token(backend, speech, lengths)
        languages = list(LID_LANGUAGES)
    return _hypotheses(backend, encoded, posteriors, routing, source, languages, lengths, config, candidates)


def _hypotheses(backend, encoded: EncoderOutput, posteriors: torch.Tensor, routing: Routing, source: str,
                languages: Sequence[str], lengths: torch.Tensor, config: SearchConfig,
                candidates: int) -> List[Hypothesis]:
    """The batch's search, and each utterance's transcript with its routing."""
    durations = [n / SAMPLE_RATE for n in lengths.tolist()]
    tokens, decoded_langs = _search(backend, encoded, routing, languages, durations, config, candidates)
    if candidates > 1:
        source += f"; decoder language: where the weights mix, the best-scoring of the top {candidates}"
    return [
        Hypothesis(backend.decode_text(t), lang, dict(zip(languages, p)), dict(zip(languages, w)), source)
        for t, lang, p, w in zip(tokens, decoded_langs, posteriors.float().cpu().tolist(),
                                 routing.weights.float().cpu().tolist())
    ]


def _encoder_and_decoder_banks(backend) -> Tuple[List[str], List[str]]:
    """The model's language banks split into (encoder, decoder) module names (the family knows its blocks)."""
    prefixes = backend.family.encoder_block_names(backend.model)
    encoder, decoder = [], []
    for name in language_banks(backend.model):
        (encoder if any(name.startswith(p + ".") for p in prefixes) else decoder).append(name)
    return encoder, decoder


def _segment_frames(seg: LanguageSegment, frames_per_second: float, frames: int) -> Tuple[int, int]:
    """Frames [start, end) of `seg` among an utterance's `frames` encoder frames (at least one)."""
    start = min(int(seg.start * frames_per_second), frames - 1)
    return start, max(start + 1, min(frames, round(seg.end * frames_per_second)))


@torch.no_grad()
def transcribe_segments_one_pass(backend, audios: Sequence[np.ndarray], segments: Sequence[Sequence[LanguageSegment]],
                                 config: SearchConfig) -> List[List[Hypothesis]]:
    """Code-switched speech in one encoder pass: each frame through its segment's adapter (per-frame bank
    weights `[batch, time, K]`, set by a tap before the first block, when the frame count is known); then
    every segment of the batch decoded in one search, cross-attending to its own frames only, the decoder
    through its language's adapter. A LID-only language (no adapter) gets zero weights: the base model.
    The other way, each segment re-encoded alone, is decode_data_dir's default (README: "Code-switched
    speech" measures both). Returns each utterance's segment hypotheses in time order."""
    model, adapters = backend.model, adapter_names(backend.model)
    encoder_banks, decoder_banks = _encoder_and_decoder_banks(backend)
    speech, lengths = pad_batch(audios)
    device = next(model.parameters()).device
    speech, lengths = speech.to(device), lengths.to(device)
    window_s = backend.family.window_samples / SAMPLE_RATE
    seen_s = [window_s if backend.pad_to_30s else n / SAMPLE_RATE for n in lengths.tolist()]
    one_hot = {lang: torch.eye(len(adapters))[adapters.index(lang)] if lang in adapters else torch.zeros(len(adapters))
               for utt in segments for lang in {seg.lang for seg in utt}}
    spans = {}  # (utterance, segment) -> its encoder frames

    def route_frames(hidden: torch.Tensor, frames: torch.Tensor) -> None:
        weights = torch.zeros(hidden.size(0), hidden.size(1), len(adapters))
        for i, utt in enumerate(segments):
            rate = int(frames[i]) / seen_s[i]
            for k, seg in enumerate(utt):
                spans[i, k] = _segment_frames(seg, rate, int(frames[i]))
                weights[i, spans[i, k][0]:spans[i, k][1]] = one_hot[seg.lang]
        set_language_routing(model, weights, encoder_banks)

    set_language_routing(model, None)
    set_shared_adapter(model, True)
    encoded = backend.encode(speech, lengths, tap=Tap(0, route_frames))
    set_language_routing(model, None, encoder_banks)
    pieces = [(i, k) for i, utt in enumerate(segments) for k in range(len(utt))]
    width = max(spans[p][1] - spans[p][0] for p in pieces)
    features = encoded.features.new_zeros(len(pieces), width, encoded.features.size(-1))
    for row, (i, k) in enumerate(pieces):
        start, end = spans[i, k]
        features[row, : end - start] = encoded.features[i, start:end]
    span_lengths = torch.tensor([spans[p][1] - spans[p][0] for p in pieces], device=features.device)
    langs = [segments[i][k].lang for i, k in pieces]
    weights = torch.stack([one_hot[lang] for lang in langs])
    if decoder_banks:
        set_language_routing(model, weights, decoder_banks)
    budgets = token_budget([segments[i][k].end - segments[i][k].start for i, k in pieces], config)
    with backend.state(EncoderOutput(features, span_lengths)) as state:
        search_state = _RoutedState(state, model)
        if config.beam_size > 1:
            search_state.reorder(torch.arange(len(pieces)).repeat_interleave(config.beam_size))
        tokens = beam_search(search_state, [backend.prompt(lang) for lang in langs], backend.eot, backend.suppress,
                             budgets, config)
    source = "one encoder pass, per-frame routing weights; each segment decoded over its own frames"
    out: List[List[Hypothesis]] = [[] for _ in segments]
    for (i, _), t, lang, w in zip(pieces, tokens, langs, weights.tolist()):
        out[i].append(Hypothesis(backend.decode_text(t), lang, {}, dict(zip(adapters, w)), source))
    return out


def job_slice(utt_ids: Sequence[str], job: int, nj: int) -> List[str]:
    """The contiguous share of job `job` (1-based) out of `nj`, as Kaldi's split_data does."""
    if not 1 <= job <= nj:
        raise ValueError(f"job {job} is outside 1..{nj}")
    bounds = np.linspace(0, len(utt_ids), nj + 1).astype(int)
    return list(utt_ids[bounds[job - 1] : bounds[job]])


def decode_data_dir(model, data_dir: Path, out_dir: Path, options: DecodeOptions, job: int = 1, nj: int = 1,
                    lid=None, router: Optional[Router] = None,
                    segments: Optional[Mapping[str, Sequence[LanguageSegment]]] = None, one_pass: bool = False,
                    utterances: Optional[Sequence[Utterance]] = None) -> int:
    """Decode this job's share of `data_dir` into `out_dir/{text,lid.json}`; returns #utterances. With
    `segments` (utterance -> language segments, checked to fit the dir by kaldi.check_segments), each
    segment is decoded alone with its language forced and the transcripts joined in time order: through
    its adapter, or for a language without one (LID-only English) through the base model on the 30 s
    window it was trained on (at the real length the bare base repeats itself: measured on the
    code-switched sets). With `one_pass` too, each utterance is encoded once with per-frame routing
    instead (transcribe_segments_one_pass). `utterances`: the data dir's, where the caller has read them
    already (decode.py does, before loading the model)."""
    utterances = {u.utt_id: u for u in (read_data_dir(data_dir) if utterances is None else utterances)}
    utt_ids = job_slice(sorted(utterances), job, nj)
    if segments is not None and one_pass and options.adapter is not None:
        raise ValueError("one-pass segment decoding routes each segment by its language; it has no single --adapter")
    if segments is not None and one_pass:
        hyps = _decode_one_pass(model, utterances, utt_ids, segments, options, f"{data_dir.name} job {job}/{nj}")
    else:
        hyps = _decode_pieces(model, utterances, utt_ids, segments, options, lid, router, f"{data_dir.name} job {job}/{nj}")
    _write_decoding(out_dir, utt_ids, hyps, segments)
    return len(utt_ids)


def _decode_one_pass(model, utterances, utt_ids, segments, options: DecodeOptions, what: str) -> Dict:
    """{(utt, k): hypothesis of segment k}, each utterance encoded once (transcribe_segments_one_pass)."""
    backend = make_backend(model, options.pad_to_30s, options.int8)
    order = sorted(utt_ids, key=lambda u: -utterances[u].duration)
    hyps = {}
    for i in tqdm(range(0, len(order), options.batch_size), desc=f"decode {what} (one pass)", unit="batch"):
        batch = order[i : i + options.batch_size]
        audios = [utterance_audio(utterances[u]) for u in batch]
        decoded = transcribe_segments_one_pass(backend, audios, [segments[u] for u in batch], options.search)
        for utt, utt_hyps in zip(batch, decoded):
            hyps.update({(utt, k): h for k, h in enumerate(utt_hyps)})
    return hyps


def _decode_pieces(model, utterances, utt_ids, segments, options: DecodeOptions, lid, router, what: str) -> Dict:
    """{(utt, k): hypothesis} of each segment decoded alone, or {(utt, None): ...} without segments; an
    utterance longer than the model's window is cut at quiet points (cut_points) into windows (utt, k)
    decoded alone, as Whisper's own long-form transcription does, so that nothing past 30 s is lost."""
    recordings = {}  # utterances read while planning (to segment or to cut): read once
    spans: Dict[str, List[Tuple[int, int]]] = {}  # utt -> its pieces' [start, end) samples
    limit = model.family.window_samples
    for utt in utt_ids:
        if segments is not None:
            spans[utt] = [(round(s.start * SAMPLE_RATE), round(s.end * SAMPLE_RATE)) for s in segments[utt]]
        elif utterances[utt].duration * SAMPLE_RATE > limit:
            recordings[utt] = utterance_audio(utterances[utt])
            bounds = [0] + cut_points(recordings[utt], limit / SAMPLE_RATE) + [len(recordings[utt])]
            spans[utt] = list(zip(bounds, bounds[1:]))
            log.info("%s: %.1f s, longer than the model's %g s window: decoded in %d windows cut at quiet points",
                     utt, utterances[utt].duration, limit / SAMPLE_RATE, len(spans[utt]))
    pieces = [(u, k) for u in utt_ids for k in range(len(spans[u]))] if spans else []
    pieces += [(u, None) for u in utt_ids if u not in spans]

    def piece_audio(utt: str, k: Optional[int]) -> np.ndarray:
        if k is None:
            return utterance_audio(utterances[utt])
        if utt not in recordings:
            recordings[utt] = utterance_audio(utterances[utt])
        return recordings[utt][spans[utt][k][0]:spans[utt][k][1]]

    def piece_seconds(piece) -> float:
        utt, k = piece
        return utterances[utt].duration if k is None else (spans[utt][k][1] - spans[utt][k][0]) / SAMPLE_RATE

    adapters = set(adapter_names(model.asr_model)) if banks(model.asr_model) else set()

    def window(piece) -> bool:  # whether the piece is decoded on the 30 s window
        utt, k = piece
        return options.pad_to_30s or (segments is not None and segments[utt][k].lang not in adapters)

    def known_language(piece) -> str:  # forced languages: one-language batches, whose adapter is merged
        utt, k = piece
        if segments is not None:
            return segments[utt][k].lang
        return "" if options.detect_language else utterances[utt].lang

    backends = {flag: make_backend(model, flag, options.int8) for flag in {window(piece) for piece in pieces}}
    pieces.sort(key=lambda piece: (window(piece), known_language(piece), -piece_seconds(piece)))
    hyps, batches = {}, []
    for flag in sorted(backends):  # a batch runs one input window
        group = [piece for piece in pieces if window(piece) == flag]
        batches += [group[i : i + options.batch_size] for i in range(0, len(group), options.batch_size)]
    for batch in tqdm(batches, desc=f"decode {what}", unit="batch"):
        backend = backends[window(batch[0])]
        audios = [piece_audio(u, k) for u, k in batch]
        if segments is not None:
            langs = [segments[u][k].lang for u, k in batch]
        else:
            langs = [None if options.detect_language else utterances[u].lang for u, _ in batch]
        hyps.update(zip(batch, transcribe_batch(backend, audios, langs, options.search, lid, router,
                                                options.language_candidates, options.adapter)))
    return hyps


def _write_decoding(out_dir: Path, utt_ids: Sequence[str], hyps: Mapping, segments) -> None:
    """`out_dir/{text,lid.json}`: per utterance its transcript (segments' joined in time order) and routing."""
    texts, decisions = {}, {}
    for utt in utt_ids:
        if (utt, None) in hyps:
            hyp = hyps[(utt, None)]
            texts[utt] = hyp.text
            decisions[utt] = {"lang": hyp.lang, "posteriors": hyp.lang_posteriors, "weights": hyp.weights,
                              "source": hyp.source}
        elif segments is None:  # a long recording's windows, each routed on its own
            parts = [hyps[key] for key in sorted(k for k in hyps if k[0] == utt)]
            texts[utt] = " ".join(h.text for h in parts if h.text)
            first = parts[0]
            decisions[utt] = {"lang": first.lang, "posteriors": first.lang_posteriors, "weights": first.weights,
                              "source": f"{first.source}; {len(parts)} windows cut at quiet points",
                              "windows": [[h.lang, h.text] for h in parts]}
        else:
            parts = [(seg, hyps[(utt, k)]) for k, seg in enumerate(segments[utt])]
            texts[utt] = " ".join(h.text for _, h in parts if h.text)
            longest = max(parts, key=lambda part: part[0].end - part[0].start)[0].lang
            decisions[utt] = {"lang": longest, "source": f"per segment: {parts[0][1].source}",
                              "segments": [[seg.start, seg.end, seg.lang, h.text] for seg, h in parts]}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "text", "".join(f"{u} {texts[u]}\n" for u in sorted(texts)))
    atomic_write_text(out_dir / "lid.json", json.dumps({u: decisions[u] for u in sorted(decisions)},
                                                       ensure_ascii=False, indent=1))


JOB_DONE = "done.yaml"  # in a job's split<nj>/<job>/: the options it was decoded with, written after its outputs


class UnfinishedDecode(UserError, FileNotFoundError):
    """A decoding job of the set has not finished: merging now would give a partial transcript."""


def merge_jobs(out_dir: Path, nj: int) -> int:
    """Join `out_dir/split<nj>/<job>/{text,lid.json}` into `out_dir/{text,lid.json}` (each written
    atomically), once every job has written its `JOB_DONE`."""
    texts, lid = [], {}
    for job in range(1, nj + 1):
        job_dir = out_dir / f"split{nj}" / str(job)
        if not (job_dir / JOB_DONE).exists():
            raise UnfinishedDecode(f"{job_dir / JOB_DONE} is missing: decoding job {job} did not finish; see {out_dir}/log/decode.{job}.log and rerun the decoding stage (finished jobs are kept)")
        texts += (job_dir / "text").read_text(encoding="utf-8").splitlines(keepends=True)
        lid.update(json.loads((job_dir / "lid.json").read_text(encoding="utf-8")))
    texts.sort(key=lambda line: line.split(" ", 1)[0])
    atomic_write_text(out_dir / "text", "".join(texts))
    atomic_write_text(out_dir / "lid.json", json.dumps(dict(sorted(lid.items())), ensure_ascii=False, indent=1))
    return len(texts)
