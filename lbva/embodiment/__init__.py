"""Embodiments: what each robot looks like to the model, found through pluggy plugins.

``get_embodiment(name)`` returns an :class:`EmbodimentSpec` (cameras and their tiling, native ↔ unified
30-slot action/state mapping, control rate, statistics); ``lbva embodiments`` lists what is installed.
Write a plugin with :data:`hookimpl` (see ``examples/add_a_robot``).

Names are resolved lazily, so ``import lbva.embodiment.cli`` (the CLI verb) stays free of numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "lbva.embodiment.hookspecs": ("hookimpl", "hookspec"),
    "lbva.embodiment.registry": (
        "ENTRY_POINT_GROUP", "PLUGINS_ENV", "PluginError", "UnknownEmbodimentError", "embodiment_source",
        "get_embodiment", "get_env_factory", "get_robot_factory", "list_embodiments", "list_envs", "list_robots",
        "reset_registry",
    ),
    "lbva.embodiment.spec": (
        "ACTION_DIM", "CAMERA_LAYOUTS", "LEFT_EEF", "LEFT_GRIPPER", "LEFT_JOINTS", "RIGHT_EEF", "RIGHT_GRIPPER",
        "RIGHT_JOINTS", "ActionStats", "CameraSpec", "EmbodimentSpec", "FieldSpec", "StateAlias", "denormalize",
        "normalize",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)

if TYPE_CHECKING:  # pragma: no cover
    from lbva.embodiment.hookspecs import hookimpl, hookspec  # noqa: F401
    from lbva.embodiment.registry import *  # noqa: F401,F403
    from lbva.embodiment.spec import *  # noqa: F401,F403


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'lbva.embodiment' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
