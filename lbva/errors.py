"""The one base class for mistakes a user can fix: :class:`UserError`.

A ``UserError``'s message names the value that was given, what is allowed, and what to do next. ``lbva <verb>``
prints it as one line (``error: ...``, exit code 2) instead of a traceback; the policy server answers one raised by
a policy with a ``bad_request`` error frame instead of an ``internal_error``. Anything else that escapes is a bug and
keeps its traceback.

Each part of lbva subclasses it where it raises (``ConfigError`` in :mod:`lbva.config`, ``CheckpointError`` in
:mod:`lbva.models.checkpoints`, ``PolicyFolderError`` in :mod:`lbva.inference.bundle`, ``DataError`` in
:mod:`lbva.data.errors`, ``UnknownEmbodimentError``/``PluginError`` in :mod:`lbva.embodiment.registry`,
``PolicyError`` in :mod:`lbva.inference.errors`); the command-line verbs raise :class:`CLIError`. This module
imports nothing, so every layer (and the torch-free serving code) can use it.
"""

from __future__ import annotations

__all__ = ["CLIError", "UserError", "one_line"]


class UserError(Exception):
    """Bad input: a wrong name, value, path or file. The message says what was given, what is allowed, what to do."""


class CLIError(UserError):
    """A bad command-line argument (or a combination of them)."""


def one_line(error: BaseException) -> str:
    """The error's message on one line (whitespace, newlines included, collapsed to single spaces)."""
    text = error.args[0] if isinstance(error, KeyError) and len(error.args) == 1 and type(error).__str__ is KeyError.__str__ \
        else str(error)
    return " ".join(str(text).split()) or type(error).__name__
