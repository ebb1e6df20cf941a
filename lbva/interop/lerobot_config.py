"""LeRobot ``LingBotVAConfig`` settings and lbva's, both ways.

Which registered embodiment a LeRobot config describes (:func:`find_embodiment`), the
:class:`~lbva.config.LbvaConfig` it becomes (:func:`lerobot_to_lbva_config`), and the ``LingBotVAConfig`` fields an
lbva policy exports as (:func:`lbva_to_lerobot_fields`). A setting with no lbva equivalent is an error naming it;
on export, a setting that has a nearest LeRobot value is an error unless ``approximate`` accepts it (logged).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lbva.interop.lerobot_folder import LeRobotFolderError
from lbva.interop.lerobot_stats import native_slot_map

logger = logging.getLogger(__name__)

ROPE_THETA = 10000.0  # LeRobot's WanRotaryPosEmbed has no theta setting

# attention backends: LeRobot attn_mode <-> lbva model.attn_kernel
_ATTN_IN = {"torch": "sdpa", "flashattn": "flash", "flex": "flex"}
_ATTN_OUT = {"sdpa": "torch", "flash": "flashattn", "flex": "torch"}  # LeRobot's flex is its training mode


def _problems_error(what: str, problems: list[str], advice: str = "") -> LeRobotFolderError:
    lines = "\n".join(f"  - {p}" for p in problems)
    return LeRobotFolderError(f"{what}:\n{lines}" + (f"\n{advice}" if advice else ""))


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
