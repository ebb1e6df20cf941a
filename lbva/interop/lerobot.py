"""LeRobot ``lingbot_va`` policy folders in and out of lbva.

Axis legend: A = 30 unified action slots, U used channels (``used_action_channel_ids``), D native action dims.

A LeRobot 0.6 ``lingbot_va`` folder holds::

    config.json                      "type": "lingbot_va", transformer dims, cameras, inference settings
    model.safetensors                the released-layout transformer under the ``transformer.`` prefix
    policy_preprocessor.json (+ state)   identity steps (images are VAE-encoded inside the policy)
    policy_postprocessor.json (+ state)  QUANTILES unnormaliser: ``action.q01`` / ``action.q99`` of shape (U,)

and names the frozen Wan2.2 VAE / umT5 / tokenizer by ``wan_pretrained_path`` (sub-folders ``vae/``,
``text_encoder/``, ``tokenizer/``). LeRobot's native action dim i is model slot ``used_action_channel_ids[i]``,
(un)normalised with q01[i]/q99[i]. lbva maps native dims to slots through the embodiment's fields; a folder
maps onto an embodiment whose fields are linear one-dim-per-slot maps (``raw``, ``gripper``, ``quat`` as a
permutation) in the same order. Statistics convert exactly through those affine maps, so both sides compute
the same normalised model inputs and outputs.

:func:`load_lerobot_policy` reads a folder into a :class:`~lbva.inference.bundle.PolicyBundle`;
:func:`export_lerobot` writes one from an lbva policy folder or a ``shared`` model checkpoint. Every setting that
has no lbva equivalent is an error naming it (import) or, on export, an error unless ``approximate`` accepts the
nearest LeRobot setting (logged). ``docs/lerobot.md`` lists what maps to what.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lbva.atomic_io import atomic_folder
from lbva.inference.bundle import PolicyFolderError

logger = logging.getLogger(__name__)

LEROBOT_TYPE = "lingbot_va"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PREFIX = "transformer."
PRE_NAME = "policy_preprocessor.json"
POST_NAME = "policy_postprocessor.json"
HINT_NAME = "lbva_export.json"  # written by export_lerobot beside LeRobot's files (LeRobot ignores it)
ROPE_THETA = 10000.0  # LeRobot's WanRotaryPosEmbed has no theta setting

# attention backends: LeRobot attn_mode <-> lbva model.attn_kernel
_ATTN_IN = {"torch": "sdpa", "flashattn": "flash", "flex": "flex"}
_ATTN_OUT = {"sdpa": "torch", "flash": "flashattn", "flex": "torch"}  # LeRobot's flex is its training mode


class LeRobotFolderError(PolicyFolderError):
    """A LeRobot ``lingbot_va`` folder (or an lbva source) that cannot be converted, with what and why."""


def _problems_error(what: str, problems: list[str], advice: str = "") -> LeRobotFolderError:
    lines = "\n".join(f"  - {p}" for p in problems)
    return LeRobotFolderError(f"{what}:\n{lines}" + (f"\n{advice}" if advice else ""))


# ------------------------------------------------------------------------------------------------ reading
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


def is_lerobot_folder(path: str | Path) -> bool:
    """True for a folder whose config.json says ``"type": "lingbot_va"`` (LeRobot's LingBot-VA policy)."""
    file = Path(path) / CONFIG_NAME
    if not file.is_file():
        return False
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, OSError):
        return False
    return isinstance(data, dict) and data.get("type") == LEROBOT_TYPE


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


# ------------------------------------------------------------------------------------------------ actions
def native_slot_map(spec) -> list[tuple[int, float, float]]:
    """Per native action dim: (slot, a, b) with slot value = a·native + b.

    Raises for fields that are not one-dim-per-slot linear maps (axis-angle / Euler → quaternion), which
    LeRobot's ``used_action_channel_ids`` cannot express."""
    out: list[tuple[int, float, float]] = []
    for f in spec.action_fields:
        if f.kind == "raw":
            out += [(s, 1.0, 0.0) for s in f.slots]
        elif f.kind == "gripper":
            span = f.open - f.closed
            out.append((f.slots[0], 1.0 / span, -f.closed / span))
        elif f.kind == "quat":  # slots hold (x, y, z, w): a permutation of the native order
            x, y, z, w = f.slots
            out += [(s, 1.0, 0.0) for s in ((x, y, z, w) if f.order == "xyzw" else (w, x, y, z))]
        else:
            raise LeRobotFolderError(
                f"embodiment {spec.name!r}: action field {f.name!r} ({f.kind}) turns {f.size} native values into a "
                "quaternion nonlinearly; LeRobot's lingbot_va maps each native action dim to one slot "
                "(used_action_channel_ids), so this embodiment has no LeRobot equivalent"
            )
    return out


