"""Inference section: denoising steps, partial denoising, CFG, async mode, attention window."""

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
    window: str = choice("released", "released", "chunks",
                         doc="what history a query sees and the KV cache keeps: 'released' = keys within window_size "
                             "frame ids (video chunk c at 2c, actions at 2c+1), the cache holding (window_size+1)//2 "
                             "chunks and evicting the oldest tokens first, as the release's attn_window = "
                             "window_size+1 does; 'chunks' = the last window_size whole chunks")
    window_size: int = bounded(29, 1, None, doc="released: largest frame-id distance (29 = the release's attn_window "
                                                "30; 71 = its RoboTwin 72); chunks: whole chunks")
    video_context: str = choice("full", "full", "none", doc="none: blank every observed frame (an ablation baseline)")
    seed: int = 0
