"""Weight space: how alike the languages' updates `delta W = (alpha/r) B A` are, and how many directions
each one uses, read from the adapter files alone (no model).

Two similarities per module, for every pair of languages:

- **cosine** of the two updates as vectors (the Frobenius inner product over both norms). Each language's
  `A` starts from its own random draw and LoRA only trains it a little, so two updates share almost no
  directions by construction and the raw cosine sits near 0 whatever the linguistics: it is reported,
  but read against the same-language baseline (two seeds of one language, the `seeds` study).
- **subspace similarity** of the top-k left singular directions (the output directions the update writes
  into): `||U_x[:, :k]^T U_y[:, :k]||_F^2 / k`, in [0, 1], the normalised overlap the LoRA paper
  uses to compare adapters (Hu et al., ICLR 2022, section 7). Two random k-dimensional subspaces of an
  `out`-dimensional space overlap by k/out on average: the chance level printed beside it.

Every update is kept in factored SVD form (QR of the two thin factors, then an r x r SVD), so nothing
of size out x in is ever built: exact, and cheap for the 78 modules x 4 languages of the default bank.
Per update, the singular values give its spectrum, the entropy-based effective rank (Roy & Vetterli,
EUSIPCO 2007: exp of the entropy of the normalised singular values) and the rank holding 90% of its
energy (squared singular values).
"""
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from espnet_ext.languages import LANGUAGES
from espnet_ext.lora.adapter_files import CONFIG_NAME, AdapterWeights, read_adapter_weights
from espnet_ext.lora.inject import SHARED

GROUPS = ("encoder", "decoder", "all")
ENERGY_SHARE = 0.9


@dataclass(frozen=True)
class ModuleSite:
    """Where a module sits: `side` encoder|decoder, `block` its index, `part` attention|mlp (Whisper's and
    ESPnet's module names both spell them out: `encoder.encoders.blocks.3.attn.query`,
    `decoder.decoders.2.feed_forward.w_1`)."""

    side: str
    block: int
    part: str

    @property
    def label(self) -> str:
        return f"{'enc' if self.side == 'encoder' else 'dec'} {self.block + 1}"


def module_site(name: str) -> ModuleSite:
    parts = name.split(".")
    blocks = [int(p) for p in parts if p.isdigit()]
    if parts[0] not in ("encoder", "decoder") or not blocks:
        raise ValueError(f"module {name!r} is not in an encoder or decoder block")
    part = "mlp" if re.search(r"(^|\.)(mlp|feed_forward\w*)(\.|$)", name) else "attention"
    return ModuleSite(parts[0], blocks[0], part)


@dataclass
class Update:
    """One module's `delta W = u diag(s) v^T` (u [out, r], v [in, r] orthonormal columns, s descending)."""

    u: torch.Tensor
    s: torch.Tensor
    v: torch.Tensor

    @property
    def norm(self) -> float:
        return float(self.s.norm())


def factored_svd(a: torch.Tensor, b: torch.Tensor, scaling: float) -> Update:
    """The SVD of `scaling * b @ a` (a [r, in], b [out, r]) from the factors: b = Qb Rb, a^T = Qa Ra, so
    b a = Qb (Rb Ra^T) Qa^T and only the r x r middle is decomposed."""
    qb, rb = torch.linalg.qr(b.double())
    qa, ra = torch.linalg.qr(a.double().T)
    u, s, vh = torch.linalg.svd(rb @ ra.T)
    return Update(qb @ u, s * scaling, qa @ vh.T)


def cosine(x: Update, y: Update) -> float:
    """<delta W_x, delta W_y>_F / (|x| |y|), from the factors: trace(S_x U_x^T U_y S_y V_y^T V_x)."""
    inner = ((x.u.T @ y.u) * y.s[None, :]) @ (y.v.T @ x.v)
    denominator = x.norm * y.norm
    return float(torch.trace(inner * x.s[:, None]) / denominator) if denominator else float("nan")


def subspace_similarity(x: Update, y: Update, k: int) -> float:
    """Overlap of the two updates' top-k output directions, ||U_x[:, :k]^T U_y[:, :k]||_F^2 / k in [0, 1]."""
    return float((x.u[:, :k].T @ y.u[:, :k]).pow(2).sum() / k)


def effective_rank(s: torch.Tensor) -> float:
    """exp(entropy) of the normalised singular values: r for r equal ones, 1 for a single one."""
    p = s.double() / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def energy_rank(s: torch.Tensor, share: float = ENERGY_SHARE) -> int:
    """The fewest directions holding `share` of the update's energy (sum of squared singular values)."""
    energy = torch.cumsum(s.double() ** 2, 0) / (s.double() ** 2).sum()
    return int(torch.searchsorted(energy, torch.tensor(share, dtype=energy.dtype) - 1e-12)) + 1


