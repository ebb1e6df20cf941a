"""The network: plain nn.Modules, no Lightning. ``build_model(cfg.model)`` is the one way in.

Names resolve lazily, so importing ``lbva.models.cli`` (the CLI verb) does not load torch and diffusers. The network's
shape, :class:`~lbva.config.model.ArchConfig`, and its named sizes live in the config layer (torch-free).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_FROM_MODEL = ("LingBotVA", "ModelOutput")
_FROM_CONFIG = ("SIZES", "ArchConfig")
__all__ = [*_FROM_MODEL, *_FROM_CONFIG, "build_model"]

if TYPE_CHECKING:  # pragma: no cover
    from lbva.config.model import SIZES, ArchConfig  # noqa: F401
    from lbva.models.lingbot_va import LingBotVA, ModelOutput  # noqa: F401


def build_model(cfg) -> "LingBotVA":
    """A randomly initialised model for a :class:`lbva.config.model.ModelConfig`."""
    from lbva.models.lingbot_va import LingBotVA

    return LingBotVA(cfg.arch(), config=cfg)


def __getattr__(name: str) -> Any:
    if name in _FROM_MODEL or name in _FROM_CONFIG:
        module = "lbva.models.lingbot_va" if name in _FROM_MODEL else "lbva.config.model"
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lbva.models' has no attribute {name!r}")
