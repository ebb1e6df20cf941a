"""Euler sampling over σ with partial video denoising and classifier-free guidance.

Axis legend: B batch, C latent channels, Fh history latent frames, K frames of the chunk being
generated, H, W latent height/width, N actions per latent frame, A action dim.

One loop, :func:`integrate`, takes a chunk from noise along a σ grid; :func:`denoise_video` (σ = 1 down to
``video_stop_sigma``, partial denoising) and :func:`denoise_actions` (σ = 1 to 0, unused channels kept at 0)
set it up. The caller supplies only the velocity (:data:`Velocity`): :func:`sample_chunk` gets it from the
model's teacher-forcing forward (``LingBotVA.forward``) over the whole sequence — the history in the clean
copy, the chunk being generated in the noisy copy, the chunk-causal mask keeping the noisy chunk from seeing
anything it must not — and the streaming policy (``lbva.inference``) from its KV cache. Video chunk c is
integrated first, then action chunk c conditioned on that partially denoised video (passed as clean video
with its σ).
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Callable

import torch

from lbva.objectives.flow_matching import inverse_shift, shift_sigma


@dataclass(frozen=True)
class SamplerConfig:
    """What the sampler reads of a config, gathered in one place. No defaults of its own: the recipe's
    ``inference`` and ``objective`` sections are the one source (build it with :meth:`from_config`)."""

    video_steps: int
    action_steps: int
    video_stop_sigma: float
    video_cfg: float
    action_cfg: float
    video_shift: float
    action_shift: float

    @classmethod
    def from_config(cls, cfg) -> "SamplerConfig":
        """From an LbvaConfig: steps, stop σ and CFG from ``inference``, shifts from ``objective``."""
        i, o = cfg.inference, cfg.objective
        return cls(video_steps=i.video_steps, action_steps=i.action_steps, video_stop_sigma=i.video_stop_sigma,
                   video_cfg=i.video_cfg, action_cfg=i.action_cfg, video_shift=o.video_shift,
                   action_shift=o.action_shift)


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


Velocity = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``velocity(x, sigma, text) -> u``: the model's velocity for the chunk being denoised.

``x`` is the chunk (B, ...), ``sigma`` (B, K) the σ of each of its latent frames (0 for fixed frames), ``text``
(R·B, Lt, Dt) as :func:`guided` passes it; the answer has R·B rows (repeat ``x`` and ``sigma`` R times)."""


def integrate(x: torch.Tensor, sigmas: torch.Tensor, velocity: Velocity, text: torch.Tensor,
              null_text: torch.Tensor | None, scale: float, *, frame_dim: int, fixed: int = 0,
              mask: torch.Tensor | None = None, always_batch: bool = False) -> torch.Tensor:
    """Euler steps of ``x`` along ``sigmas`` (from :func:`euler_sigmas`) with guidance ``scale``.

    The latent frames of ``x`` lie along ``frame_dim``; its first ``fixed`` frames stay as they are (σ = 0, a
    zero step). ``mask`` (broadcast against ``x``) multiplies every step's result: unused action channels stay 0.
    """
    B, K = x.shape[0], x.shape[frame_dim]
    frame_view = [B if d == 0 else K if d == frame_dim else 1 for d in range(x.ndim)]

    def frame_sigmas(s: float) -> torch.Tensor:
        sig = torch.full((B, K), s, device=x.device)
        sig[:, :fixed] = 0.0
        return sig

    sig = frame_sigmas(float(sigmas[0]))
    for s_next in sigmas[1:].tolist():
        nxt = frame_sigmas(s_next)
        u = guided(lambda t, x=x, sig=sig: velocity(x, sig, t), text, null_text, scale, always_batch)
        x = x + (nxt - sig).view(frame_view) * u
        if mask is not None:
            x = x * mask
        sig = nxt
    return x