def updates(adapter: AdapterWeights) -> Dict[str, Update]:
    return {m: factored_svd(a, b, adapter.scaling) for m, (a, b) in adapter.factors.items()}


def read_bank(adapters_dir: Path) -> Dict[str, AdapterWeights]:
    """Every adapter under `<exp>/adapters` (the shared one of layout shared_below included, as "shared")."""
    return {p.parent.name: read_adapter_weights(p.parent) for p in sorted(Path(adapters_dir).glob(f"*/{CONFIG_NAME}"))}


def update_norms(adapters_dir: Path) -> Dict[str, Dict[str, float]]:
    """language -> module -> ||delta W||_F, for the language adapters of a bank (layer importance's proxy)."""
    return {lang: {m: u.norm for m, u in updates(adapter).items()}
            for lang, adapter in read_bank(adapters_dir).items() if lang != SHARED}


def _table_order(lang: str):
    """The language table's order (hi, pa, te, it), unknown codes after it."""
    return (list(LANGUAGES).index(lang) if lang in LANGUAGES else len(LANGUAGES), lang)


def _in_group(module: str, group: str) -> bool:
    return group == "all" or module_site(module).side == group


def _pair_matrix(per_module: Mapping[str, np.ndarray], modules: Sequence[str]) -> List[List[float]]:
    return np.mean([per_module[m] for m in modules], axis=0).round(6).tolist()


