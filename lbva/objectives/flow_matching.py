"""Flow-matching conventions, the σ schedule and the timestep loss weighting.

Axis legend: B batch, F latent frames, T grid points.

Internal convention (Wan/diffusers): σ ∈ [0, 1], σ = 1 is pure noise, x_σ = (1 − σ)·x₀ + σ·ε,
timestep = 1000·σ, and the network predicts u = ε − x₀. The paper writes s = 1 − σ and v = −u;
:func:`paper_to_internal` / :func:`internal_to_paper` are the one place that converts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

WEIGHTINGS = ("none", "bsmntw")


def shift_sigma(sigma: torch.Tensor | float, shift: float) -> torch.Tensor | float:
    """σ' = shift·σ / (1 + (shift − 1)·σ): shift > 1 spends more of the grid at high noise."""
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    return shift * sigma / (1 + (shift - 1) * sigma)


def inverse_shift(sigma_shifted: torch.Tensor | float, shift: float) -> torch.Tensor | float:
    """The σ whose shift is ``sigma_shifted`` (inverse of :func:`shift_sigma`)."""
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    return sigma_shifted / (shift - (shift - 1) * sigma_shifted)


def interpolate(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_σ = (1 − σ)·x₀ + σ·ε in ``x0``'s dtype; ``sigma`` must already broadcast against ``x0``.

    σ is drawn in float32; without the cast a bf16 batch (``trainer.precision=bf16-true``) became float32 here and
    met the model's bf16 weights."""
    return ((1 - sigma) * x0 + sigma * noise).to(x0.dtype)


def target_velocity(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The regression target u = ε − x₀ (d x_σ / dσ)."""
    return noise - x0


def paper_to_internal(s: torch.Tensor | float, v: torch.Tensor | None = None):
    """Paper time s (s = 0 noise, s = 1 data) and velocity v → internal (σ, u): σ = 1 − s, u = −v."""
    sigma = 1 - s
    return sigma if v is None else (sigma, -v)


def internal_to_paper(sigma: torch.Tensor | float, u: torch.Tensor | None = None):
    """Internal (σ, u) → paper (s, v); the same map (it is an involution)."""
    return paper_to_internal(sigma, u)


def sample_sigmas(
    shape: tuple[int, ...],
    shift: float,
    generator: torch.Generator | None = None,
    num_train_timesteps: int = 1000,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Per-element training σ: a uniform draw from the T-point grid on (0, 1], then the shift.

    Like the release, the grid is ``linspace(1, 1/T, T)`` indexed uniformly, so σ never reaches 0 exactly.
    """
    idx = torch.randint(0, num_train_timesteps, shape, generator=generator, device=device)
    sigma = 1.0 - idx.to(torch.float32) / num_train_timesteps  # in [1/T, 1]
    return shift_sigma(sigma, shift)


def timestep_weight(sigma: torch.Tensor, kind: str, shift: float, num_train_timesteps: int = 1000) -> torch.Tensor:
    """Loss weight per σ.

    ``none`` — 1 everywhere. ``bsmntw`` — the release's weighting: a Gaussian bump over the timestep
    1000·σ centred at T/2 (width T/2), its grid minimum subtracted, normalised so its mean over the
    shifted training grid is 1; a σ takes the weight of the nearest grid point.
    """
    if kind == "none":
        return torch.ones_like(sigma)
    if kind != "bsmntw":
        raise ValueError(f"unknown loss weighting {kind!r}; allowed: {WEIGHTINGS}")
    grid_sigma = shift_sigma(torch.linspace(1.0, 1.0 / num_train_timesteps, num_train_timesteps, dtype=torch.float64), shift)
    grid_t = grid_sigma * 1000.0  # (T,)
    bump = torch.exp(-2 * ((grid_t - num_train_timesteps / 2) / num_train_timesteps) ** 2)
    bump = bump - bump.min()
    bump = bump * (num_train_timesteps / bump.sum())  # mean 1 over the grid
    t = sigma.detach().to(torch.float64).reshape(-1, 1) * 1000.0  # (N, 1)
    nearest = (grid_t.to(t.device).reshape(1, -1) - t).abs().argmin(dim=1)  # (N,)
    return bump.to(sigma.device)[nearest].reshape(sigma.shape).to(sigma.dtype)


@dataclass(frozen=True)
class FlowMatchingSchedule:
    """Per-stream schedule: the shift and the loss weighting."""

    shift: float = 1.0
    weighting: str = "none"
    num_train_timesteps: int = 1000

    def __post_init__(self):
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown loss weighting {self.weighting!r}; allowed: {WEIGHTINGS}")
        if self.shift <= 0:
            raise ValueError(f"shift must be positive, got {self.shift}")

    def sample(self, shape, generator=None, device=None) -> torch.Tensor:
        return sample_sigmas(tuple(shape), self.shift, generator, self.num_train_timesteps, device)

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        return timestep_weight(sigma, self.weighting, self.shift, self.num_train_timesteps)