def denoise_video(noise: torch.Tensor, velocity: Velocity, config: SamplerConfig, text: torch.Tensor,
                  null_text: torch.Tensor | None = None, fixed: torch.Tensor | None = None,
                  always_batch: bool = False) -> torch.Tensor:
    """Video chunk (B, C, K, H, W) from noise at σ = 1 to ``config.video_stop_sigma`` (partial denoising).

    ``fixed`` (B, C, k, H, W): real frames that replace the first k frames and stay at σ = 0."""
    x = noise
    k = 0 if fixed is None else fixed.shape[2]
    if k:
        x = noise.clone()
        x[:, :, :k] = fixed
    sig = euler_sigmas(config.video_steps, config.video_shift, config.video_stop_sigma)
    return integrate(x, sig, velocity, text, null_text, config.video_cfg, frame_dim=2, fixed=k,
                     always_batch=always_batch)


def denoise_actions(noise: torch.Tensor, velocity: Velocity, config: SamplerConfig, text: torch.Tensor,
                    null_text: torch.Tensor | None = None, used: torch.Tensor | None = None, zero_frames: int = 0,
                    always_batch: bool = False) -> torch.Tensor:
    """Action chunk (B, K, N, A) from noise at σ = 1 to 0.

    ``used`` (A,) float: 0 for unused channels, which stay exactly 0; the first ``zero_frames`` latent frames
    hold zero actions (chunk 0's conditioning frame)."""
    x = noise if used is None else noise * used
    if zero_frames:
        x = x.clone()
        x[:, :zero_frames] = 0.0
    sig = euler_sigmas(config.action_steps, config.action_shift, 0.0)
    return integrate(x, sig, velocity, text, null_text, config.action_cfg, frame_dim=1, fixed=zero_frames,
                     mask=used, always_batch=always_batch)


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
    *,
    config: SamplerConfig,
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
    zeros_hist = torch.zeros(B, Fh, device=dev)
    clean_actions = torch.cat([history_actions * used, torch.zeros(B, K, N, A, device=dev)], dim=1)  # (B, F, N, A)

    # video chunk: σ from 1 to stop; the chunk's clean slots are empty, history slots of the noisy copy ignored
    clean_video = torch.cat([history_video, torch.zeros(B, C, K, H, W, device=dev)], dim=2)  # (B, C, F, H, W)

    def video_velocity(x, sigma, t):
        r = t.shape[0] // B
        out = model(noisy_video=repeat_rows(torch.cat([history_video, x], dim=2), r),
                    video_sigma=repeat_rows(torch.cat([zeros_hist, sigma], dim=1), r), noisy_actions=None,
                    action_sigma=None, text=t, clean_video=repeat_rows(clean_video, r), clean_video_sigma=None,
                    clean_actions=repeat_rows(clean_actions, r), chunk_size=K)
        return out.video[:, :, Fh:]

    noise = torch.randn(B, C, K, H, W, generator=generator, device=dev)
    xv = denoise_video(noise, video_velocity, config, text, null_text, always_batch=always_batch_cfg)

    # action chunk: σ from 1 to 0, seeing the partially denoised video at its σ
    seen_video = torch.cat([history_video, xv], dim=2)
    seen_sigma = torch.cat([zeros_hist, torch.full((B, K), config.video_stop_sigma, device=dev)], dim=1)  # (B, F)
    zero_actions = torch.zeros(B, Fh, N, A, device=dev)

    def action_velocity(x, sigma, t):
        r = t.shape[0] // B
        out = model(noisy_video=None, video_sigma=None,
                    noisy_actions=repeat_rows(torch.cat([zero_actions, x], dim=1), r),
                    action_sigma=repeat_rows(torch.cat([zeros_hist, sigma], dim=1), r), text=t,
                    clean_video=repeat_rows(seen_video, r), clean_video_sigma=repeat_rows(seen_sigma, r),
                    clean_actions=repeat_rows(clean_actions, r), chunk_size=K)
        return out.actions[:, Fh:]

    noise = torch.randn(B, K, N, A, generator=generator, device=dev)
    xa = denoise_actions(noise, action_velocity, config, text, null_text, used, always_batch=always_batch_cfg)
    return xv, xa