def stats_to_slots(spec, q01: np.ndarray, q99: np.ndarray, source: str):
    """LeRobot's native q01/q99 (U,) -> lbva ActionStats (30,) in slot units (order kept, so a gripper whose open
    value is below its closed value gets q01 > q99 on its slot: the normalised values stay LeRobot's)."""
    from lbva.embodiment import ACTION_DIM, ActionStats

    lo, hi = np.zeros(ACTION_DIM, np.float64), np.zeros(ACTION_DIM, np.float64)
    for i, (slot, a, b) in enumerate(native_slot_map(spec)):
        lo[slot], hi[slot] = a * float(q01[i]) + b, a * float(q99[i]) + b
    return ActionStats(lo.astype(np.float32), hi.astype(np.float32), source=source)


def stats_to_native(spec, stats) -> tuple[np.ndarray, np.ndarray]:
    """lbva ActionStats (30,) in slot units -> LeRobot's native q01/q99 (U,), the inverse of :func:`stats_to_slots`."""
    m = native_slot_map(spec)
    q01 = np.array([(float(stats.q01[s]) - b) / a for s, a, b in m], np.float32)
    q99 = np.array([(float(stats.q99[s]) - b) / a for s, a, b in m], np.float32)
    return q01, q99


# ------------------------------------------------------------------------------------------------ embodiment match
def _lerobot_cameras(cfg: dict) -> list[tuple[str, int, int]]:
    keys, h, w = list(cfg["obs_cam_keys"]), int(cfg["height"]), int(cfg["width"])
    if cfg["camera_layout"] == "robotwin_tshape" and len(keys) == 3:
        return [(keys[0], h, w), (keys[1], h // 2, w // 2), (keys[2], h // 2, w // 2)]
    return [(k, h, w) for k in keys]


def embodiment_mismatches(cfg: dict, spec) -> list[str]:
    """Why a LeRobot config does not describe this embodiment (empty when it does)."""
    out = []
    layout = cfg["camera_layout"]
    want_layout = "width_concat" if spec.camera_layout in ("single", "width_concat") else spec.camera_layout
    if layout != want_layout:
        out.append(f"camera_layout {layout!r} vs the embodiment's {spec.camera_layout!r}")
    theirs = _lerobot_cameras(cfg)
    ours = [(c.key, c.height, c.width) for c in spec.cameras]
    if [k for k, _, _ in theirs] != [k for k, _, _ in ours]:
        out.append(f"obs_cam_keys {[k for k, _, _ in theirs]} vs the embodiment's cameras {[k for k, _, _ in ours]} (order matters)")
    elif theirs != ours:
        out.append(f"camera sizes (LeRobot resizes to height×width {cfg['height']}×{cfg['width']}): "
                   f"{[(k, h, w) for k, h, w in theirs]} vs the embodiment's {ours}")
    if int(cfg["frame_chunk_size"]) != spec.chunk_frames:
        out.append(f"frame_chunk_size {cfg['frame_chunk_size']} vs the embodiment's chunk_frames {spec.chunk_frames}")
    if int(cfg["action_per_frame"]) != spec.actions_per_frame:
        out.append(f"action_per_frame {cfg['action_per_frame']} vs the embodiment's actions_per_frame {spec.actions_per_frame}")
    try:
        slots = [s for s, _, _ in native_slot_map(spec)]
    except LeRobotFolderError as e:
        out.append(str(e))
    else:
        used = [int(i) for i in cfg["used_action_channel_ids"]]
        if used != slots:
            out.append(f"used_action_channel_ids {used} vs the slots of the embodiment's native actions in order {slots}")
    return out


def find_embodiment(cfg: dict, name: str | None, where: Path, hint: dict | None = None):
    """The registered embodiment this LeRobot config describes: ``name`` (checked), the export hint, or the only
    registered match."""
    from lbva.embodiment import get_embodiment, list_embodiments

    name = name or (hint or {}).get("embodiment")
    if name:
        spec = get_embodiment(name)
        problems = embodiment_mismatches(cfg, spec)
        if problems:
            raise _problems_error(f"the LeRobot policy at {where} does not fit embodiment {name!r}", problems,
                                  "Pass the embodiment the policy was trained for, or register one that matches.")
        return spec
    found, why = [], {}
    for n in list_embodiments():
        problems = embodiment_mismatches(cfg, get_embodiment(n))
        if problems:
            why[n] = problems[0]
        else:
            found.append(n)
    if len(found) == 1:
        logger.info("%s: LeRobot config matches embodiment %r", where, found[0])
        return get_embodiment(found[0])
    if found:
        raise LeRobotFolderError(
            f"the LeRobot policy at {where} fits several embodiments {found}; pass one (embodiment=..., CLI --embodiment)"
        )
    raise _problems_error(
        f"no registered embodiment fits the LeRobot policy at {where} (cameras {cfg['obs_cam_keys']}, layout "
        f"{cfg['camera_layout']!r}, used_action_channel_ids {cfg['used_action_channel_ids']})",
        [f"{n}: {p}" for n, p in why.items()],
        "Register an embodiment plugin with these cameras and action slots (see examples/add_a_robot).",
    )


# ------------------------------------------------------------------------------------------------ config mapping
def _video_schedule_in(cfg: dict) -> tuple[int, float, str | None]:
    """LeRobot (num_inference_steps n, video_exec_step k) -> lbva (video_steps, video_stop_sigma).

    LeRobot integrates over the grid shift(linspace(1, 0, n+1)) and writes the video of the *last call* into the
    cache: at σ = 0 for k = -1 (or k ≥ n + 1), else at the k-th grid point, after k − 1 Euler steps."""
    from lbva.objectives.flow_matching import shift_sigma

    n, k, shift = int(cfg["num_inference_steps"]), int(cfg["video_exec_step"]), float(cfg["snr_shift"])
    if n < 1:
        return 1, 0.0, f"num_inference_steps {n} must be >= 1"
    if k == -1:
        return n, 0.0, None
    k_eff = len(range(n + 1)[:k])
    if k_eff >= n + 1:
        return n, 0.0, None
    if k_eff <= 1:
        return 1, 0.0, (f"video_exec_step {k} leaves {k_eff} video call(s): LeRobot would cache pure-noise video "
                        "(σ = 1); lbva needs at least one denoising step (video_stop_sigma < 1)")
    return k_eff - 1, float(shift_sigma(1.0 - (k_eff - 1) / n, shift)), None


def _video_schedule_out(steps: int, stop: float, shift: float) -> tuple[int, int, float]:
    """lbva (video_steps, video_stop_sigma) -> LeRobot (num_inference_steps, video_exec_step, the stop σ it gives)."""
    from lbva.objectives.flow_matching import inverse_shift, shift_sigma

    if stop == 0.0:
        return steps, -1, 0.0
    u = float(inverse_shift(stop, shift))
    n = max(steps + 1, round(steps / (1.0 - u)))
    return n, steps + 1, float(shift_sigma(1.0 - steps / n, shift))


def _model_section(cfg: dict, problems: list[str]) -> dict:
    from lbva.config.model import SIZES

    p = [int(x) for x in cfg["patch_size"]]
    if p != [1, 2, 2]:
        problems.append(f"patch_size {p}: lbva's data pipeline and presets use (1, 2, 2)")
    if int(cfg["out_channels"]) != int(cfg["in_channels"]):
        problems.append(f"out_channels {cfg['out_channels']} != in_channels {cfg['in_channels']}: the sampler integrates "
                        "the predicted velocity on the input latents")
    if int(cfg["action_dim"]) != 30:
        problems.append(f"action_dim {cfg['action_dim']}: lbva's unified action space has 30 slots")
    if not cfg.get("cross_attn_norm", True) or float(cfg["eps"]) != 1e-6:
        problems.append(f"cross_attn_norm={cfg.get('cross_attn_norm')} eps={cfg['eps']}: lbva's model config expresses "
                        "only cross_attn_norm=True, eps=1e-6")
    sizes = [s for s, v in SIZES.items() if v.freq_dim == int(cfg["freq_dim"])]
    if not sizes:
        problems.append(f"freq_dim {cfg['freq_dim']}: lbva's size presets have "
                        f"{sorted({v.freq_dim for v in SIZES.values()})}")
    if cfg["attn_mode"] not in _ATTN_IN:
        problems.append(f"attn_mode {cfg['attn_mode']!r}: allowed {sorted(_ATTN_IN)}")
    dims = ("num_layers", "num_attention_heads", "attention_head_dim", "ffn_dim", "in_channels", "text_dim")
    size = next((s for s in sizes if all(getattr(SIZES[s], d) == int(cfg[d]) for d in dims)), sizes[0] if sizes else "tiny")
    return {"size": size, "layout": "shared", "attn_kernel": _ATTN_IN.get(cfg["attn_mode"], "sdpa"), "action_dim": 30,
            **{d: int(cfg[d]) for d in dims}}


def lerobot_to_lbva_config(cfg: dict, spec, wan_root: Path | None, where: Path):
    """An :class:`~lbva.config.LbvaConfig` carrying a LeRobot config's model, encoders and inference settings."""
    from lbva.config import from_dict
    from lbva.models.attention import AttentionWindow

    problems: list[str] = []
    model = _model_section(cfg, problems)
    if int(cfg["n_obs_steps"]) != 1:
        problems.append(f"n_obs_steps {cfg['n_obs_steps']}: lingbot_va conditions on one observation")
    if cfg.get("image_hflip"):
        problems.append("image_hflip=True: lbva has no image flip; flip the camera in the env (or its processor) instead")
    video_steps, stop, why = _video_schedule_in(cfg)
    if why:
        problems.append(why)
    if int(cfg["action_num_inference_steps"]) < 1:
        problems.append(f"action_num_inference_steps {cfg['action_num_inference_steps']} must be >= 1")
    if int(cfg["attn_window"]) < 2:
        problems.append(f"attn_window {cfg['attn_window']}: LeRobot's cache then holds no chunk (it needs >= 2)")
    if cfg["dtype"] not in ("float32", "bfloat16", "float16"):
        problems.append(f"dtype {cfg['dtype']!r}: allowed 'float32', 'bfloat16', 'float16'")
    if problems:
        raise _problems_error(f"the LeRobot policy at {where} has settings lbva cannot reproduce", problems)
    data: dict[str, Any] = {
        "encoder": "wan2.2", "text_encoder": "umt5", "text_max_length": int(cfg["max_sequence_length"]),
        "encoder_dtype": cfg["dtype"], "tile_space": "latents", "patch_size": 2,
    }
    if wan_root is not None:
        data.update(vae_path=str(wan_root / "vae"), text_encoder_path=str(wan_root / "text_encoder"),
                    tokenizer_path=str(wan_root / "tokenizer"))
    snr = float(cfg["snr_shift"])
    betas = list(cfg.get("optimizer_betas", (0.9, 0.95)))
    tree = {
        "model": model,
        "data": data,
        "inference": {
            "mode": "sync", "video_steps": video_steps, "video_stop_sigma": stop,
            "action_steps": int(cfg["action_num_inference_steps"]),
            # LeRobot applies guidance only for scales > 1 (else the conditional prediction alone)
            "video_cfg": float(cfg["guidance_scale"]) if float(cfg["guidance_scale"]) > 1 else 1.0,
            "action_cfg": float(cfg["action_guidance_scale"]) if float(cfg["action_guidance_scale"]) > 1 else 1.0,
            # LeRobot's cache (attn_window // 2 chunks, the oldest tokens evicted first, as the release's) shows a
            # query exactly the keys within 2·(attn_window // 2) − 1 frame ids: the released window of that size
            "window": "released", "window_size": AttentionWindow.from_attn_window(int(cfg["attn_window"])).size,
        },
        "objective": {
            "video_shift": snr, "action_shift": float(cfg["action_snr_shift"]), "loss_weighting": "bsmntw",
            "text_dropout": 0.0,  # LeRobot's training loss never drops the prompt
            # the released training choices LeRobot keeps: per batch with p = 0.5 the history re-noised to σ from the
            # lower half of the shifted grid; the action loss averaged per frame; a window of 4-64 frame ids
            "noisy_history_prob": 0.5, "noisy_history": "released", "action_loss": "per_frame",
            "window": "released", "window_sizes": [4, 64],
        },
        "trainer": {
            "lr": float(cfg["optimizer_lr"]), "betas": [float(b) for b in betas],
            "weight_decay": float(cfg["optimizer_weight_decay"]), "grad_clip": float(cfg["optimizer_grad_clip_norm"]),
            "warmup_steps": int(cfg["scheduler_warmup_steps"]), "schedule": "constant",
        },
        "embodiment": {"name": spec.name},
    }
    return from_dict(tree)


def _resolve_wan_root(value: str, folder: Path) -> Path:
    p = Path(value).expanduser()
    candidates = [p] if p.is_absolute() else [folder / p, Path.cwd() / p]
    if not any(c.is_dir() for c in candidates) and value.count("/") == 1:  # a hub repo id: only the local cache
        try:
            from huggingface_hub import snapshot_download

            candidates.append(Path(snapshot_download(value, local_files_only=True)))
        except Exception:  # not cached (or not a repo id): nothing is downloaded
            pass
    for c in candidates:
        if (c / "vae" / "config.json").is_file():
            missing = [s for s in ("text_encoder/config.json", "tokenizer") if not (c / s).exists()]
            if missing:
                raise LeRobotFolderError(f"wan_pretrained_path {c} has vae/ but lacks {missing}")
            return c.resolve()
    raise LeRobotFolderError(
        f"wan_pretrained_path {value!r} is not a local folder with vae/, text_encoder/ and tokenizer/ (looked in "
        f"{[str(c) for c in candidates]} and the Hugging Face cache). lbva downloads nothing: fetch it beforehand (e.g. `hf download "
        "robbyant/lingbot-va-base --local-dir DIR`) and pass wan_path=DIR (CLI: --wan-path DIR)"
    )


def lerobot_model(folder: LeRobotFolder):
    """The folder's transformer as an lbva ``shared`` LingBotVA (weights checked key by key)."""
    from lbva.models.checkpoints import CheckpointError, arch_from_released_config, load_state_checked
    from lbva.models.lingbot_va import LingBotVA

    cfg = folder.config
    arch = arch_from_released_config({k: cfg[k] for k in (
        "patch_size", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "action_dim",
        "text_dim", "freq_dim", "ffn_dim", "num_layers", "cross_attn_norm", "eps")})
    model = LingBotVA(arch)
    try:
        load_state_checked(model, folder.state, str(folder.path / WEIGHTS_NAME))
    except CheckpointError as e:
        raise LeRobotFolderError(f"{e} (model built from {folder.path / CONFIG_NAME})") from e
    return model


def load_lerobot_policy(path: str | Path, embodiment: str | None = None, device: str = "cpu",
                        wan_path: str | Path | None = None, encoders: bool = True):
    """A LeRobot lingbot_va folder as a :class:`~lbva.inference.bundle.PolicyBundle`.

    ``embodiment``: the registered embodiment to run it on (default: the one lbva exported it for, else the only
    registered embodiment whose cameras, chunking and action slots fit). ``wan_path`` overrides the folder's
    ``wan_pretrained_path`` (a local folder with ``vae/``, ``text_encoder/``, ``tokenizer/``). ``encoders=False``
    skips building the Wan VAE and umT5 (the bundle's encoders are then None)."""
    from lbva.data.encoders import UMT5TextEncoder, WanVideoEncoder
    from lbva.inference.bundle import PolicyBundle

    folder = read_lerobot_folder(path)
    cfg = folder.config
    spec = find_embodiment(cfg, embodiment, folder.path, folder.hint)
    stats = stats_to_slots(spec, folder.q01, folder.q99, source=f"LeRobot lingbot_va policy {folder.path}")
    wan_root = _resolve_wan_root(str(wan_path or cfg["wan_pretrained_path"]), folder.path) if encoders else None
    config = lerobot_to_lbva_config(cfg, spec, wan_root, folder.path)
    model = lerobot_model(folder).to(device).eval()
    video_encoder = text_encoder = None
    if encoders:
        d = config.data
        video_encoder = WanVideoEncoder(d.vae_path, device=device, dtype=d.encoder_dtype)
        text_encoder = UMT5TextEncoder(d.text_encoder_path, d.tokenizer_path, d.text_max_length, device, d.encoder_dtype)
        if video_encoder.latent_channels != model.in_channels or text_encoder.dim != model.text_dim:
            raise LeRobotFolderError(
                f"the encoders under {wan_root} do not fit the transformer: VAE z_dim {video_encoder.latent_channels} "
                f"vs in_channels {model.in_channels}, umT5 d_model {text_encoder.dim} vs text_dim {model.text_dim}"
            )
    logger.info("loaded LeRobot lingbot_va policy %s for embodiment %s", folder.path, spec.name)
    return PolicyBundle(model, config, spec.name, stats, video_encoder, text_encoder, {})


# ------------------------------------------------------------------------------------------------ export
def _read_lbva_source(source: Path):
    """(model, config | None, embodiment | None, stats | None) from an lbva policy folder or a model checkpoint."""
    from lbva.config import from_dict
    from lbva.embodiment import ActionStats
    from lbva.inference.bundle import MARKER, is_policy_folder
    from lbva.models.checkpoints import load_released_transformer
    from lbva.models.lingbot_va import LingBotVA

    if is_policy_folder(source):
        meta = _read_json(source / MARKER, "the policy folder is damaged")
        model = LingBotVA.from_pretrained(source / "transformer")
        stats = ActionStats(**meta["stats"]) if meta.get("stats") else None
        return model, from_dict(meta["config"]), meta.get("embodiment"), stats
    if is_lerobot_folder(source):
        raise LeRobotFolderError(f"{source} is already a LeRobot lingbot_va folder; nothing to export")
    cfg_file = source / CONFIG_NAME
    if not cfg_file.is_file():
        raise LeRobotFolderError(
            f"{source} is neither an lbva policy folder (lbva_policy.json) nor a model checkpoint (config.json); "
            "pass the folder `lbva train` wrote (<output_dir>/policy) or a model.save_pretrained folder"
        )
    meta = _read_json(cfg_file, "the checkpoint is damaged")
    model = LingBotVA.from_pretrained(source) if "lbva_arch" in meta else load_released_transformer(source)
    return model, None, None, None


def _wan_root_out(config, wan_path) -> str:
    if wan_path is not None:
        return str(wan_path)
    d = config.data if config is not None else None
    if d is None:
        return lerobot_defaults()["wan_pretrained_path"]
    if d.encoder != "wan2.2" or not d.vae_path:
        raise LeRobotFolderError(
            f"this policy encodes video with lbva's {d.encoder!r} encoder; LeRobot's lingbot_va runs only the Wan2.2 "
            "VAE and umT5 found under wan_pretrained_path. Pass wan_path (CLI --wan-path) to write one anyway"
        )
    root = Path(d.vae_path).parent
    te = Path(d.text_encoder_path) if d.text_encoder_path else None
    tok = Path(d.tokenizer_path) if d.tokenizer_path else te
    if Path(d.vae_path).name != "vae" or te != root / "text_encoder" or tok not in (root / "tokenizer", te):
        raise LeRobotFolderError(
            f"LeRobot finds the frozen models as <wan_pretrained_path>/vae, /text_encoder, /tokenizer; this policy uses "
            f"vae {d.vae_path}, text encoder {d.text_encoder_path}, tokenizer {d.tokenizer_path}. Pass wan_path "
            "(CLI --wan-path) pointing at such a folder"
        )
    return str(root)


def lbva_to_lerobot_fields(model, config, spec, wan_root: str, dtype: str,
                           approximate: bool) -> tuple[dict, list[str]]:
    """LingBotVAConfig field values for an lbva model + config on an embodiment, and the approximations taken."""
    from lbva.config import LbvaConfig
    from lbva.models.checkpoints import released_config

    config = config if config is not None else LbvaConfig()
    exact, approx = [], []

    setting = approx.append  # a setting LeRobot has a nearest value for

    rel = released_config(model)  # raises for mot with the reason
    if model.arch.rope_theta != ROPE_THETA:
        exact.append(f"rope_theta {model.arch.rope_theta}: LeRobot's rotary embedding uses {ROPE_THETA}")
    slots = [s for s, _, _ in native_slot_map(spec)]
    cams = spec.cameras
    if spec.camera_layout == "robotwin_tshape":
        height, width = cams[0].height, cams[0].width
    else:
        height, width = cams[0].height, cams[0].width
        if any((c.height, c.width) != (height, width) for c in cams):
            exact.append(f"cameras {[(c.key, c.height, c.width) for c in cams]}: LeRobot resizes every view to one "
                         "height×width")
    if config.data.tile_space != "latents":
        logger.info("LeRobot encodes each camera and tiles latents; this policy tiles pixels (data.tile_space=pixels)")
    inf, obj = config.inference, config.objective
    n, k, stop = _video_schedule_out(inf.video_steps, inf.video_stop_sigma, obj.video_shift)
    if abs(stop - inf.video_stop_sigma) > 1e-6:
        setting(f"video_stop_sigma {inf.video_stop_sigma} with {inf.video_steps} steps (shift "
                f"{obj.video_shift}) is not on LeRobot's grid; nearest: num_inference_steps={n}, video_exec_step={k} "
                f"(stop σ {stop:.4f})")
    cfgs = {}
    for name, v in (("guidance_scale", inf.video_cfg), ("action_guidance_scale", inf.action_cfg)):
        cfgs[name] = v
        if v < 1.0:
            setting(f"{name} {v}: LeRobot applies guidance only above 1 (nearest: 1.0)")
            cfgs[name] = 1.0
    size = int(inf.window_size)
    if inf.window == "released" and size % 2:
        attn_window = size + 1  # exact: LeRobot's cache shows the keys within 2·(attn_window // 2) − 1 = size ids
    elif inf.window == "released":
        attn_window = size + 2
        setting(f"inference.window=released window_size={size}: LeRobot's cache shows an odd number of frame ids "
                f"(2·(attn_window // 2) − 1); nearest: attn_window {attn_window} ({size + 1} ids)")
    else:
        attn_window = 2 * size
        setting(f"inference.window=chunks window_size={size}: LeRobot's cache counts video and action chunks apart; "
                f"nearest: attn_window {attn_window} ({size} chunks, and also the actions of the chunk before them)")
    if inf.video_context != "full":
        setting(f"inference.video_context={inf.video_context!r}: LeRobot always feeds the camera")
    if exact or (approx and not approximate):
        raise _problems_error("cannot export to a LeRobot lingbot_va folder", exact + approx,
                              "Settings marked as having a nearest value export with approximate=True (CLI --approximate)."
                              if approx and not exact else "")
    for msg in approx:
        logger.warning("export approximation: %s", msg)
    fields = {
        **{k_: (tuple(v) if k_ == "patch_size" else v) for k_, v in rel.items()},
        "rope_max_seq_len": 1024,
        "attn_mode": _ATTN_OUT.get(config.model.attn_kernel, "torch"),
        "wan_pretrained_path": wan_root,
        "dtype": dtype,
        "obs_cam_keys": [c.key for c in cams],
        "camera_layout": "robotwin_tshape" if spec.camera_layout == "robotwin_tshape" else "width_concat",
        "height": height, "width": width,
        "action_per_frame": spec.actions_per_frame, "frame_chunk_size": spec.chunk_frames,
        "attn_window": attn_window,
        "num_inference_steps": n, "video_exec_step": k,
        "action_num_inference_steps": inf.action_steps,
        "guidance_scale": float(cfgs["guidance_scale"]), "action_guidance_scale": float(cfgs["action_guidance_scale"]),
        "snr_shift": float(obj.video_shift), "action_snr_shift": float(obj.action_shift),
        "max_sequence_length": int(config.data.text_max_length),
        "used_action_channel_ids": slots,
        "optimizer_lr": float(config.trainer.lr), "optimizer_betas": tuple(float(b) for b in config.trainer.betas),
        "optimizer_weight_decay": float(config.trainer.weight_decay),
        "optimizer_grad_clip_norm": float(config.trainer.grad_clip),
        "scheduler_warmup_steps": int(config.trainer.warmup_steps),
    }
    return fields, approx


def export_lerobot(source: str | Path, out: str | Path, *, embodiment: str | None = None, stats=None,
                   wan_path: str | Path | None = None, dtype: str = "float32", approximate: bool = False,
                   progress: bool = True) -> Path:
    """Write a LeRobot lingbot_va folder at ``out`` from an lbva policy folder or a ``shared`` model checkpoint.

    ``embodiment`` / ``stats`` (ActionStats or a q01/q99 JSON path) are needed for a bare model checkpoint (a policy
    folder carries both; the embodiment's own statistics are the fallback). The folder is written to a temporary
    sibling and renamed into place, so an interrupted export never leaves a half-written folder at ``out``."""
    import torch
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from lbva.embodiment import ActionStats, get_embodiment

    source, out = Path(source), Path(out)
    if dtype not in ("float32", "bfloat16", "float16"):
        raise LeRobotFolderError(f"dtype {dtype!r}: allowed 'float32', 'bfloat16', 'float16'")
    model, config, emb_name, src_stats = _read_lbva_source(source)
    if embodiment is not None and emb_name is not None and embodiment != emb_name:
        raise LeRobotFolderError(f"{source} is a policy for {emb_name!r}, not {embodiment!r}")
    name = embodiment or emb_name
    if name is None:
        raise LeRobotFolderError(f"{source} is a bare model checkpoint: pass the embodiment it runs on (--embodiment)")
    spec = get_embodiment(name)
    if isinstance(stats, (str, Path)):
        stats = ActionStats.load(stats)
    stats = stats or src_stats or spec.stats
    if stats is None:
        raise LeRobotFolderError(
            f"no action statistics for {source}: LeRobot needs q01/q99 in the postprocessor. Pass stats (--stats "
            "q01/q99 JSON) or use a policy folder"
        )
    fields, approx = lbva_to_lerobot_fields(model, config, spec, _wan_root_out(config, wan_path), dtype, approximate)
    q01, q99 = stats_to_native(spec, stats)

    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.lingbot_va import LingBotVAConfig, make_lingbot_va_pre_post_processors

    cams = [(c.key, c.height, c.width) for c in spec.cameras]
    lr_cfg = LingBotVAConfig(
        **fields,
        input_features={k: PolicyFeature(type=FeatureType.VISUAL, shape=(3, h, w)) for k, h, w in cams},
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(len(q01),))},
    )
    with atomic_folder(out, marker=CONFIG_NAME) as tmp:
        logger.info("exporting %s -> %s (LeRobot lingbot_va, embodiment %s)", source, out, name)
        lr_cfg._save_pretrained(tmp)
        written = json.loads((tmp / CONFIG_NAME).read_text())
        written["device"] = None  # LeRobot picks the machine's device when it loads (not the exporting machine's)
        (tmp / CONFIG_NAME).write_text(json.dumps(written, indent=4))
        want = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        state = {}
        items = list(model.state_dict().items())
        for k, v in tqdm(items, desc="weights", unit="tensor", disable=not progress):
            state[PREFIX + k] = v.detach().to("cpu", want).contiguous()
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        pre, post = make_lingbot_va_pre_post_processors(
            lr_cfg, {"action": {"q01": torch.from_numpy(q01), "q99": torch.from_numpy(q99)}})
        pre.save_pretrained(tmp)
        post.save_pretrained(tmp)
        (tmp / HINT_NAME).write_text(json.dumps({
            "format": "lbva-lerobot-export", "version": 1, "embodiment": name, "source": str(source),
            "stats_source": stats.source, "approximations": approx,
        }, indent=2))
    logger.info("wrote %s (%d tensors)", out, len(state))
    return out
