"""Euler sampling over σ with partial video denoising and classifier-free guidance.

Axis legend: B batch, C latent channels, Fh history latent frames, K frames of the chunk being
generated, H, W latent height/width, N actions per latent frame, A action dim.

Offline, full-sequence sampling through the model's teacher-forcing forward (``LingBotVA.forward``): the
history sits in the clean copy, the chunk being generated in the noisy copy; the chunk-causal mask
keeps the noisy chunk from seeing anything it must not. Video chunk c is integrated from σ = 1 down to
``video_stop_sigma`` (partial denoising), then action chunk c from σ = 1 to 0, conditioned on that
partially denoised video (passed as clean video with its σ). The streaming Policy does the same with a
KV cache.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Callable

import torch

from lbva.objectives.flow_matching import inverse_shift, shift_sigma


@dataclass(frozen=True)
class SamplerConfig:
    video_steps: int = 3
    action_steps: int = 10
    video_stop_sigma: float = 0.4  # paper: integrate video to s = 0.6
    video_cfg: float = 5.0
    action_cfg: float = 1.0
    video_shift: float = 5.0
    action_shift: float = 1.0

    @classmethod
    def from_config(cls, cfg) -> "SamplerConfig":
        """From an LbvaConfig: steps, stop σ and CFG from ``inference``, shifts from ``objective``."""
        i, o = cfg.inference, cfg.objective
        return cls(i.video_steps, i.action_steps, i.video_stop_sigma, i.video_cfg, i.action_cfg,
                   o.video_shift, o.action_shift)


def euler_sigmas(steps: int, shift: float, stop_sigma: float = 0.0, device=None) -> torch.Tensor:
    """(steps+1,) σ from 1 down to ``stop_sigma``: uniform in the unshifted variable, then shifted."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0.0 <= stop_sigma < 1.0:
        raise ValueError(f"stop_sigma must lie in [0, 1), got {stop_sigma}")
    end = inverse_shift(torch.tensor(stop_sigma, dtype=torch.float64), shift)
    grid = torch.linspace(1.0, float(end), steps + 1, dtype=torch.float64)
    sig = shift_sigma(grid, shift)
    sig[0], sig[-1] = 1.0, stop_sigma  # exact end points
    return sig.to(device=device, dtype=torch.float32)


def full_denoise_steps(video_steps: int, stop_sigma: float, shift: float) -> int:
    """Euler steps that integrate video to σ = 0 with the step size ``video_steps`` steps to ``stop_sigma`` use.

    Partial denoising saves exactly these extra steps; comparisons at equal step size use this count."""
    t_stop = float(inverse_shift(float(stop_sigma), shift))
    return max(int(video_steps), math.ceil(video_steps / max(1e-6, 1.0 - t_stop)))


def guided(predict: Callable[[torch.Tensor], torch.Tensor], text: torch.Tensor, null_text: torch.Tensor | None,
           scale: float, always_batch: bool = False) -> torch.Tensor:
    """Classifier-free guidance: uncond + scale·(cond − uncond), cond and uncond in one batched call.

    ``predict(text)`` gets a (R·B, Lt, Dt) text and must repeat its other inputs R times along the batch.
    With scale 1 (and not ``always_batch``) only the conditional prediction is computed.
    """
    if scale == 1.0 and not always_batch:
        return predict(text)
    null = torch.zeros_like(text) if null_text is None else null_text.to(text).expand_as(text)
    both = predict(torch.cat([text, null], dim=0))
    cond, uncond = both.chunk(2, dim=0)
    return uncond + scale * (cond - uncond)


def repeat_rows(x: torch.Tensor | None, r: int) -> torch.Tensor | None:
    """``x`` with its batch rows repeated ``r`` times (the conditional and unconditional halves of guidance);
    ``x`` itself when ``r`` is 1 or ``x`` is None."""
    if x is None or r == 1:
        return x
    return x.repeat(r, *([1] * (x.ndim - 1)))


