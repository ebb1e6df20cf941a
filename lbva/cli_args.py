"""Checks the ``lbva`` verbs share for their arguments, each failing with a :class:`~lbva.errors.CLIError` that names
the flag, the value and what to do, before any work starts.

Imports nothing heavy (the standard library and :mod:`lbva.errors`), so verbs call these at the top of a handler.
"""

from __future__ import annotations

import os
from pathlib import Path

from lbva.errors import CLIError

__all__ = ["at_least", "input_file", "output_dir", "output_file"]


def at_least(value: int | float | None, flag: str, low: int | float) -> None:
    """``value`` (when given) must be >= ``low``."""
    if value is not None and not value >= low:
        raise CLIError(f"{flag} {value} is not allowed; it must be at least {low}")


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(".")


def output_dir(path: str | os.PathLike, flag: str) -> Path:
    """A folder that is (or can be made) writable: not an existing file, and every existing parent a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CLIError(f"{flag} {path} is a file, not a folder; pass a folder path (it is created when missing)")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise CLIError(f"{flag} {path} cannot be created: {base} is a file, not a folder; pass another folder path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise CLIError(f"{flag} {path}: the folder {base} is not writable for this user; pass a folder you can write to")
    return path


def output_file(path: str | os.PathLike, flag: str) -> Path:
    """A file to write whose folder already exists (nothing is created above it) and is writable."""
    path = Path(path)
    if path.is_dir():
        raise CLIError(f"{flag} {path} is a folder; pass a file path such as {path / 'results.json'}")
    parent = path.parent
    if not parent.is_dir():
        raise CLIError(f"{flag} {path}: the folder {parent} does not exist; create it first or pass another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"{flag} {path}: the folder {parent} is not writable for this user; pass another path")
    return path


def input_file(path: str | os.PathLike, flag: str) -> Path:
    """An existing, readable file."""
    path = Path(path)
    if not path.exists():
        raise CLIError(f"{flag} {path} does not exist; check the path")
    if not path.is_file():
        raise CLIError(f"{flag} {path} is not a file; pass the path of a file")
    return path