def weight_analysis(adapters_dir: Path, top_k: Optional[int] = None) -> Dict:
    """Similarity of every pair of language adapters per module (and its mean over the encoder's, the
    decoder's and all modules), spectra, effective and 90%-energy ranks; a JSON-ready dict.
    `top_k`: directions compared by the subspace similarity (default: half the rank, the directions that
    hold most of a trained update's energy)."""
    bank = read_bank(adapters_dir)
    languages = sorted((lang for lang in bank if lang != SHARED), key=_table_order)
    if not languages:
        raise FileNotFoundError(f"no language adapter under {adapters_dir}")
    first = bank[languages[0]]
    rank, modules = int(first.config["rank"]), list(first.config["modules"])
    k = top_k or max(1, rank // 2)
    ups = {lang: updates(bank[lang]) for lang in languages + [x for x in bank if x == SHARED]}
    n = len(languages)
    per_module = {"cosine": {}, "subspace": {}}
    for m in modules:
        cos, sub = np.eye(n), np.eye(n)
        for i, j in itertools.combinations(range(n), 2):
            x, y = ups[languages[i]][m], ups[languages[j]][m]
            cos[i, j] = cos[j, i] = cosine(x, y)
            sub[i, j] = sub[j, i] = subspace_similarity(x, y, k)
        per_module["cosine"][m], per_module["subspace"][m] = cos, sub
    groups = {g: [m for m in modules if _in_group(m, g)] for g in GROUPS}
    groups = {g: ms for g, ms in groups.items() if ms}
    chance = {g: float(np.mean([k / ups[languages[0]][m].u.shape[0] for m in ms])) for g, ms in groups.items()}
    return {
        "adapters_dir": str(adapters_dir),
        "languages": languages,
        "rank": rank,
        "alpha": float(first.config["alpha"]),
        "top_k": k,
        "modules": modules,
        "sites": {m: module_site(m).__dict__ for m in modules},
        "similarity": {kind: {g: _pair_matrix(per_module[kind], ms) for g, ms in groups.items()}
                       for kind in per_module},
        "subspace_chance": chance,
        "per_module": {kind: {m: mat.round(6).tolist() for m, mat in mats.items()} for kind, mats in per_module.items()},
        "singular_values": {lang: {m: u.s.float().tolist() for m, u in ups[lang].items()} for lang in ups},
        "effective_rank": {lang: {m: round(effective_rank(u.s), 4) for m, u in ups[lang].items()} for lang in ups},
        "energy_rank": {lang: {m: energy_rank(u.s) for m, u in ups[lang].items()} for lang in ups},
        "norm": {lang: {m: round(u.norm, 6) for m, u in ups[lang].items()} for lang in ups},
    }


def same_language_similarity(adapters_a: Path, adapters_b: Path, top_k: Optional[int] = None) -> Dict[str, Dict[str, float]]:
    """language -> {"cosine", "subspace"}: each language both banks hold, bank a's adapter against bank b's (mean over
    modules). With b the same training under another seed, this is the ceiling the cross-language values are read
    against: how alike two adapters of one language come out when only the random draws differ."""
    bank_a, bank_b = read_bank(adapters_a), read_bank(adapters_b)
    out = {}
    for lang in sorted(set(bank_a) & set(bank_b) - {SHARED}, key=_table_order):
        k = top_k or max(1, int(bank_a[lang].config["rank"]) // 2)
        a, b = updates(bank_a[lang]), updates(bank_b[lang])
        shared = [m for m in a if m in b]
        out[lang] = {"cosine": float(np.mean([cosine(a[m], b[m]) for m in shared])),
                     "subspace": float(np.mean([subspace_similarity(a[m], b[m], k) for m in shared]))}
    return out


def most_similar_pair(result: Mapping, kind: str = "subspace", group: str = "all"):
    """(language x, language y, value) of the most similar pair of different languages."""
    langs, matrix = result["languages"], np.asarray(result["similarity"][kind][group])
    i, j = max(itertools.combinations(range(len(langs)), 2), key=lambda ij: matrix[ij])
    return langs[i], langs[j], float(matrix[i, j])


def mean_rank(result: Mapping, which: str, lang: str) -> float:
    """A language's `which` (effective_rank | energy_rank) averaged over its modules."""
    return float(np.mean(list(result[which][lang].values())))


def plot_similarity(result: Mapping, stem: Path) -> List[Path]:
    """Heatmaps: rows cosine and subspace similarity, columns encoder / decoder / all modules."""
    from espnet_ext.analysis.plotting import pyplot, save_figure

    plt = pyplot()
    langs, groups = result["languages"], list(result["similarity"]["cosine"])
    fig, axes = plt.subplots(2, len(groups), figsize=(3.3 * len(groups), 6.2), squeeze=False)
    for row, kind in enumerate(("cosine", "subspace")):
        for col, group in enumerate(groups):
            ax, matrix = axes[row, col], np.asarray(result["similarity"][kind][group])
            off = matrix[~np.eye(len(langs), dtype=bool)]
            image = ax.imshow(matrix, cmap="viridis", vmin=min(0.0, off.min()), vmax=max(off.max(), 1e-6))
            for i, j in itertools.product(range(len(langs)), repeat=2):
                ax.text(j, i, f"{matrix[i, j]:.3f}", ha="center", va="center", fontsize=8,
                        color="black" if i == j or matrix[i, j] > off.max() * 0.6 else "white")
            ax.set_xticks(range(len(langs)), langs)
            ax.set_yticks(range(len(langs)), langs)
            what = "cosine of delta W" if kind == "cosine" else (
                f"subspace overlap, top {result['top_k']} (chance {result['subspace_chance'][group]:.3f})")
            ax.set_title(f"{group}: {what}", fontsize=8)
            fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(f"Similarity of the language adapters' updates (rank {result['rank']}, mean over modules; "
                 "diagonal = 1)", fontsize=10)
    return save_figure(fig, stem)


def plot_dendrogram(result: Mapping, stem: Path, kind: str = "subspace") -> List[Path]:
    """Average-linkage clustering of the languages on 1 - similarity over all modules."""
    from scipy.cluster.hierarchy import dendrogram, linkage
    from scipy.spatial.distance import squareform

    from espnet_ext.analysis.plotting import pyplot, save_figure

    plt = pyplot()
    distance = 1 - np.asarray(result["similarity"][kind]["all"])
    np.fill_diagonal(distance, 0)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    dendrogram(linkage(squareform(distance.clip(0), checks=False), "average"), labels=result["languages"], ax=ax)
    ax.set_ylabel(f"1 - {kind} similarity")
    ax.set_title(f"Which adapters group together ({kind} similarity, all modules)", fontsize=10)
    return save_figure(fig, stem)


def plot_spectra(result: Mapping, stem: Path) -> List[Path]:
    """Left: mean normalised singular values (s_i / s_1) per language; right: effective rank per block."""
    from espnet_ext.analysis.plotting import language_color, pyplot, save_figure

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    modules = result["modules"]
    for lang, by_module in result["singular_values"].items():
        spectra = np.array([np.asarray(by_module[m]) / max(by_module[m][0], 1e-12) for m in by_module])
        left.plot(range(1, spectra.shape[1] + 1), spectra.mean(0), marker="o", ms=3, color=language_color(lang),
                  label=f"{lang} (eff. rank {mean_rank(result, 'effective_rank', lang):.1f})")
    left.set_xlabel("singular value index")
    left.set_ylabel("s_i / s_1 (mean over modules)")
    left.set_title(f"Spectra of the updates (rank {result['rank']})", fontsize=10)
    left.legend(fontsize=8)
    labels = list(dict.fromkeys(ModuleSite(**result["sites"][m]).label for m in modules))
    for lang in result["languages"]:
        by_label = {}
        for m in modules:
            by_label.setdefault(ModuleSite(**result["sites"][m]).label, []).append(result["effective_rank"][lang][m])
        right.plot(range(len(labels)), [np.mean(by_label[label]) for label in labels], marker="o", ms=3, label=lang,
                   color=language_color(lang))
    right.set_xticks(range(len(labels)), labels, rotation=60, fontsize=7)
    right.set_ylabel("effective rank (mean over the block's modules)")
    right.set_title("Effective rank by block", fontsize=10)
    right.legend(fontsize=8)
    return save_figure(fig, stem)
