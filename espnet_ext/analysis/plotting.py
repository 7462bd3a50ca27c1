"""The figures' one style: matplotlib without a display, every figure saved as PNG (for pages) and PDF
(for papers and slides), atomically, with its title and axis units set by the caller."""
import io
from pathlib import Path
from typing import List, Sequence

from espnet_ext.fileio import atomic_write_bytes

FORMATS = ("png", "pdf")
_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


def language_color(lang: str) -> str:
    """One colour per language in every figure (the language table's order; "shared" and "base" grey/black)."""
    from espnet_ext.languages import LANGUAGES

    fixed = {"shared": "tab:gray", "base": "black"}
    if lang in fixed:
        return fixed[lang]
    order = list(LANGUAGES)
    return _PALETTE[order.index(lang) % len(_PALETTE)] if lang in order else "tab:cyan"


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display on a server or in CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, stem: Path, formats: Sequence[str] = FORMATS, dpi: int = 120) -> List[Path]:
    """Write `fig` to `stem`.png and `stem`.pdf (each atomically) and close it; the paths written."""
    stem = Path(stem)
    fig.tight_layout()
    paths = []
    for fmt in formats:
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=dpi)
        path = stem.with_suffix("." + fmt)
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(path)
    pyplot().close(fig)
    return paths
