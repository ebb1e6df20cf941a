"""JSON that other tools can read: no ``NaN`` / ``Infinity`` literals (Python's json module writes them by
default; strict parsers — browsers, ``jq``, most languages — refuse them). A non-finite number becomes ``null``;
numpy scalars and arrays become plain numbers and lists."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None, numpy values made plain, tuples made lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays (torch tensors too)
    if callable(tolist) and type(obj).__module__.split(".")[0] in ("numpy", "torch"):
        return finite(tolist())
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`finite` ``(obj)``; refuses anything that would still need a non-standard literal."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)
