"""The one table of languages the project knows; nothing else hard-codes a language.

Each entry says how to recognise the language's script (Unicode ranges), which family it belongs to
(hierarchical routing groups by family), which token Whisper and OWSM use for it, which espeak-ng
voice synthesises the default corpus, and its role in the project:

- `adapter`: a LoRA adapter, a LID class, part of `--lang all` (hi, pa, te, it);
- `lid_only`: a LID class with no adapter, decoded by the base model (English: the plan's `other`
  class, because Hindi-English is the commonest real code-switch and English must not be forced
  through an Indic adapter); never in `--lang all` or in the adapters' training data;
- `out_of_set`: never trained on; test clips only, to measure how often a language close to the set
  (mr, ne vs hi/pa; ta, kn vs te; es vs it; fr) is routed confidently to an adapter.
"""
from dataclasses import dataclass
from typing import Dict, List, Tuple

from espnet_ext.errors import UserError


class UnknownLanguage(UserError, ValueError):
    """A language code the table lacks (in utt2lang, a --lang, a segments file): the message lists the
    known codes and says where to add one."""


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1, also Whisper's language token without brackets
    name: str
    script: str
    script_ranges: Tuple[Tuple[int, int], ...]  # inclusive Unicode code point ranges of the script
    family: str
    owsm_token: str  # OWSM v4 uses ISO 639-3 tokens
    espeak_voice: str
    role: str = "adapter"  # adapter | lid_only | out_of_set (module docstring)

    @property
    def whisper_token(self) -> str:
        return f"<|{self.code}|>"


LATIN = ((0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x024F))

LANGUAGES: Dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("hi", "Hindi", "Devanagari", ((0x0900, 0x097F),), "indo_aryan", "<hin>", "hi"),
        Language("pa", "Punjabi", "Gurmukhi", ((0x0A00, 0x0A7F),), "indo_aryan", "<pan>", "pa"),
        Language("te", "Telugu", "Telugu", ((0x0C00, 0x0C7F),), "dravidian", "<tel>", "te"),
        Language("it", "Italian", "Latin", LATIN, "romance", "<ita>", "it"),
        Language("en", "English", "Latin", LATIN, "germanic", "<eng>", "en", role="lid_only"),
        Language("mr", "Marathi", "Devanagari", ((0x0900, 0x097F),), "indo_aryan", "<mar>", "mr", role="out_of_set"),
        Language("ne", "Nepali", "Devanagari", ((0x0900, 0x097F),), "indo_aryan", "<nep>", "ne", role="out_of_set"),
        Language("ta", "Tamil", "Tamil", ((0x0B80, 0x0BFF),), "dravidian", "<tam>", "ta", role="out_of_set"),
        Language("kn", "Kannada", "Kannada", ((0x0C80, 0x0CFF),), "dravidian", "<kan>", "kn", role="out_of_set"),
        Language("es", "Spanish", "Latin", LATIN, "romance", "<spa>", "es", role="out_of_set"),
        Language("fr", "French", "Latin", LATIN, "romance", "<fra>", "fr", role="out_of_set"),
    )
}
ROLES = ("adapter", "lid_only", "out_of_set")
assert all(lang.role in ROLES for lang in LANGUAGES.values())
ADAPTER_LANGUAGES: List[str] = [code for code, lang in LANGUAGES.items() if lang.role == "adapter"]
LID_ONLY_LANGUAGES: List[str] = [code for code, lang in LANGUAGES.items() if lang.role == "lid_only"]
LID_LANGUAGES: List[str] = [code for code in LANGUAGES if code in ADAPTER_LANGUAGES + LID_ONLY_LANGUAGES]

FAMILIES: Dict[str, List[str]] = {}  # over the LID's classes: what hierarchical routing chooses between
for _code in LID_LANGUAGES:
    FAMILIES.setdefault(LANGUAGES[_code].family, []).append(_code)


def get_language(code: str) -> Language:
    """Return the table entry for `code`, or fail naming the codes that exist."""
    try:
        return LANGUAGES[code]
    except KeyError:
        raise UnknownLanguage(
            f"unknown language code {code!r}; known codes: {', '.join(LANGUAGES)} "
            "(add a row to espnet_ext/languages.py to support another language)"
        ) from None


def adapter_language(code: str, where: str) -> str:
    """`code` if it is an adapter language; else fail naming `where` it was asked for and the choices."""
    language = get_language(code)
    if language.role != "adapter":
        raise ValueError(f"{where}: {code} ({language.name}) is {language.role.replace('_', '-')} in "
                         f"espnet_ext/languages.py, it has no adapter; adapter languages: {', '.join(ADAPTER_LANGUAGES)}")
    return language.code


def script_fraction(text: str, code: str) -> float:
    """Fraction of the letters in `text` that belong to language `code`'s script (1.0 for no letters)."""
    ranges = get_language(code).script_ranges
    letters = [ch for ch in text if ch.isalpha() or 0x0900 <= ord(ch) <= 0x0DFF]
    if not letters:
        return 1.0
    inside = sum(any(lo <= ord(ch) <= hi for lo, hi in ranges) for ch in letters)
    return inside / len(letters)
