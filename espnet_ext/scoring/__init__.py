"""espnet_ext.scoring: text normalisation, WER/CER (sclite and jiwer), and the decode dir's result.txt."""
from espnet_ext.errors import UserError


class ScoringError(UserError, RuntimeError):
    """An input problem the user can fix (the message names the file and the fix); CLIs print it plainly."""
