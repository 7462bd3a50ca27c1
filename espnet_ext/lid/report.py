"""Figures of a LID head a person reads at a glance: the confusion matrix and the reliability diagram."""
from pathlib import Path
from typing import Sequence

import numpy as np

from espnet_ext.analysis.plotting import pyplot
from espnet_ext.fileio import atomic_open


def confusion_png(confusion: Sequence[Sequence[int]], languages: Sequence[str], path: Path, title: str) -> None:
    """Rows = true language, columns = predicted, each cell its count and its share of the row."""
    plt = pyplot()
    counts = np.asarray(confusion)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(languages) + 1.5, 1.2 * len(languages) + 1))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(languages)):
        for j in range(len(languages)):
            ax.text(j, i, f"{counts[i, j]}\n{100 * shares[i, j]:.0f}%", ha="center", va="center",
                    color="white" if shares[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(len(languages)), languages)
    ax.set_yticks(range(len(languages)), languages)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def reliability_png(posteriors: np.ndarray, labels: np.ndarray, path: Path, title: str, bins: int = 10) -> None:
    """Accuracy against confidence (top posterior) in equal-width bins; the diagonal is perfect calibration."""
    plt = pyplot()
    confidence, correct = posteriors.max(1), posteriors.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    used = [b for b in range(bins) if (which == b).any()]
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.bar([edges[b] + 0.05 for b in used], [correct[which == b].mean() for b in used], width=0.09,
           color="tab:blue", alpha=0.8, label="accuracy in bin")
    for b in used:
        ax.text(edges[b] + 0.05, 0.02, str(int((which == b).sum())), ha="center", fontsize=7, color="white")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence (top posterior); n per bin at the bottom")
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
