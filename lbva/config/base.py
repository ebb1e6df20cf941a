"""Helpers shared by every config section: the error a bad value raises, choices and ranges declared on fields.

A section is a plain dataclass. A field that only takes some values declares them with
``choice(default, *allowed)``; a numeric field with bounds uses ``bounded(default, lo, hi)``, where ``hi`` may be the
name of another field of the section (a limit with a default that the user can raise).
OmegaConf ignores field metadata, so these stay plain dataclasses; the loader reads the metadata
after the merge and reports violations with the full key path.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lbva.errors import UserError


class ConfigError(UserError, ValueError):
    """A recipe or override that does not fit the schema."""


def choice(default: Any, *allowed: Any, doc: str = "") -> Any:
    """A field whose value must be one of ``allowed`` (``default`` must be among them)."""
    options = tuple(allowed) if allowed else (default,)
    if default not in options:
        raise ValueError(f"default {default!r} is not among the allowed values {options}")
    return dataclasses.field(default=default, metadata={"choices": options, "doc": doc})


def bounded(default: Any, lo: float | None = None, hi: float | str | None = None, doc: str = "") -> Any:
    """A numeric field constrained to ``lo <= value <= hi`` (either bound may be None). ``hi`` may name a sibling
    field holding the upper bound: a limit the user can raise with its own key (``video_steps <= max_denoising_steps``)."""
    return dataclasses.field(default=default, metadata={"range": (lo, hi), "doc": doc})


def documented(default: Any = dataclasses.MISSING, doc: str = "", factory: Any = None) -> Any:
    """A field with a one-line description shown by ``lbva config show --doc``."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})
