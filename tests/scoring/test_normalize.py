"""The Indic-safe normaliser: marks stay, punctuation goes, Italian elision splits after the apostrophe."""
import unicodedata

import pytest

from espnet_ext.scoring.normalize import normalize_text


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("नमस्ते।", "नमस्ते"),  # virama and matra kept, danda removed
        ("मैं ठीक हूँ॥ धन्यवाद", "मैं ठीक हूँ धन्यवाद"),  # anusvara, candrabindu; double danda separates words
        ("ਸਤ ਸ੍ਰੀ ਅਕਾਲ, ਜੀ!", "ਸਤ ਸ੍ਰੀ ਅਕਾਲ ਜੀ"),  # Gurmukhi virama and vowel signs
        ("నమస్కారం, మీరు ఎలా ఉన్నారు?", "నమస్కారం మీరు ఎలా ఉన్నారు"),  # Telugu virama, anusvara, vowel signs
        ("Buongiorno, Mondo!  Sì…", "buongiorno mondo sì"),
        ("L’Acqua dell'anno e un'amica", "l' acqua dell' anno e un' amica"),
        ("'ciao' e un po' di più", "ciao e un po di più"),  # quotes and word-final apostrophes are punctuation
        ("anglo-americano (2024) 50%", "anglo americano 2024 50"),
        ("\u0915\u094d\u200d\u0937", "\u0915\u094d\u0937"),  # zero-width joiner deleted inside the word
        ("  \t\n ", ""),
    ],
)
def test_normalize(raw, expected):
    assert normalize_text(raw) == expected


def test_marks_survive_where_whisper_basic_normaliser_drops_them():
    text = "हिन्दी ਪੰਜਾਬੀ తెలుగు"
    kept = [ch for ch in normalize_text(text) if unicodedata.category(ch).startswith("M")]
    assert kept == [ch for ch in text if unicodedata.category(ch).startswith("M")]
    assert len(kept) == 9  # ि ् ी, ੰ ਾ ੀ, ె ు ు


def test_nukta_spellings_and_decomposed_accents_compare_equal():
    assert normalize_text("\u0958\u0932\u092e") == normalize_text("\u0915\u093c\u0932\u092e")  # क़लम
    assert normalize_text("\u0a59") == normalize_text("\u0a16\u0a3c")  # ਖ਼
    assert normalize_text("citta\u0300") == "città"  # NFC composes a + combining grave


def test_brahmic_scripts_fold_onto_devanagari_and_other_text_is_kept():
    from espnet_ext.scoring.normalize import fold_brahmic

    assert fold_brahmic("ਕਮਲ") == "कमल"  # Gurmukhi ka ma la
    assert fold_brahmic("కమల") == "कमल"  # Telugu ka ma la
    assert fold_brahmic("कमल ciao 42") == "कमल ciao 42"
