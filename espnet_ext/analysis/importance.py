"""Layer importance (a study): where in the network the language adapters matter, per language.

Every utterance of a probe subset is scored teacher-forced, each through its own language's adapter (oracle
routing, the shared adapter of layout shared_below on), first with every adapter on, then once per *unit*
with that unit's language adapters switched off (their banks routed to None, the base layer alone) and the
rest still oracle-routed. A unit is one transformer block holding language adapters (`enc 4`, `dec 1`: the
weight-space labels, 1-based) or a group: every encoder / decoder / attention / MLP adapter, and `all` (the
language adapters together; with layout shared_below the shared adapter stays on).

The scores are the decoder's teacher-forced cross-entropy (nats per token) and token error rate (argmax
!= reference) over the transcript's tokens and the end token, the decoder prompt's tokens left out (they
are forced when decoding). The targets and the forward are training's: the family's `training_targets`,
ESPnet's `add_sos_eos`, the family's masked encoder and the ESPnet decoder's forward, so the baseline loss
is the training loss of those tokens without label smoothing. A unit's importance for a language is the
change of that language's mean loss (and token error rate) when it is switched off: positive where the
adapters help.

A cheaper proxy needs no audio: the Frobenius norm of the unit's updates `delta W = (alpha/r) B A`,
summed over its modules (weights.py's factored form, read from the loaded bank, so the proxy describes
exactly the adapters switched off). Its Spearman rank correlation with the measured loss change is
taken over the block units only: the groups are sums of blocks and would agree with any proxy.

What decoding makes of it is measured too: each probe utterance decoded greedily (stage 5's search, its
language forced, oracle routing) with every adapter on and with each unit switched off, its CER per
language. That costs one search per unit, against the teacher-forced pass's one forward, so the study's
result also says how well the cheap loss change ranks the units as decoding does (Spearman, over blocks).

A unit is switched off by zeroing its language banks' `B` factors for the time (every language's, then
restored), so the bank adds exactly nothing: the same for the teacher-forced forward and for the search,
which sets the banks' routing (or merges an adapter) itself.
"""
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from espnet.nets.pytorch_backend.nets_utils import pad_list
from espnet.nets.pytorch_backend.transformer.add_sos_eos import add_sos_eos
from tqdm import tqdm

from espnet_ext.analysis.representations import evaluating
from espnet_ext.analysis.weights import factored_svd, module_site
from espnet_ext.data.audio import pad_batch, utterance_audio
from espnet_ext.data.kaldi import Utterance, read_data_dir
from espnet_ext.decode.search import SearchConfig
from espnet_ext.decode.transcribe import make_backend, transcribe_batch
from espnet_ext.errors import UserError
from espnet_ext.languages import LANGUAGES
from espnet_ext.lora.inject import adapter_names, language_banks, one_hot_weights, routing
from espnet_ext.scoring.metrics import char_error_counts

log = logging.getLogger(__name__)

ENCODER_BLOCK, DECODER_BLOCK, GROUP = "encoder_block", "decoder_block", "group"
GROUPS = ("encoder", "decoder", "attention", "mlp", "all")


class ProbeSetError(UserError, ValueError):
    """A probe dir without utterances of any adapter's language."""


@dataclass(frozen=True)
class Unit:
    """Language banks switched off together."""

    name: str
    kind: str  # ENCODER_BLOCK | DECODER_BLOCK | GROUP
    modules: Tuple[str, ...]


@dataclass(frozen=True)
class Score:
    """One utterance's teacher-forced score over its scored tokens (transcript and end token)."""

    loss: float  # mean cross-entropy, nats per token
    errors: int  # tokens whose argmax is not the reference
    tokens: int


