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


#: Fonts tried, in order, for each character: matplotlib's own (Latin), then Debian's fonts-noto-core for
#: the Brahmic scripts of the language table, which DejaVu Sans lacks (without them Hindi, Punjabi and
#: Telugu text is drawn as empty boxes). matplotlib places glyphs one by one and does not shape
#: conjuncts, so a conjunct shows as its letters with a virama; every letter is legible.
FONT_FALLBACK = ("DejaVu Sans", "Noto Sans Devanagari", "Noto Sans Gurmukhi", "Noto Sans Telugu")


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display on a server or in CI), with the font fallback of
    FONT_FALLBACK (those of its fonts installed here)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    plt.rcParams["font.family"] = [name for name in FONT_FALLBACK if name in installed] or ["sans-serif"]
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
