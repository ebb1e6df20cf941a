"""The one Euler loop both samplers use (the offline full-sequence one and the streaming policy), checked with
hand-written velocities against answers worked out by hand."""

from itertools import pairwise

import torch

from lbva.objectives.sampler import SamplerConfig, denoise_actions, denoise_video, euler_sigmas, integrate

CONFIG = SamplerConfig(video_steps=4, action_steps=5, video_stop_sigma=0.4, video_cfg=3.0, action_cfg=1.0,
                       video_shift=5.0, action_shift=1.0)


def _rows(x, t):
    return x.repeat(t.shape[0] // x.shape[0], *([1] * (x.ndim - 1)))


def test_constant_velocity_is_integrated_exactly():
    """x' = c: Euler is exact, x(σ_end) = x(1) + (σ_end − 1)·c whatever the grid."""
    x0 = torch.randn(2, 3, 4, 5, 5)
    c = torch.randn(1, 3, 4, 5, 5)
    sig = euler_sigmas(7, 5.0, 0.4)
    out = integrate(x0, sig, lambda x, s, t: c.expand(t.shape[0], -1, -1, -1, -1), torch.randn(2, 1, 1), None, 1.0,
                    frame_dim=2)
    torch.testing.assert_close(out, x0 + (0.4 - 1.0) * c, rtol=0, atol=1e-6)


def test_guided_constant_velocity_uses_uncond_plus_scale_times_the_difference():
    text, null = torch.ones(1, 1, 1), torch.zeros(1, 1)
    cond, uncond = torch.full((1, 2, 3, 1, 1), 2.0), torch.full((1, 2, 3, 1, 1), -1.0)

    def velocity(x, s, t):
        return torch.where(t.view(-1, 1, 1, 1, 1) > 0, cond, uncond)

    out = denoise_video(torch.zeros(1, 2, 3, 1, 1), velocity, CONFIG, text, null)
    torch.testing.assert_close(out, torch.full_like(out, (0.4 - 1.0) * (-1.0 + 3.0 * (2.0 + 1.0))))


def test_loop_matches_a_naive_euler_reference_and_keeps_fixed_frames():
    """u = −x·(1 + σ): the loop gives what a plain loop over the same σ grid does; fixed frames see σ = 0."""
    torch.manual_seed(0)
    noise, fixed = torch.randn(1, 2, 3, 2, 2), torch.randn(1, 2, 1, 2, 2)
    seen = []

    def velocity(x, sigma, t):
        seen.append(sigma.clone())
        return _rows(-x * (1 + sigma.view(1, 1, 3, 1, 1)), t)

    out = denoise_video(noise, velocity, CONFIG, torch.randn(1, 1, 1), fixed=fixed)

    sig = euler_sigmas(CONFIG.video_steps, CONFIG.video_shift, CONFIG.video_stop_sigma).tolist()
    x = noise.clone()
    x[:, :, :1] = fixed
    for s, s_next in pairwise(sig):
        u = -x * (1 + s)
        x[:, :, 1:] = x[:, :, 1:] + (s_next - s) * u[:, :, 1:]
    torch.testing.assert_close(out, x)
    assert torch.equal(out[:, :, :1], fixed)
    assert len(seen) == CONFIG.video_steps and all(torch.all(s[:, 0] == 0) for s in seen)
    torch.testing.assert_close(torch.stack([s[0, 1] for s in seen]), torch.tensor(sig[:-1]))


def test_actions_keep_unused_channels_and_zero_frames_at_zero():
    used = torch.tensor([1.0, 0.0, 1.0])
    out = denoise_actions(torch.randn(1, 2, 4, 3), lambda x, s, t: _rows(torch.ones_like(x), t), CONFIG,
                          torch.randn(1, 1, 1), used=used, zero_frames=1)
    assert torch.all(out[:, 0] == 0) and torch.all(out[..., 1] == 0)
    assert torch.all(out[:, 1, :, 0] != 0)