def importance_units(model: torch.nn.Module) -> List[Unit]:
    """The units of `model`'s language banks in network order: encoder blocks bottom first, decoder blocks,
    then the groups that hold any bank."""
    modules = list(language_banks(model))
    sites = {m: module_site(m) for m in modules}
    blocks: Dict[Tuple[str, int], List[str]] = {}
    for m in sorted(modules, key=lambda m: (sites[m].side != "encoder", sites[m].block)):
        blocks.setdefault((sites[m].side, sites[m].block), []).append(m)
    units = [Unit(sites[ms[0]].label, ENCODER_BLOCK if side == "encoder" else DECODER_BLOCK, tuple(ms))
             for (side, _), ms in blocks.items()]
    groups = {"encoder": [m for m in modules if sites[m].side == "encoder"],
              "decoder": [m for m in modules if sites[m].side == "decoder"],
              "attention": [m for m in modules if sites[m].part == "attention"],
              "mlp": [m for m in modules if sites[m].part == "mlp"],
              "all": modules}
    return units + [Unit(name, GROUP, tuple(ms)) for name, ms in groups.items() if ms]


@contextlib.contextmanager
def switched_off(model: torch.nn.Module, unit: Unit) -> Iterator[None]:
    """`unit`'s language banks add nothing inside the block (their B factors zeroed, restored after)."""
    held = {m: model.get_submodule(m) for m in unit.modules}
    saved = {m: bank.lora_B.detach().clone() for m, bank in held.items()}
    try:
        with torch.no_grad():
            for bank in held.values():
                bank.lora_B.zero_()
        yield
    finally:
        with torch.no_grad():
            for m, bank in held.items():
                bank.lora_B.copy_(saved[m])


def _target(loaded, utt: Utterance) -> Tuple[List[int], int]:
    """`utt`'s training target and how many of its first tokens are prompt (after sos, which ESPnet adds)."""
    target = loaded.family.training_targets(loaded.tokenizer, utt.text, utt.lang)["text"]
    return target, len(loaded.family.prompt(loaded.tokenizer, utt.lang)) - 1


def _score_batch(loaded, encoded, batch: Sequence[Utterance]) -> List[Score]:
    """Teacher-forced scores of `batch` on its encoder output, through the decoder in its current routing."""
    model = loaded.asr_model
    device = encoded.features.device
    targets, prompts = zip(*(_target(loaded, u) for u in batch))
    ys_pad = pad_list([torch.tensor(t) for t in targets], model.ignore_id).to(device)
    ys_in, ys_out = add_sos_eos(ys_pad, model.sos, model.eos, model.ignore_id)
    ys_in_lens = torch.tensor([len(t) + 1 for t in targets], device=device)
    logits, _ = model.decoder(encoded.features, encoded.lengths, ys_in, ys_in_lens)
    logp = torch.log_softmax(logits.float(), dim=-1)
    position = torch.arange(ys_out.size(1), device=device)
    scored = (ys_out != model.ignore_id) & (position[None, :] >= torch.tensor(prompts, device=device)[:, None])
    gold = ys_out.clamp_min(0)
    nll = -logp.gather(-1, gold[..., None]).squeeze(-1)
    wrong = logp.argmax(-1) != gold
    return [Score(float(nll[i][scored[i]].mean()), int(wrong[i][scored[i]].sum()), int(scored[i].sum()))
            for i in range(len(batch))]


