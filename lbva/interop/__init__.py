"""Interoperability with other implementations' checkpoint formats (LeRobot's ``lingbot_va`` policy folders).

Names resolve lazily, so the CLI verb (:mod:`lbva.interop.cli`) imports neither torch nor lerobot.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {  # public name -> the module that defines it
    "LeRobotFolderError": "lbva.interop.lerobot_folder",
    "LeRobotPolicyAdapter": "lbva.interop.adapter",
    "export_lerobot": "lbva.interop.lerobot_export",
    "is_lerobot_folder": "lbva.interop.lerobot",
    "lerobot_to_lbva_config": "lbva.interop.lerobot_config",
    "load_lerobot_policy": "lbva.interop.lerobot",
    "read_lerobot_folder": "lbva.interop.lerobot_folder",
}
__all__ = list(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'lbva.interop' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value
