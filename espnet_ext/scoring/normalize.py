"""The one text normaliser used for scoring: safe for Indic scripts, explicit about Italian elision.

Whisper's BasicTextNormalizer replaces every Unicode category-M character (combining marks) by a space.
In Devanagari, Gurmukhi and Telugu the vowel signs (matras), viramas, nuktas, anusvara and visarga are
category M, so it turns "नमस्ते" into "नमस त" and scores a different language. This normaliser keeps all
marks and removes only what does not change the words:

- NFC first, so that equal words compare equal byte for byte. This also settles the two spellings of
  nukta letters: the precomposed forms (क़ U+0958, ਖ਼ U+0A59, ...) are Unicode composition exclusions,
  so NFC rewrites them as base letter + nukta, the form most text already uses.
- Lowercase (of our languages only Latin has case).
- Punctuation (Unicode P*: danda ।, double danda ॥, Latin and typographic marks) and symbols (S*)
  become spaces: they are not spoken, and as spaces they still separate the words they stood between.
- Invisible format characters (Cf: zero-width joiner/non-joiner, soft hyphen, BOM) are deleted, not
  spaced: they sit inside words and only change rendering, and models emit them inconsistently.
- Digits are kept as written; numbers are not verbalised.

Italian apostrophes: an apostrophe between two letters marks elision ("l'acqua", "dell'anno",
"un'amica"). Orthographically that is two words, and Italian tokenisers (e.g. the Universal
Dependencies treebanks) split it as "l'" + "acqua". We do the same: the apostrophe stays on the
elided word and a space follows it. Splitting makes a wrong article ("la acqua" for "l'acqua") cost
one substitution, not a substitution plus an insertion, and keeps word counts comparable with
Italian references scored elsewhere; keeping the apostrophe keeps "un'" (feminine) distinct from
"un" (masculine), a real grammatical error. Any other apostrophe ("po'", quotes) is punctuation.
The typographic apostrophes ’ (U+2019) and ʼ (U+02BC) count as the ASCII one, since transcribers
and models use them interchangeably.
"""
import unicodedata

_APOSTROPHE = "'"
_APOSTROPHE_VARIANTS = str.maketrans({"\u2019": _APOSTROPHE, "\u02bc": _APOSTROPHE})


def _is_word_char(ch: str) -> bool:
    """Letters, combining marks (matras, viramas, accents) and digits make up words."""
    return unicodedata.category(ch)[0] in "LMN"


def _map_char(text: str, i: int) -> str:
    """What character `text[i]` becomes in the normalised text (possibly nothing or a space)."""
    ch = text[i]
    if ch == _APOSTROPHE:
        elision = 0 < i < len(text) - 1 and _is_word_char(text[i - 1]) and _is_word_char(text[i + 1])
        return _APOSTROPHE + " " if elision else " "
    if _is_word_char(ch):
        return ch
    if unicodedata.category(ch) == "Cf":
        return ""
    return " "  # punctuation, symbols, whitespace and control characters


def normalize_text(text: str) -> str:
    """Normalise one transcript for scoring (see the module docstring for each rule and its reason)."""
    text = unicodedata.normalize("NFC", text.translate(_APOSTROPHE_VARIANTS).lower())
    return " ".join("".join(_map_char(text, i) for i in range(len(text))).split())


_BRAHMIC = range(0x0900, 0x0E00)  # Devanagari .. Malayalam, 128 code points per script


def fold_brahmic(text: str) -> str:
    """Rewrite every Brahmic letter as its Devanagari twin, to compare what was said across Indic scripts.

    Unicode encodes the ISCII-derived scripts (Devanagari, Bengali, Gurmukhi, Gujarati, Oriya, Tamil,
    Telugu, Kannada, Malayalam) in parallel 128-code-point blocks: the same letter sits at the same offset
    in each. Folding them onto Devanagari lets a Hindi adapter's Devanagari output be scored against a
    Punjabi (Gurmukhi) or Telugu reference by sound rather than by script. It is crude: letters one script
    has and Devanagari lacks (Telugu's short e/o, Gurmukhi's tippi and addak) fold onto code points
    Devanagari leaves unused or uses otherwise, so a folded score is a transliteration-insensitive estimate,
    not a transliteration. Any other character is kept."""
    return "".join(chr(0x0900 + (ord(ch) - 0x0900) % 0x80) if ord(ch) in _BRAHMIC else ch for ch in text)