@torch.no_grad()
def teacher_forced_scores(loaded, utterances: Sequence[Utterance], units: Sequence[Unit], batch_size: int = 8,
                          pad_to_30s: bool = False) -> Tuple[Dict[Optional[str], Dict[str, Score]], Dict[str, float]]:
    """Per unit name (None: every adapter on) and utterance id, its teacher-forced Score with oracle routing
    and the unit switched off; and the seconds each took (key "baseline" for None). A unit with no encoder
    module reuses the batch's encoder output. The banks' routing is restored afterwards."""
    model, family = loaded.asr_model, loaded.family
    device = next(model.parameters()).device
    order = sorted(utterances, key=lambda u: -u.duration)  # little padding (the forward masks it anyway)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    scores: Dict[Optional[str], Dict[str, Score]] = {None: {}, **{unit.name: {} for unit in units}}
    seconds = {"baseline": 0.0, **{unit.name: 0.0 for unit in units}}
    progress = tqdm(total=len(batches) * (1 + len(units)), desc="layer importance", unit="pass")
    with evaluating(model), progress:
        for batch in batches:
            speech, lengths = pad_batch([utterance_audio(u) for u in batch])
            speech, lengths = speech.to(device), lengths.to(device)
            weights = one_hot_weights(model, [u.lang for u in batch])
            with routing(model, weights):
                start = time.perf_counter()
                encoded = family.encode(model, speech, lengths, pad_to_30s)
                scores[None].update(zip((u.utt_id for u in batch), _score_batch(loaded, encoded, batch)))
                seconds["baseline"] += time.perf_counter() - start
                progress.update()
                for unit in units:
                    start = time.perf_counter()
                    with switched_off(model, unit):
                        in_encoder = any(module_site(m).side == "encoder" for m in unit.modules)
                        unit_encoded = family.encode(model, speech, lengths, pad_to_30s) if in_encoder else encoded
                        scores[unit.name].update(zip((u.utt_id for u in batch), _score_batch(loaded, unit_encoded, batch)))
                    seconds[unit.name] += time.perf_counter() - start
                    progress.update()
    return scores, seconds


@torch.no_grad()
def decoded_hypotheses(loaded, utterances: Sequence[Utterance], units: Sequence[Unit], config: SearchConfig,
                       batch_size: int = 8, pad_to_30s: bool = False) -> Dict[Optional[str], Dict[str, str]]:
    """Per unit name (None: every adapter on) and utterance id, its transcript decoded with `config`, its
    language forced (oracle routing) and the unit switched off. Each batch holds one language, so its adapter
    is merged for the search (stage 5 sorts by language too, but lets a batch straddle two)."""
    backend = make_backend(loaded, pad_to_30s)
    order = sorted(utterances, key=lambda u: (u.lang, -u.duration))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches = [[u for u in b if u.lang == lang] for b in batches for lang in dict.fromkeys(u.lang for u in b)]
    audio = {u.utt_id: utterance_audio(u) for u in utterances}
    hyps: Dict[Optional[str], Dict[str, str]] = {None: {}, **{unit.name: {} for unit in units}}
    with evaluating(loaded.asr_model), tqdm(total=len(batches) * (1 + len(units)), desc="decoding", unit="batch") as bar:
        for unit in [None, *units]:
            with switched_off(loaded.asr_model, unit) if unit else contextlib.nullcontext():
                for batch in batches:
                    out = transcribe_batch(backend, [audio[u.utt_id] for u in batch], [u.lang for u in batch], config)
                    hyps[unit.name if unit else None].update((u.utt_id, h.text) for u, h in zip(batch, out))
                    bar.update()
    return hyps


def _cer(utterances: Sequence[Utterance], hyps: Mapping[str, str]) -> float:
    """CER in percent of `hyps` against the utterances' transcripts (scoring's normaliser and counts)."""
    return char_error_counts([u.text for u in utterances], [hyps[u.utt_id] for u in utterances]).rate


def _bank_update_norms(model: torch.nn.Module) -> Dict[str, Dict[str, float]]:
    """language -> module -> ||delta W||_F of the loaded language banks (weights.update_norms's numbers,
    read from the model instead of the adapter files)."""
    norms: Dict[str, Dict[str, float]] = {lang: {} for lang in adapter_names(model)}
    for module, bank in language_banks(model).items():
        for k, lang in enumerate(bank.names):
            norms[lang][module] = factored_svd(bank.lora_A[k].detach(), bank.lora_B[k].detach(), bank.scaling).norm
    return norms


