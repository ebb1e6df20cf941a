"""LeRobot ``lingbot_va`` policy folders in and out of lbva; this module opens one as an lbva policy.

:func:`load_lerobot_policy` reads a folder into a :class:`~lbva.inference.bundle.PolicyBundle` (``load_policy``
calls it for a folder :func:`is_lerobot_folder` recognises). The rest, one concern a module:

* :mod:`lbva.interop.lerobot_folder` reads a folder's files (config, weights, statistics) and checks them;
* :mod:`lbva.interop.lerobot_stats` maps native action dims to unified slots and converts q01/q99 through that map;
* :mod:`lbva.interop.lerobot_config` finds the embodiment a LeRobot config describes and maps configs both ways;
* :mod:`lbva.interop.lerobot_export` writes a folder from an lbva policy folder or a ``shared`` model checkpoint.

Every setting that has no lbva equivalent is an error naming it (import) or, on export, an error unless
``approximate`` accepts the nearest LeRobot setting (logged). ``docs/lerobot.md`` lists what maps to what.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from lbva.interop.lerobot_config import find_embodiment, lerobot_to_lbva_config
from lbva.interop.lerobot_folder import (
    CONFIG_NAME,
    LEROBOT_TYPE,
    WEIGHTS_NAME,
    LeRobotFolder,
    LeRobotFolderError,
    read_lerobot_folder,
)
from lbva.interop.lerobot_stats import stats_to_slots

logger = logging.getLogger(__name__)


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


def lerobot_model(folder: LeRobotFolder, model_cfg=None):
    """The folder's transformer as an lbva ``shared`` LingBotVA (weights checked key by key); ``model_cfg`` (the
    bundle's ``model`` section) supplies the run-time settings (attention kernel, compile)."""
    from lbva.models.checkpoints import CheckpointError, arch_from_released_config, load_state_checked
    from lbva.models.lingbot_va import LingBotVA

    cfg = folder.config
    arch = arch_from_released_config({k: cfg[k] for k in (
        "patch_size", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "action_dim",
        "text_dim", "freq_dim", "ffn_dim", "num_layers", "cross_attn_norm", "eps")})
    model = LingBotVA(arch, config=model_cfg)
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
    model = lerobot_model(folder, config.model).to(device).eval()
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
