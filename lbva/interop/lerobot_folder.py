"""Reading a LeRobot ``lingbot_va`` policy folder: its files, checked, as a :class:`LeRobotFolder`.

A LeRobot 0.6 ``lingbot_va`` folder holds::

    config.json                      "type": "lingbot_va", transformer dims, cameras, inference settings
    model.safetensors                the released-layout transformer under the ``transformer.`` prefix
    policy_preprocessor.json (+ state)   identity steps (images are VAE-encoded inside the policy)
    policy_postprocessor.json (+ state)  QUANTILES unnormaliser: ``action.q01`` / ``action.q99`` of shape (U,)

and names the frozen Wan2.2 VAE / umT5 / tokenizer by ``wan_pretrained_path`` (sub-folders ``vae/``,
``text_encoder/``, ``tokenizer/``). U is the number of used action channels (``used_action_channel_ids``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lbva.inference.bundle import PolicyFolderError

logger = logging.getLogger(__name__)

LEROBOT_TYPE = "lingbot_va"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PREFIX = "transformer."
PRE_NAME = "policy_preprocessor.json"
POST_NAME = "policy_postprocessor.json"
HINT_NAME = "lbva_export.json"  # written by export_lerobot beside LeRobot's files (LeRobot ignores it)


class LeRobotFolderError(PolicyFolderError):
    """A LeRobot ``lingbot_va`` folder (or an lbva source) that cannot be converted, with what and why."""


def lerobot_defaults() -> dict[str, Any]:
    """LeRobot's ``LingBotVAConfig`` field defaults (what LeRobot assumes for a key a config.json lacks)."""
    from lerobot.policies.lingbot_va import LingBotVAConfig

    out = {}
    for f in dataclasses.fields(LingBotVAConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


def _read_json(file: Path, what: str) -> Any:
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise LeRobotFolderError(f"{file} is not valid JSON ({e}); {what}") from e


@dataclass
class LeRobotFolder:
    """The validated contents of a LeRobot lingbot_va folder (weights not yet on a model)."""

    path: Path
    config: dict[str, Any]  # config.json over LeRobot's defaults
    state: dict[str, Any]  # transformer tensors, prefix removed
    q01: np.ndarray  # (U,) native units, in used_action_channel_ids order
    q99: np.ndarray  # (U,)
    hint: dict[str, Any]  # lbva_export.json, if lbva wrote the folder

    @property
    def used_ids(self) -> list[int]:
        return [int(i) for i in self.config["used_action_channel_ids"]]


def read_lerobot_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    file = path / CONFIG_NAME
    if not file.is_file():
        raise LeRobotFolderError(f"{path} has no {CONFIG_NAME}; point at a LeRobot policy folder (save_pretrained output)")
    data = _read_json(file, "the folder is damaged — save the policy again")
    if not isinstance(data, dict) or data.get("type") != LEROBOT_TYPE:
        got = data.get("type") if isinstance(data, dict) else type(data).__name__
        raise LeRobotFolderError(
            f"{file} has type {got!r}, not {LEROBOT_TYPE!r}: only LeRobot's LingBot-VA policy maps onto lbva "
            "(other LeRobot policies are different networks)"
        )
    cfg = lerobot_defaults()
    unknown = sorted(set(data) - set(cfg) - {"type"})
    if unknown:
        logger.warning("%s: keys unknown to LeRobot %s's LingBotVAConfig are ignored: %s", file, _lerobot_version(), unknown)
    cfg.update({k: v for k, v in data.items() if k != "type"})
    return cfg


def _lerobot_version() -> str:
    try:
        from importlib.metadata import version

        return version("lerobot")
    except Exception:  # pragma: no cover - lerobot is a dependency
        return "?"


def read_lerobot_stats(path: Path, n_used: int) -> tuple[np.ndarray, np.ndarray]:
    """q01, q99 (U,) from the postprocessor's QUANTILES unnormaliser state."""
    from safetensors.torch import load_file

    file = path / POST_NAME
    if not file.is_file():
        raise LeRobotFolderError(
            f"{path} has no {POST_NAME}: LeRobot keeps lingbot_va's action q01/q99 there. Save the processors beside "
            "the policy (make_lingbot_va_pre_post_processors(config, dataset_stats) → .save_pretrained(folder))"
        )
    data = _read_json(file, "save the processors again")
    steps = data.get("steps") if isinstance(data, dict) else None
    if not isinstance(steps, list):
        raise LeRobotFolderError(f"{file} has no 'steps' list; it is not a LeRobot processor pipeline")
    step = next((s for s in steps if isinstance(s, dict) and s.get("registry_name") == "unnormalizer_processor"), None)
    if step is None:
        raise LeRobotFolderError(
            f"{file} has no 'unnormalizer_processor' step (steps: {[s.get('registry_name') for s in steps if isinstance(s, dict)]}); "
            "lingbot_va's postprocessor unnormalises actions with q01/q99 — this folder carries no action statistics"
        )
    mode = (step.get("config") or {}).get("norm_map", {}).get("ACTION")
    if mode != "QUANTILES":
        raise LeRobotFolderError(
            f"{file}: the action unnormaliser uses {mode!r}, not 'QUANTILES'; lbva normalises actions with q01/q99 only"
        )
    state_name = step.get("state_file")
    if not state_name or not (path / state_name).is_file():
        raise LeRobotFolderError(
            f"{file}: the unnormaliser's state file {state_name!r} is missing from {path}; it holds action.q01/action.q99"
        )
    state = load_file(str(path / state_name))
    missing = [k for k in ("action.q01", "action.q99") if k not in state]
    if missing:
        raise LeRobotFolderError(
            f"{path / state_name} lacks {missing} (has {sorted(state)}); compute quantile statistics for the dataset "
            "(LeRobot: augment_dataset_quantile_stats.py) and save the processors again"
        )
    q01, q99 = (state[k].float().reshape(-1).numpy() for k in ("action.q01", "action.q99"))
    for name, q in (("action.q01", q01), ("action.q99", q99)):
        if q.shape != (n_used,):
            raise LeRobotFolderError(
                f"{path / state_name}: {name} has shape {tuple(q.shape)} but the config uses {n_used} action channels "
                f"(used_action_channel_ids); statistics and config come from different policies"
            )
        if not np.all(np.isfinite(q)):
            raise LeRobotFolderError(f"{path / state_name}: {name} has non-finite values {q.tolist()}")
    return q01.astype(np.float32), q99.astype(np.float32)


def read_lerobot_weights(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    file = path / WEIGHTS_NAME
    if not file.is_file():
        raise LeRobotFolderError(f"{path} has no {WEIGHTS_NAME} (the transformer weights)")
    state = load_file(str(file))
    other = sorted(k for k in state if not k.startswith(PREFIX))
    if other:
        raise LeRobotFolderError(
            f"{file} holds tensors outside the {PREFIX!r} prefix ({other[:5]}{' …' if len(other) > 5 else ''}); "
            "a lingbot_va policy saves only its transformer"
        )
    return {k[len(PREFIX):]: v for k, v in state.items()}


def read_lerobot_folder(path: str | Path) -> LeRobotFolder:
    """Read and check a LeRobot lingbot_va folder (config, weights, statistics)."""
    path = Path(path)
    if not path.is_dir():
        raise LeRobotFolderError(f"{path} is not a folder")
    cfg = read_lerobot_config(path)
    used = cfg.get("used_action_channel_ids")
    if not isinstance(used, list) or not used or any(not isinstance(i, int) for i in used):
        raise LeRobotFolderError(f"{path / CONFIG_NAME}: used_action_channel_ids must be a non-empty list of ints, got {used!r}")
    if len(set(used)) != len(used) or any(not 0 <= i < int(cfg["action_dim"]) for i in used):
        raise LeRobotFolderError(
            f"{path / CONFIG_NAME}: used_action_channel_ids {used} must be distinct and in 0..{int(cfg['action_dim']) - 1}"
        )
    q01, q99 = read_lerobot_stats(path, len(used))
    state = read_lerobot_weights(path)
    hint_file = path / HINT_NAME
    hint = _read_json(hint_file, "delete it or export again") if hint_file.is_file() else {}
    return LeRobotFolder(path, cfg, state, q01, q99, hint if isinstance(hint, dict) else {})