@torch.no_grad()
def sample_chunk(
    model,
    text: torch.Tensor,  # (B, Lt, Dt)
    chunk_frames: int,
    video_shape: tuple[int, int, int],  # (C, H, W)
    actions_per_frame: int,
    action_dim: int = 30,
    history_video: torch.Tensor | None = None,  # (B, C, Fh, H, W), Fh a multiple of chunk_frames
    history_actions: torch.Tensor | None = None,  # (B, Fh, N, A)
    null_text: torch.Tensor | None = None,  # (Lt, Dt) or (B, Lt, Dt); zeros when None
    used_mask: torch.Tensor | None = None,  # (A,) bool; unused channels are kept at exactly 0
    config: SamplerConfig = SamplerConfig(),
    generator: torch.Generator | None = None,
    always_batch_cfg: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate chunk c after the history: video (B, C, K, H, W) at σ = stop, then actions (B, K, N, A)."""
    B, K, N, A = text.shape[0], chunk_frames, actions_per_frame, action_dim
    C, H, W = video_shape
    dev = text.device
    Fh = 0 if history_video is None else history_video.shape[2]
    if Fh % K:
        raise ValueError(f"history has {Fh} latent frames, not a multiple of the chunk size {K}")
    if history_video is None:
        history_video = torch.zeros(B, C, 0, H, W, device=dev)
    if history_actions is None:
        history_actions = torch.zeros(B, Fh, N, A, device=dev)
    if history_actions.shape[1] != Fh:
        raise ValueError(f"history_actions has {history_actions.shape[1]} frames, history_video has {Fh}")
    used = torch.ones(A, device=dev) if used_mask is None else used_mask.to(dev, torch.float32)
    F = Fh + K
    zeros_hist = torch.zeros(B, Fh, device=dev)
    clean_actions = torch.cat([history_actions * used, torch.zeros(B, K, N, A, device=dev)], dim=1)  # (B, F, N, A)

    # video chunk: σ from 1 to stop
    xv = torch.randn(B, C, K, H, W, generator=generator, device=dev)
    clean_video = torch.cat([history_video, torch.zeros_like(xv)], dim=2)  # (B, C, F, H, W)
    sig_v = euler_sigmas(config.video_steps, config.video_shift, config.video_stop_sigma, dev)
    for s, s_next in zip(sig_v[:-1], sig_v[1:]):
        vs = torch.cat([zeros_hist, torch.full((B, K), float(s), device=dev)], dim=1)  # (B, F)
        noisy = torch.cat([history_video, xv], dim=2)  # history slots are ignored by the mask

        def predict_video(t, noisy=noisy, vs=vs):
            r = t.shape[0] // B
            out = model(noisy_video=repeat_rows(noisy, r), video_sigma=repeat_rows(vs, r), noisy_actions=None, action_sigma=None,
                        text=t, clean_video=repeat_rows(clean_video, r), clean_video_sigma=None,
                        clean_actions=repeat_rows(clean_actions, r), chunk_size=K)
            return out.video[:, :, Fh:]

        u = guided(predict_video, text, null_text, config.video_cfg, always_batch_cfg)
        xv = xv + (s_next - s) * u

    # action chunk: σ from 1 to 0, seeing the partially denoised video at its σ
    clean_video = torch.cat([history_video, xv], dim=2)
    clean_sigma = torch.cat([zeros_hist, torch.full((B, K), config.video_stop_sigma, device=dev)], dim=1)  # (B, F)
    xa = torch.randn(B, K, N, A, generator=generator, device=dev) * used
    sig_a = euler_sigmas(config.action_steps, config.action_shift, 0.0, dev)
    for s, s_next in zip(sig_a[:-1], sig_a[1:]):
        as_ = torch.cat([zeros_hist, torch.full((B, K), float(s), device=dev)], dim=1)  # (B, F)
        noisy_a = torch.cat([torch.zeros(B, Fh, N, A, device=dev), xa], dim=1)

        def predict_actions(t, noisy_a=noisy_a, as_=as_):
            r = t.shape[0] // B
            out = model(noisy_video=None, video_sigma=None, noisy_actions=repeat_rows(noisy_a, r), action_sigma=repeat_rows(as_, r),
                        text=t, clean_video=repeat_rows(clean_video, r), clean_video_sigma=repeat_rows(clean_sigma, r),
                        clean_actions=repeat_rows(clean_actions, r), chunk_size=K)
            return out.actions[:, Fh:]

        u = guided(predict_actions, text, null_text, config.action_cfg, always_batch_cfg)
        xa = (xa + (s_next - s) * u) * used
    return xv, xa
