"""Batched transcription of audio and of whole Kaldi data dirs with an ESPnet Whisper/OWSM model.

One batch = one encoder pass, optional language detection from the same encoder output, then one
batched beam search. Utterances are sorted by duration before batching so that real-length batches
carry little padding.
"""
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from espnet_ext.data.audio import SAMPLE_RATE, utterance_audio
from espnet_ext.data.kaldi import read_data_dir
from espnet_ext.decode.search import SearchConfig, beam_search, token_budget
from espnet_ext.fileio import atomic_write_text
from espnet_ext.languages import LANGUAGES
from espnet_ext.lora.inject import banks, one_hot_weights, reorder_routing_weights, set_routing_weights

log = logging.getLogger(__name__)


@dataclass
class DecodeOptions:
    search: SearchConfig = field(default_factory=SearchConfig)
    batch_size: int = 8
    pad_to_30s: bool = True  # zero-shot Whisper is better on the 30 s window it was trained on
    detect_language: bool = False  # False: force each utterance's language from utt2lang (oracle)


@dataclass
class Hypothesis:
    text: str
    lang: str
    lang_posteriors: Dict[str, float]


def make_backend(model, pad_to_30s: bool):
    """The decoding backend for a registry `LoadedModel` (Whisper or OWSM)."""
    if model.family == "whisper":
        from espnet_ext.decode.whisper_backend import WhisperBackend

        return WhisperBackend(model.asr_model, model.tokenizer, pad_to_30s)
    if model.family == "owsm":
        from espnet_ext.decode.owsm_backend import OwsmBackend

        return OwsmBackend(model.asr_model, model.tokenizer)
    raise ValueError(f"no decoding backend for model family {model.family!r}")


def _pad_batch(audios: Sequence[np.ndarray]):
    lengths = torch.tensor([len(a) for a in audios])
    speech = torch.zeros(len(audios), int(lengths.max()))
    for i, audio in enumerate(audios):
        speech[i, : len(audio)] = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    return speech, lengths


class _RoutedState:
    """Keeps the LoRA banks' per-row routing weights aligned with the search's hypothesis rows."""

    def __init__(self, state, model: torch.nn.Module):
        self.state, self.model = state, model

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.state.step(tokens)

    def reorder(self, index: torch.Tensor) -> None:
        self.state.reorder(index)
        reorder_routing_weights(self.model, index)


@torch.no_grad()
def transcribe_batch(backend, audios: Sequence[np.ndarray], langs: Sequence[Optional[str]], config: SearchConfig) -> List[Hypothesis]:
    """Transcribe one batch; `langs[i]` forces utterance i's language, None lets the model detect it.

    With LoRA adapters loaded, each utterance goes through the adapter of the language it is decoded
    in. Forced languages route before the encoder; detected ones need a base-model pass first.
    """
    speech, lengths = _pad_batch(audios)
    device = next(backend.model.parameters()).device
    speech, lengths = speech.to(device), lengths.to(device)
    candidates = list(LANGUAGES)
    routed = bool(banks(backend.model))
    known = all(langs)
    if routed:
        set_routing_weights(backend.model, one_hot_weights(backend.model, langs) if known else None)
    features = backend.encode(speech, lengths)
    with backend.state(features) as state:
        posteriors = backend.language_posteriors(state, candidates)
    chosen = [lang or candidates[i] for lang, i in zip(langs, posteriors.argmax(-1).tolist())]
    if routed and not known:
        set_routing_weights(backend.model, one_hot_weights(backend.model, chosen))
        features = backend.encode(speech, lengths)
    budgets = token_budget([n / SAMPLE_RATE for n in lengths.tolist()], config)
    with backend.state(features) as state:
        search_state = _RoutedState(state, backend.model) if routed else state
        if config.beam_size > 1:
            search_state.reorder(torch.arange(len(audios)).repeat_interleave(config.beam_size))
        prompts = [backend.prompt(lang) for lang in chosen]
        tokens = beam_search(search_state, prompts, backend.eot, backend.suppress, budgets, config)
    return [
        Hypothesis(backend.decode_text(t), lang, dict(zip(candidates, p)))
        for t, lang, p in zip(tokens, chosen, posteriors.cpu().tolist())
    ]


def job_slice(utt_ids: Sequence[str], job: int, nj: int) -> List[str]:
    """The contiguous share of job `job` (1-based) out of `nj`, as Kaldi's split_data does."""
    if not 1 <= job <= nj:
        raise ValueError(f"job {job} is outside 1..{nj}")
    bounds = np.linspace(0, len(utt_ids), nj + 1).astype(int)
    return list(utt_ids[bounds[job - 1] : bounds[job]])


def decode_data_dir(model, data_dir: Path, out_dir: Path, options: DecodeOptions, job: int = 1, nj: int = 1) -> int:
    """Decode this job's share of `data_dir` into `out_dir/{text,lid.json}`; returns #utterances."""
    utterances = {u.utt_id: u for u in read_data_dir(data_dir)}
    utt_ids = job_slice(sorted(utterances), job, nj)
    utt_ids.sort(key=lambda u: -utterances[u].duration)
    backend = make_backend(model, options.pad_to_30s)
    texts, lid = {}, {}
    batches = [utt_ids[i : i + options.batch_size] for i in range(0, len(utt_ids), options.batch_size)]
    for batch in tqdm(batches, desc=f"decode {data_dir.name} job {job}/{nj}", unit="batch"):
        utts = [utterances[u] for u in batch]
        audios = [utterance_audio(u) for u in utts]
        langs = [None if options.detect_language else u.lang for u in utts]
        for utt, hyp in zip(batch, transcribe_batch(backend, audios, langs, options.search)):
            texts[utt] = hyp.text
            lid[utt] = {"lang": hyp.lang, "posteriors": hyp.lang_posteriors}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "text", "".join(f"{u} {texts[u]}\n" for u in sorted(texts)))
    atomic_write_text(out_dir / "lid.json", json.dumps({u: lid[u] for u in sorted(lid)}, ensure_ascii=False, indent=1))
    return len(texts)


def merge_jobs(out_dir: Path, nj: int) -> int:
    """Join `out_dir/split<nj>/<job>/{text,lid.json}` into `out_dir/{text,lid.json}`."""
    texts, lid = [], {}
    for job in range(1, nj + 1):
        job_dir = out_dir / f"split{nj}" / str(job)
        if not (job_dir / "text").exists():
            raise FileNotFoundError(f"{job_dir / 'text'} is missing: decoding job {job} did not finish; see {out_dir}/log/decode.{job}.log and rerun the decoding stage")
        texts += (job_dir / "text").read_text(encoding="utf-8").splitlines(keepends=True)
        lid.update(json.loads((job_dir / "lid.json").read_text(encoding="utf-8")))
    texts.sort(key=lambda line: line.split(" ", 1)[0])
    atomic_write_text(out_dir / "text", "".join(texts))
    atomic_write_text(out_dir / "lid.json", json.dumps(dict(sorted(lid.items())), ensure_ascii=False, indent=1))
    return len(texts)
