"""The one base class of user errors.

A `UserError` is a problem with what the user gave (a data dir, an audio file, a model or adapter file,
an option), never a bug: its message names the file and the fix. Every command-line entry point
(`espnet_ext.bin.cli.exits_on_user_error`) prints it as one line and exits 1; any other exception is a
bug and keeps its traceback. The specific errors (DataDirError, AudioError, AdapterFileError, ...) also
keep the built-in base they had (ValueError, FileNotFoundError), so code catching those still works.
"""


class UserError(Exception):
    """Bad input from the user; the message says which file and how to fix it."""
