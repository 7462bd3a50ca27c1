"""The one table of languages the project knows; nothing else hard-codes a language.

Each entry says how to recognise the language's script (Unicode ranges), which family it belongs to
(hierarchical routing groups by family), which token Whisper and OWSM use for it, and which espeak-ng
voice synthesises the default corpus.
"""
from dataclasses import dataclass
from typing import Dict, List, Tuple


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1, also Whisper's language token without brackets
    name: str
    script: str
    script_ranges: Tuple[Tuple[int, int], ...]  # inclusive Unicode code point ranges of the script
    family: str
    owsm_token: str  # OWSM v4 uses ISO 639-3 tokens
    espeak_voice: str

    @property
    def whisper_token(self) -> str:
        return f"<|{self.code}|>"


LANGUAGES: Dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("hi", "Hindi", "Devanagari", ((0x0900, 0x097F),), "indo_aryan", "<hin>", "hi"),
        Language("pa", "Punjabi", "Gurmukhi", ((0x0A00, 0x0A7F),), "indo_aryan", "<pan>", "pa"),
        Language("te", "Telugu", "Telugu", ((0x0C00, 0x0C7F),), "dravidian", "<tel>", "te"),
        Language(
            "it", "Italian", "Latin", ((0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x024F)), "romance",
            "<ita>", "it",
        ),
    )
}

FAMILIES: Dict[str, List[str]] = {}
for _lang in LANGUAGES.values():
    FAMILIES.setdefault(_lang.family, []).append(_lang.code)


def get_language(code: str) -> Language:
    """Return the table entry for `code`, or fail naming the codes that exist."""
    try:
        return LANGUAGES[code]
    except KeyError:
        raise ValueError(
            f"unknown language code {code!r}; known codes: {', '.join(LANGUAGES)} "
            "(add a row to espnet_ext/languages.py to support another language)"
        ) from None


def script_fraction(text: str, code: str) -> float:
    """Fraction of the letters in `text` that belong to language `code`'s script (1.0 for no letters)."""
    ranges = get_language(code).script_ranges
    letters = [ch for ch in text if ch.isalpha() or 0x0900 <= ord(ch) <= 0x0DFF]
    if not letters:
        return 1.0
    inside = sum(any(lo <= ord(ch) <= hi for lo, hi in ranges) for ch in letters)
    return inside / len(letters)