def _spearman(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    """Spearman's rho; None where it is undefined (fewer than 2 units, or a constant side)."""
    from scipy.stats import spearmanr

    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    rho = float(spearmanr(x, y).statistic)
    return None if math.isnan(rho) else rho


def _summary(scores: Mapping[str, Score], utt_ids: Sequence[str]) -> Dict[str, float]:
    """A language's mean per-utterance loss and its token error rate (errors over all its scored tokens)."""
    return {"loss": float(np.mean([scores[u].loss for u in utt_ids])),
            "token_error": sum(scores[u].errors for u in utt_ids) / sum(scores[u].tokens for u in utt_ids),
            "tokens": sum(scores[u].tokens for u in utt_ids)}


def _probe_utterances(loaded, probe_dir: Path) -> List[Utterance]:
    """The probe dir's utterances in a language with an adapter whose target fits the decoder; the others
    are left out, and said (training leaves over-long targets out too)."""
    adapters = adapter_names(loaded.asr_model)
    limit = loaded.family.max_target_length(loaded.asr_model)
    kept, left = [], []
    for utt in read_data_dir(probe_dir):
        fits = utt.lang in adapters and (limit is None or len(_target(loaded, utt)[0]) <= limit)
        (kept if fits else left).append(utt)
    if left:
        log.warning("%s: %d utterance(s) left out (no adapter for their language, or a target longer than the "
                    "decoder's): %s", probe_dir, len(left), ", ".join(u.utt_id for u in left[:5]))
    if not kept:
        raise ProbeSetError(f"{probe_dir} holds no utterance in an adapter's language ({', '.join(adapters)}); make "
                            "the probe subset from a dev set of those languages (analysis.subsets.probe_subset)")
    return kept


def layer_importance(loaded, probe_dir: Path, batch_size: int = 8, pad_to_30s: bool = False,
                     search: Optional[SearchConfig] = None) -> Dict:
    """The layer-importance study on `probe_dir` (module docstring) for `loaded`, a registry model with its
    bank loaded (espnet_ext.bin.decode.load_adapters); `pad_to_30s`: the input the adapters were trained on
    (bin.decode.input_window of their configs); `search`: also decode with each unit off (None: teacher-
    forced only). A JSON-ready dict."""
    start = time.perf_counter()
    probe_dir = Path(probe_dir)
    model = loaded.asr_model
    utterances = _probe_utterances(loaded, probe_dir)
    units = importance_units(model)
    scores, seconds = teacher_forced_scores(loaded, utterances, units, batch_size, pad_to_30s)
    languages = [lang for lang in LANGUAGES if any(u.lang == lang for u in utterances)]  # the table's order
    by_lang = {lang: [u.utt_id for u in utterances if u.lang == lang] for lang in languages}
    baseline = {lang: _summary(scores[None], ids) for lang, ids in by_lang.items()}
    switched = {unit.name: {lang: _summary(scores[unit.name], ids) for lang, ids in by_lang.items()} for unit in units}
    change = {key: {lang: {unit.name: switched[unit.name][lang][key] - baseline[lang][key] for unit in units}
                    for lang in languages} for key in ("loss", "token_error")}
    norms = _bank_update_norms(model)
    proxy = {lang: {unit.name: sum(norms[lang][m] for m in unit.modules) for unit in units} for lang in languages}
    blocks = [unit.name for unit in units if unit.kind != GROUP]
    decoded = {}
    if search is not None:
        hyps = decoded_hypotheses(loaded, utterances, units, search, batch_size, pad_to_30s)
        of = {lang: [u for u in utterances if u.lang == lang] for lang in languages}
        cer_baseline = {lang: _cer(of[lang], hyps[None]) for lang in languages}
        cer_change = {lang: {unit.name: _cer(of[lang], hyps[unit.name]) - cer_baseline[lang] for unit in units}
                      for lang in languages}
        decoded = {"search": {"beam_size": search.beam_size, "max_tokens": search.max_tokens},
                   "cer_baseline": cer_baseline, "cer_change": cer_change,
                   "spearman_loss_cer": {lang: _spearman([change["loss"][lang][u] for u in blocks],
                                                         [cer_change[lang][u] for u in blocks]) for lang in languages}}
    return {
        "probe_dir": str(probe_dir),
        "model": loaded.name,
        "pad_to_30s": pad_to_30s,
        "utterances": {lang: len(ids) for lang, ids in by_lang.items()},
        "languages": languages,
        "units": [unit.name for unit in units],
        "unit_kind": {unit.name: unit.kind for unit in units},
        "unit_modules": {unit.name: len(unit.modules) for unit in units},
        "baseline": baseline,
        "loss_change": change["loss"],
        "token_error_change": change["token_error"],
        "proxy": proxy,
        "spearman": {lang: _spearman([proxy[lang][u] for u in blocks], [change["loss"][lang][u] for u in blocks])
                     for lang in languages},
        **decoded,
        "seconds": {"total": round(time.perf_counter() - start, 2),
                    "per_unit": {name: round(s, 2) for name, s in seconds.items()}},
    }


METRICS = {  # what plot_importance can draw: the result's key -> (colour bar label, title, cell format)
    "loss_change": ("loss change (nats/token)", "teacher-forced loss change", "{:+.3f}"),
    "cer_change": ("CER change (points)", "decoded CER change", "{:+.1f}"),
}


def plot_importance(result: Mapping, stem: Path, metric: str = "loss_change") -> List[Path]:
    """Heatmap: units (rows, network order) x languages, the `metric` (METRICS) when switched off, annotated."""
    from espnet_ext.analysis.plotting import pyplot, save_figure

    label, title, cell = METRICS[metric]
    plt = pyplot()
    units, langs = result["units"], result["languages"]
    values = np.array([[result[metric][lang][unit] for lang in langs] for unit in units])
    fig, ax = plt.subplots(figsize=(2.2 + 1.1 * len(langs), 1.6 + 0.32 * len(units)))
    limit = max(float(np.abs(values).max()), 1e-9)
    image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    for i in range(len(units)):
        for j in range(len(langs)):
            ax.text(j, i, cell.format(values[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if abs(values[i, j]) > 0.6 * limit else "black")
    groups = [i for i, unit in enumerate(units) if result["unit_kind"][unit] == GROUP]
    if groups and groups[0] > 0:
        ax.axhline(groups[0] - 0.5, color="black", linewidth=1)
    ax.set_xticks(range(len(langs)), langs)
    ax.set_yticks(range(len(units)), units, fontsize=8)
    ax.set_xlabel("language (its own adapter, oracle routing)")
    ax.set_ylabel("adapters switched off (blocks, then groups)")
    fig.colorbar(image, ax=ax, fraction=0.05, label=label)
    n = sum(result["utterances"].values())
    ax.set_title(f"Layer importance: {title}\nwhen switched off ({n} probe utterances)", fontsize=9)
    return save_figure(fig, stem)


def plot_proxy(result: Mapping, stem: Path) -> List[Path]:
    """Scatter per language over the block units: the proxy (sum of ||delta W||_F) against the measured
    loss change, Spearman's rho in the legend."""
    from espnet_ext.analysis.plotting import language_color, pyplot, save_figure

    plt = pyplot()
    blocks = [unit for unit in result["units"] if result["unit_kind"][unit] != GROUP]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for lang in result["languages"]:
        rho = result["spearman"][lang]
        ax.scatter([result["proxy"][lang][u] for u in blocks], [result["loss_change"][lang][u] for u in blocks],
                   s=18, color=language_color(lang), label=f"{lang} (rho = {'n/a' if rho is None else f'{rho:.2f}'})")
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.set_xlabel("proxy: sum of ||delta W||_F over the block's modules")
    ax.set_ylabel("loss change when switched off (nats/token)")
    ax.set_title("Weight-norm proxy vs measured layer importance\n(one point per block, Spearman's rho)", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, stem)
