"""The error a policy raises for bad input; its message says what was expected."""

from __future__ import annotations

from lbva.errors import UserError


class PolicyError(UserError, ValueError):
    """Bad input to a policy (wrong observation, call order), with what was expected."""
