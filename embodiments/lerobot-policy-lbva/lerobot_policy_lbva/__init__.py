"""lbva as a LeRobot policy plugin: ``--policy.type=lbva``.

LeRobot's CLIs (``lerobot-train``, ``-eval``, ``-record``, ``-rollout``) import this package because its
distribution name starts with ``lerobot_policy_``; importing it registers :class:`LBVAConfig`. LeRobot finds the
policy class (``modeling_lbva.LBVAPolicy``) and its processors (``processor_lbva.make_lbva_pre_post_processors``)
by naming convention, so they load only when a policy is built.
"""

from __future__ import annotations

from typing import Any

from lerobot_policy_lbva.configuration_lbva import LBVAConfig

__all__ = ["LBVAConfig", "LBVAPolicy", "export_lbva_policy", "make_lbva_pre_post_processors"]


def __getattr__(name: str) -> Any:
    if name in ("LBVAPolicy", "export_lbva_policy"):
        from lerobot_policy_lbva import modeling_lbva

        return getattr(modeling_lbva, name)
    if name == "make_lbva_pre_post_processors":
        from lerobot_policy_lbva.processor_lbva import make_lbva_pre_post_processors

        return make_lbva_pre_post_processors
    raise AttributeError(f"module 'lerobot_policy_lbva' has no attribute {name!r}")
