"""RoboTwin 2.0's policy contract (``policy/<name>/deploy_policy.py``), backed by ``lbva serve``.

RoboTwin's ``script/eval_policy.py`` imports the module ``<policy_name>`` (``policy/<policy_name>/__init__.py``)
and calls ``get_model(usr_args)`` once (``usr_args``: ``deploy_policy.yml`` merged with the ``--overrides``),
``reset_model(model)`` before each episode and ``eval(TASK_ENV, model, observation)`` until the episode ends.
``python -m lbva_robotwin install ROBOTWIN_ROOT`` writes such a policy folder that re-exports these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lbva_robotwin import convert as C
from lbva_robotwin.adapter import EMBODIMENT, LbvaRoboTwinPolicy

__all__ = ["encode_obs", "get_model", "eval", "reset_model"]

# deploy_policy.yml keys this adapter reads, with their defaults (RoboTwin's own keys are ignored)
DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 8000,
    "pose_mode": "relative",
    "embodiment": EMBODIMENT,
    "actions_per_frame": None,
    "actions_per_call": None,
    "feedback": True,
    "timeout": 300.0,
    "protocol": None,  # read by ``python -m lbva_robotwin.evaluate`` (the evaluation protocol), not by the adapter
}


def encode_obs(observation: Mapping[str, Any], sizes: Mapping[str, tuple[int, int]] | None = None,
               prompt: str = "") -> dict:
    """A RoboTwin observation in lbva's keys (cameras resized to ``sizes``, default the embodiment's)."""
    return C.to_lbva_observation(observation, C.CAMERA_SIZES if sizes is None else sizes, prompt)


def get_model(usr_args: Mapping[str, Any]) -> LbvaRoboTwinPolicy:
    """Connect to ``lbva serve`` as ``deploy_policy.yml`` says (host, port, pose_mode, ...)."""
    if "instruction_type" in usr_args and usr_args["instruction_type"] is None:
        # RoboTwin's script/eval_policy.py run directly: the protocol never filled it in
        raise ValueError(
            "instruction_type is null: deploy_policy.yml leaves it to the evaluation protocol. Run the evaluation "
            "with policy/<name>/eval.sh (python -m lbva_robotwin.evaluate, protocol lingbot-va or robotwin), or "
            "pass --instruction_type seen|unseen to RoboTwin's script")
    args = {k: v if usr_args.get(k) is None else usr_args[k] for k, v in DEFAULTS.items()}
    return LbvaRoboTwinPolicy(
        args["host"], int(args["port"]), pose_mode=str(args["pose_mode"]), embodiment=str(args["embodiment"]),
        actions_per_frame=args["actions_per_frame"], actions_per_call=args["actions_per_call"],
        feedback=bool(args["feedback"]), timeout=float(args["timeout"]),
    )


def eval(TASK_ENV: Any, model: LbvaRoboTwinPolicy, observation: Mapping[str, Any]) -> None:  # noqa: A001 (RoboTwin's name)
    """Run the next actions of the current chunk in RoboTwin (asks the server for a chunk when none is queued)."""
    model.step(TASK_ENV, observation)


def reset_model(model: LbvaRoboTwinPolicy) -> None:
    """Start a new episode: clears the queue; the server session restarts with the next instruction."""
    model.reset()
