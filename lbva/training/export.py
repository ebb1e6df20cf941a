"""Training ends in a policy folder: the one export path.

``lbva train`` calls :func:`export_policy` when it finishes (``<output_dir>/policy``), ``lbva export policy``
calls :func:`export_checkpoint` on any training checkpoint, and the demo, the fine-tuning example and
``lbva model init --embodiment`` go through :func:`export_policy` as well. A policy folder needs, beside the
weights, the action statistics and the encoders the model was trained with; they come from the run's latent
cache (``data.cache_dir``) and data section. A run on synthetic batches has no cache: its folder gets unit
statistics and freshly initialised embedded encoders, which is only good for smoke tests (a warning says so).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


def cache_dir(cfg) -> Path | None:
    """The run's latent cache: ``data.cache_dir``, else ``DATASET/lbva_cache``; None without a dataset. In a mixture
    (``data.mixture``), the first cache of the run's own embodiment (``embodiment.name``): the exported policy drives
    that robot, with that cache's statistics and encoders."""
    d = cfg.data
    if d.mixture:
        own = [e for e in d.mixture if (e.embodiment or cfg.embodiment.name) == cfg.embodiment.name]
        if not own:
            raise ValueError(f"data.mixture has no cache of embodiment.name={cfg.embodiment.name!r} (its embodiments: "
                             f"{sorted({e.embodiment for e in d.mixture})}); the trained policy drives that embodiment "
                             "and takes its statistics from its cache: add one, or set embodiment.name to one of them")
        return Path(own[0].path)
    if d.cache_dir:
        return Path(d.cache_dir)
    return Path(d.dataset) / "lbva_cache" if d.dataset else None


def uses_cache(cfg) -> bool:
    return not cfg.trainer.synthetic_batches and cache_dir(cfg) is not None


def unit_stats(source: str):
    """q01 = -1, q99 = 1 on every slot: actions pass through normalisation unchanged."""
    from lbva.embodiment import ActionStats

    return ActionStats(q01=-np.ones(30, np.float32), q99=np.ones(30, np.float32), source=source)


def encoders(cfg, cache: Path | None) -> tuple[Any, Any]:
    """The (video, text) encoders of a run: the cache's trained embedded VAE or the Wan2.2 VAE named by path,
    and the embedded text encoder (rebuilt from its seed) or umT5 named by path."""
    from lbva.data.embedded_vae import EmbeddedVAE, EmbeddedVAEConfig
    from lbva.data.encoders import EmbeddedVideoEncoder, build_text_encoder, build_video_encoder

    d = cfg.data
    if d.encoder == "embedded" and not d.vae_path:
        vae_dir = cache / "embedded_vae" if cache is not None else None
        if vae_dir is not None and vae_dir.is_dir():
            video = EmbeddedVideoEncoder(str(vae_dir))
        else:  # synthetic batches: an untrained VAE with the model's latent width
            video = EmbeddedVideoEncoder(EmbeddedVAE(EmbeddedVAEConfig(latent_channels=int(cfg.model.in_channels or 16))))
    else:
        video = build_video_encoder(d)
    return video, build_text_encoder(d)


def widths_from_cache(cfg):
    """``cfg`` with ``model.in_channels`` / ``model.text_dim`` set from the run's encoders (the latent cache's
    channels and text embedding width), so a recipe never has to repeat them."""
    from lbva.data.cache import LatentCache

    if not uses_cache(cfg):
        return cfg
    cache = LatentCache(cache_dir(cfg))
    text_dim = int(cache.empty_text().shape[-1])
    seg = cache.segments[0] if cache.segments else None
    in_channels = int(cache.read_window(seg, 0, 1)["latents"].shape[0]) if seg is not None else cfg.model.in_channels
    return replace(cfg, model=replace(cfg.model, text_dim=text_dim, in_channels=in_channels))


def export_policy(out: str | Path, model: torch.nn.Module, cfg, *, stats=None, video_encoder=None,
                  text_encoder=None, embodiment: str | None = None) -> Path:
    """Write the policy folder ``out`` for ``model`` trained with ``cfg`` (atomically; see
    :func:`lbva.inference.bundle.save_policy`). Statistics and encoders default to the run's cache and data
    section; pass them to override (e.g. unit statistics for a randomly initialised model)."""
    from lbva.data.cache import LatentCache
    from lbva.inference.bundle import save_policy

    cache = cache_dir(cfg) if uses_cache(cfg) else None
    if stats is None:
        if cache is not None:
            stats = LatentCache(cache).stats()
        else:
            logger.warning("this run trained on synthetic batches: %s gets unit action statistics and untrained "
                           "encoders, for smoke tests only", out)
            stats = unit_stats("synthetic batches (unit range)")
    if video_encoder is None or text_encoder is None:
        v, t = encoders(cfg, cache)
        video_encoder = video_encoder if video_encoder is not None else v
        text_encoder = text_encoder if text_encoder is not None else t
    was_training = model.training
    try:
        return save_policy(out, model.eval(), cfg, embodiment or cfg.embodiment.name, stats,
                           video_encoder=video_encoder, text_encoder=text_encoder)
    finally:
        model.train(was_training)


# ------------------------------------------------------------------------------------------- from checkpoints
def model_from_checkpoint(path: str | Path, ema: bool = True):
    """The model (EMA weights when the run kept them and ``ema``) and config of a training ``.ckpt``."""
    from lbva.config import from_dict
    from lbva.models.checkpoints import CheckpointError
    from lbva.models import build_model

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file; give a training checkpoint (OUTPUT_DIR/checkpoints/*.ckpt)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say so instead of a pickle traceback
        raise CheckpointError(f"{path} is not a readable training checkpoint ({type(e).__name__}: {e}); "
                              "pick another file under OUTPUT_DIR/checkpoints") from e
    try:
        cfg = from_dict(ckpt["hyper_parameters"]["config"])
        state = ckpt["state_dict"]
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path} has no lbva run in it (missing {e}); was it written by `lbva train`?") from e
    prefix = "ema.module." if ema and any(k.startswith("ema.module.") for k in state) else "model."
    weights = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    with torch.device("meta"):
        model = build_model(replace(cfg.model, init_from=None))
    from lbva.models.checkpoints import load_state_checked

    load_state_checked(model, weights, str(path), assign=True)
    return model.eval(), cfg, prefix == "ema.module."


def export_checkpoint(path: str | Path, out: str | Path, ema: bool = True) -> Path:
    """``lbva export policy``: a training checkpoint as a policy folder (EMA weights when present)."""
    model, cfg, used_ema = model_from_checkpoint(path, ema)
    logger.info("exporting %s weights of %s", "EMA" if used_ema else "raw", path)
    return export_policy(out, model, cfg)
