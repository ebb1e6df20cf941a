"""Inference section: denoising steps, partial denoising, CFG, async mode, cache window."""

from __future__ import annotations

from dataclasses import dataclass

from lbva.config.base import bounded, choice


@dataclass
class InferenceConfig:
    mode: str = choice("sync", "sync", "naive_async", "fdm_async")
    video_steps: int = bounded(3, 1, "max_denoising_steps", doc="Euler steps of the video (to video_stop_sigma)")
    action_steps: int = bounded(10, 1, "max_denoising_steps", doc="Euler steps of the actions")
    max_denoising_steps: int = bounded(
        1000, 1, None, doc="limit on video_steps/action_steps (a chunk costs one forward per step); raise it if you mean it"
    )
    video_stop_sigma: float = bounded(0.4, 0.0, 1.0, doc="stop video denoising at this σ (paper s=0.6)")
    video_cfg: float = bounded(5.0, 0.0, None)
    action_cfg: float = bounded(1.0, 0.0, None)
    window_chunks: int | None = None
    video_context: str = choice("full", "full", "none", doc="none: blank every observed frame (an ablation baseline)")
    seed: int = 0
