"""espnet_ext.scoring: text normalisation, WER/CER (sclite and jiwer), and the decode dir's result.txt."""


class ScoringError(RuntimeError):
    """An input problem the user can fix (the message names the file and the fix); CLIs print it plainly."""
