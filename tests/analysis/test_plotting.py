"""The figures' fonts: Hindi, Punjabi and Telugu text is drawn with real glyphs, not empty boxes."""
import io
import warnings

import pytest

from espnet_ext.analysis.plotting import FONT_FALLBACK, pyplot


def test_indic_text_has_every_glyph_in_png_and_pdf():
    plt = pyplot()
    missing_fonts = [name for name in FONT_FALLBACK if name not in plt.rcParams["font.family"]]
    if missing_fonts:
        pytest.skip(f"fonts {missing_fonts} are not installed here (apt-get install fonts-noto-core)")
    fig, ax = plt.subplots()
    ax.set_title("ड->र (hi)  ਭ->ਪ (pa)  ణ->న (te)  è (it)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for fmt in ("png", "pdf"):
            fig.savefig(io.BytesIO(), format=fmt)
    plt.close(fig)
    assert not [str(w.message) for w in caught if "missing from font" in str(w.message)]
