"""Batched beam search (greedy is beam size 1) over any autoregressive decoder.

The search knows nothing of Whisper or OWSM: a model backend hands it a `DecoderState` that scores the
next token for every live hypothesis and can be reordered when hypotheses are pruned. This keeps the
rules that matter for multilingual zero-shot decoding in one place:

* token suppression (special tokens that must never appear in a transcript, and EOT at the first
  step so an utterance is never empty) without banning the bare-space token, which Whisper's tokenizer
  emits first for Punjabi and Telugu text (Whisper's `suppress_blank` bans it and forces a junk token);
* a guard against runaway repetition: zero-shot Whisper base loops for hundreds of tokens on some
  Indic clips, which costs minutes and inflates insertions; a hypothesis whose tail repeats the same
  n-gram too often is ended and the repeated copies are cut;
* a per-utterance token budget derived from the audio duration.
"""
from dataclasses import dataclass
from typing import List, Protocol, Sequence

import torch


class DecoderState(Protocol):
    """What a model backend provides to the search."""

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Log-probabilities `[n_hyp, vocab]` of the next token after feeding `tokens` `[n_hyp, t]`.

        The first call receives each hypothesis' whole prompt; later calls only the newest token.
        """

    def reorder(self, index: torch.Tensor) -> None:
        """Keep only hypotheses `index` (a LongTensor into the current rows), in that order."""


@dataclass
class SearchConfig:
    beam_size: int = 1
    max_tokens: int = 224  # hard cap on generated tokens (half of Whisper's 448-token context)
    tokens_per_second: float = 25.0  # budget per second of audio; byte-level BPE on Indic text is dense
    repeat_max_ngram: int = 8  # longest n-gram the loop guard looks for
    repeat_min_copies: int = 4  # consecutive copies of an n-gram that count as a loop
    length_normalise: bool = True  # rank finished hypotheses by mean log-prob, as Whisper does


def _repeated_tail(tokens: Sequence[int], max_ngram: int, min_copies: int) -> int:
    """Length of the looping tail beyond its first copy, or 0 when the tail does not loop."""
    for n in range(1, max_ngram + 1):
        span = n * min_copies
        if len(tokens) < span:
            break
        gram = tokens[-n:]
        if all(tokens[-span + i * n : -span + (i + 1) * n or None] == gram for i in range(min_copies)):
            copies = min_copies
            while len(tokens) >= n * (copies + 1) and tokens[-n * (copies + 1) : -n * copies] == gram:
                copies += 1
            return n * (copies - 1)
    return 0


@dataclass
class _Hyp:
    tokens: List[int]
    logprob: float


def token_budget(durations: Sequence[float], config: SearchConfig) -> List[int]:
    """Max generated tokens per utterance: proportional to duration, capped by `config.max_tokens`."""
    return [min(config.max_tokens, int(8 + config.tokens_per_second * d)) for d in durations]


def beam_search(
    state: DecoderState,
    prompts: Sequence[Sequence[int]],
    eot: int,
    suppress: torch.Tensor,
    budgets: Sequence[int],
    config: SearchConfig,
    with_scores: bool = False,
) -> List:
    """Decode a batch; return the generated tokens (no prompt, no EOT) of the best hypothesis each (with
    `with_scores`: (tokens, score) pairs, the score the search ranked by, comparable across rows).

    `prompts` must all have the same length (the backend pads or aligns them); `suppress` is a bool
    mask `[vocab]` of tokens never to emit. Each utterance keeps `beam_size` live hypotheses; rows of
    `state` are `utterance * beam + k`.
    """
    beam = config.beam_size
    n_utt = len(prompts)
    prompt = torch.tensor([list(p) for p in prompts for _ in range(beam)], dtype=torch.long)
    live: List[List[_Hyp]] = [[_Hyp([], 0.0) for _ in range(beam)] for _ in range(n_utt)]
    finished: List[List[_Hyp]] = [[] for _ in range(n_utt)]
    active = list(range(n_utt))  # utterances still searching, in state row-block order
    logprobs = state.step(prompt)
    step = 0
    while True:
        logprobs = logprobs.masked_fill(suppress, float("-inf"))
        if step == 0:
            logprobs[:, eot] = float("-inf")  # never an empty transcript
        if step == 0 and beam > 1:
            logprobs = logprobs.view(len(active), beam, -1)
            logprobs[:, 1:] = float("-inf")  # all beams start identical: expand from the first only
            logprobs = logprobs.view(len(active) * beam, -1)
        rows, next_tokens, still_active = [], [], []
        for block, utt in enumerate(active):
            scores = logprobs[block * beam : (block + 1) * beam]
            base = torch.tensor([h.logprob for h in live[utt]]).unsqueeze(1)
            top_scores, top_index = (scores + base).view(-1).topk(2 * beam)
            new_live = []
            for score, flat in zip(top_scores.tolist(), top_index.tolist()):
                src, token = divmod(flat, scores.size(1))
                hyp = _Hyp(live[utt][src].tokens + [token], score)
                looping = _repeated_tail(hyp.tokens, config.repeat_max_ngram, config.repeat_min_copies)
                if token == eot or looping or len(hyp.tokens) >= budgets[utt]:
                    if token == eot:
                        hyp.tokens.pop()
                    elif looping:
                        del hyp.tokens[len(hyp.tokens) - looping :]
                    finished[utt].append(hyp)
                elif len(new_live) < beam:
                    new_live.append(hyp)
                    rows.append(block * beam + src)
                    next_tokens.append(token)
                if len(new_live) == beam:
                    break
            if len(finished[utt]) >= beam or not new_live:
                del rows[len(rows) - len(new_live) :]
                del next_tokens[len(next_tokens) - len(new_live) :]
            else:
                live[utt] = new_live
                still_active.append(utt)
        if not still_active:
            break
        if rows != list(range(len(active) * beam)):
            state.reorder(torch.tensor(rows, dtype=torch.long))  # skipped when nothing moved
        active = still_active
        step += 1
        logprobs = state.step(torch.tensor(next_tokens, dtype=torch.long).unsqueeze(1))
    best = [max(finished[utt], key=lambda h: _rank(h, config)) for utt in range(n_utt)]
    return [(h.tokens, _rank(h, config)) for h in best] if with_scores else [h.tokens for h in best]


def _rank(h: _Hyp, config: SearchConfig) -> float:
    return h.logprob / max(1, len(h.tokens)) if config.length_normalise else h.logprob
