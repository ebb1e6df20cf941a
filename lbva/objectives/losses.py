"""The training losses: L_dyn (video dynamics), L_inv (inverse dynamics), L_fdm (forward dynamics).

Axis legend: B batch, C latent channels, F latent frames, H, W latent height/width, N actions per latent
frame, A action dim (30 unified slots), Lt text tokens, Dt text width.

One :class:`FlowMatchingObjective` call draws per-latent-frame σ for video and actions (separate
shifts), noises both, builds the teacher-forcing clean copy (optionally re-noised: noisy-history
augmentation), drops the text for some samples (classifier-free guidance), picks per sequence whether it is
trained as forward dynamics (``fdm_prob``: its video chunks also see their own chunk's clean actions, as the
paper's asynchronous post-training does) or as inverse dynamics, draws per sequence a training attention window
when the recipe sets one, runs the model once and returns the weighted sum with every term.

The terms add up to the loss: ``loss_dyn`` / ``loss_fdm`` are the video losses of the inverse- / forward-dynamics
sequences, each summed over its sequences and divided by the batch size (so with ``fdm_prob = 0`` ``loss_dyn`` is
the plain batch mean), ``loss_inv`` the action loss of every sequence.

Unused action channels (False everywhere in ``action_mask`` for a sample) are zeroed in every action
tensor the model sees — clean copy, data and noise — so their values can change neither loss nor gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lbva.models.attention import AttentionWindow
from lbva.objectives.flow_matching import FlowMatchingSchedule, interpolate, shift_sigma, target_velocity

REQUIRED_KEYS = ("video", "actions", "action_mask", "text", "chunk_size")


@dataclass
class LossOutput:
    loss: torch.Tensor                       # scalar, what backward() runs on
    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # detached scalars for logging
    pred_actions: torch.Tensor | None = None  # (B, F, N, A) predicted u on the noisy actions
    num_tokens: int = 0                       # tokens in the forward pass (for tokens/s)


def check_batch(batch: dict) -> None:
    """Raise a clear error when a batch does not follow the batch contract of :mod:`lbva.data.datamodule`."""
    missing = [k for k in REQUIRED_KEYS if k not in batch]
    if missing:
        raise KeyError(f"training batch lacks {missing}; it needs {list(REQUIRED_KEYS)} "
                       "(the batch contract in lbva/data/datamodule.py)")
    v, a, m, t = batch["video"], batch["actions"], batch["action_mask"], batch["text"]
    if v.ndim != 5:
        raise ValueError(f"batch['video'] must be (B, C, F, H, W), got shape {tuple(v.shape)}")
    if a.ndim != 4 or a.shape[:2] != (v.shape[0], v.shape[2]):
        raise ValueError(f"batch['actions'] must be (B, F, N, A) with B, F of the video {tuple(v.shape)}, got {tuple(a.shape)}")
    if m.shape != a.shape:
        raise ValueError(f"batch['action_mask'] must match actions {tuple(a.shape)}, got {tuple(m.shape)}")
    if t.ndim != 3 or t.shape[0] != v.shape[0]:
        raise ValueError(f"batch['text'] must be (B, Lt, Dt), got {tuple(t.shape)}")
    cs = int(batch["chunk_size"])
    if cs < 1:
        raise ValueError(f"batch['chunk_size'] must be >= 1, got {cs}")


def used_channels(action_mask: torch.Tensor) -> torch.Tensor:
    """(B, F, N, A) bool → (B, 1, 1, A) float: 1 on channels the sample uses anywhere."""
    return action_mask.any(dim=2, keepdim=True).any(dim=1, keepdim=True).to(torch.float32)


def apply_text_dropout(text: torch.Tensor, p: float, null_text: torch.Tensor | None, generator=None) -> torch.Tensor:
    """Replace each sample's text (B, Lt, Dt) with the null embedding with probability p (zeros if none)."""
    if p <= 0:
        return text
    drop = draw("rand", (), text.shape[0], generator, text.device) < p  # (B,)
    if null_text is None:
        null = torch.zeros_like(text[0])
    else:
        null = null_text.to(text.device, text.dtype)
        if null.ndim == 3:
            null = null[0]
        if null.shape != text.shape[1:]:
            raise ValueError(
                f"null text embedding has shape {tuple(null.shape)} but the batch text is (Lt, Dt) = "
                f"{tuple(text.shape[1:])}; encode the empty prompt with the same text encoder and length"
            )
    return torch.where(drop.view(-1, 1, 1), null.unsqueeze(0).expand_as(text), text)


def draw(kind: str, per_sample: tuple[int, ...], batch: int, generator, device, dtype=torch.float32) -> torch.Tensor:
    """Random (batch, *per_sample) tensor: ``kind`` is "randn" or "rand".

    ``generator`` may be one generator for the whole batch or one per sample (length ``batch``); with one
    per sample, a sample's draws do not depend on which rank or batch position it lands in, so a global
    batch split across processes sees the same noise as on one process.
    """
    fn = torch.randn if kind == "randn" else torch.rand
    if generator is None or isinstance(generator, torch.Generator):
        return fn((batch, *per_sample), generator=generator, device=device, dtype=dtype)
    if len(generator) != batch:
        raise ValueError(f"got {len(generator)} per-sample generators for a batch of {batch}")
    return torch.stack([fn(per_sample, generator=g, device=device, dtype=dtype) for g in generator])


def draw_batch(kind: str, shape: tuple[int, ...], generator, device, dtype=torch.float32) -> torch.Tensor:
    """One draw for the whole micro-batch (the released training code decides some things per batch); with
    per-sample generators it comes from the first sample's."""
    g = generator[0] if isinstance(generator, (list, tuple)) else generator
    fn = torch.randn if kind == "randn" else torch.rand
    return fn(shape, generator=g, device=device, dtype=dtype)


def sample_generators(base_seed: int, first_index: int, count: int, device=None) -> list[torch.Generator]:
    """One generator per sample, seeded by (``base_seed``, the sample's global index within a run).

    The two are mixed into one 32-bit seed by numpy's SeedSequence: torch's CPU generator keeps only the low 32 bits
    of a seed, so a base seed shifted above them (as an earlier version did) left every run with the same noise."""
    import numpy as np

    dev = torch.device(device) if device is not None else torch.device("cpu")
    return [torch.Generator(device=dev).manual_seed(int(np.random.SeedSequence([int(base_seed), first_index + j])
                                                        .generate_state(1)[0]))
            for j in range(count)]


class FlowMatchingObjective:
    """L = w_dyn·L_dyn + w_inv·L_inv + w_fdm·L_fdm from an :class:`~lbva.config.objective.ObjectiveConfig`."""

    def __init__(self, cfg, null_text: torch.Tensor | None = None):
        self.cfg = cfg
        self.video = FlowMatchingSchedule(cfg.video_shift, cfg.loss_weighting, cfg.num_train_timesteps)
        self.action = FlowMatchingSchedule(cfg.action_shift, cfg.loss_weighting, cfg.num_train_timesteps)
        self.null_text = null_text  # (Lt, Dt) or None → zeros
        if cfg.fdm_weight is not None and cfg.fdm_prob == 0:
            raise ValueError(
                f"objective.fdm_weight={cfg.fdm_weight} weighs the forward-dynamics loss, but objective.fdm_prob is 0, "
                "so no sequence is trained with the forward-dynamics mask: set objective.fdm_prob (the share of such "
                "sequences, e.g. 0.5) or drop fdm_weight"
            )
        self.fdm_weight = cfg.dyn_weight if cfg.fdm_weight is None else cfg.fdm_weight
        if cfg.window != "none":
            sizes = list(cfg.window_sizes)
            if len(sizes) != 2 or not all(isinstance(x, int) for x in sizes) or not 1 <= sizes[0] <= sizes[1]:
                raise ValueError(f"objective.window_sizes={sizes}: it must be [lo, hi], integers with 1 <= lo <= hi "
                                 "(the released recipe draws from [4, 64])")
        if cfg.noisy_history not in ("uniform", "released"):
            raise ValueError(f"objective.noisy_history={cfg.noisy_history!r}: allowed 'uniform', 'released'")
        if cfg.action_loss not in ("per_token", "per_frame"):
            raise ValueError(f"objective.action_loss={cfg.action_loss!r}: allowed 'per_token', 'per_frame'")

    def __call__(self, model, batch: dict, generator: torch.Generator | None = None) -> LossOutput:
        check_batch(batch)
        cfg = self.cfg
        x0 = batch["video"]  # (B, C, F, H, W)
        mask = batch["action_mask"]  # (B, F, N, A)
        used = used_channels(mask).to(x0.device)  # (B, 1, 1, A)
        a0 = batch["actions"] * used  # (B, F, N, A)
        B, C, F, H, W = x0.shape
        dev = x0.device
        chunk = int(batch["chunk_size"])

        sv = self._sigmas(self.video, B, F, generator, dev)  # (B, F)
        sa = self._sigmas(self.action, B, F, generator, dev)  # (B, F)
        eps_v = draw("randn", tuple(x0.shape[1:]), B, generator, dev, x0.dtype)
        eps_a = draw("randn", tuple(a0.shape[1:]), B, generator, dev, a0.dtype) * used
        xv = interpolate(x0, eps_v, sv.view(B, 1, F, 1, 1))  # (B, C, F, H, W)
        xa = interpolate(a0, eps_a, sa.view(B, F, 1, 1))  # (B, F, N, A)
        uv, ua = target_velocity(x0, eps_v), target_velocity(a0, eps_a)

        clean, clean_sigma = self._noisy_history(x0, generator)
        text = apply_text_dropout(batch["text"], cfg.text_dropout, self.null_text, generator)
        # drawn after everything above, so that a recipe without them draws the same noise as before they existed
        fdm = draw("rand", (), B, generator, dev) < cfg.fdm_prob if cfg.fdm_prob > 0 else False  # (B,) or False
        window = self._window(B, generator, dev)

        # a packed batch (data.pack_tokens) tells the model where its windows start; other batches pass nothing
        packed = {"frame_episode": batch["frame_episode"]} if "frame_episode" in batch else {}
        out = model(
            noisy_video=xv, video_sigma=sv, noisy_actions=xa, action_sigma=sa, text=text,
            clean_video=clean, clean_video_sigma=clean_sigma, clean_actions=a0, chunk_size=chunk,
            window=window, fdm=fdm, **packed,
        )
        per_seq = self._video_loss(out.video, uv, self.video.weight(sv))  # (B,)
        l_inv = self._action_loss(out.actions, ua, self.action.weight(sa), mask)
        terms = {}
        if torch.is_tensor(fdm):
            l_dyn = (per_seq * ~fdm).sum() / B
            l_fdm = (per_seq * fdm).sum() / B
            total = cfg.dyn_weight * l_dyn + cfg.inv_weight * l_inv + self.fdm_weight * l_fdm
            terms.update(loss_dyn=l_dyn.detach(), loss_inv=l_inv.detach(), loss_fdm=l_fdm.detach(),
                         fdm_share=fdm.float().mean())
        else:
            l_dyn = per_seq.mean()
            total = cfg.dyn_weight * l_dyn + cfg.inv_weight * l_inv
            terms.update(loss_dyn=l_dyn.detach(), loss_inv=l_inv.detach())
        terms["loss"] = total.detach()
        n_tok = 2 * B * F * (H * W + a0.shape[2])  # clean + noisy copies (before patching)
        return LossOutput(total, terms, out.actions.detach(), n_tok)

    def _noisy_history(self, x0: torch.Tensor, generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The teacher-forcing clean video copy (B, C, F, H, W) and its σ (B, F) — None when nothing is re-noised.

        ``uniform``: each sequence with probability p, σ ~ U(0, max) per frame. ``released``: the whole batch with
        probability p; σ per frame (the same for every sequence) a point of the lower half of the shifted video
        grid, indices [T/2, T) of linspace(1, 1/T, T) — up to shift(0.5)."""
        cfg = self.cfg
        B, F, dev = x0.shape[0], x0.shape[2], x0.device
        if cfg.noisy_history_prob <= 0:
            return x0, None
        if cfg.noisy_history == "uniform":
            if cfg.noisy_history_max_sigma <= 0:
                return x0, None
            pick = draw("rand", (), B, generator, dev) < cfg.noisy_history_prob  # (B,)
            sigma = draw("rand", (F,), B, generator, dev) * cfg.noisy_history_max_sigma
            sigma = sigma * pick.view(B, 1)  # (B, F)
        else:
            if not bool(draw_batch("rand", (), generator, dev) < cfg.noisy_history_prob):
                return x0, None
            T = cfg.num_train_timesteps
            u = draw_batch("rand", (F,), generator, dev)
            idx = (u * 0.5 * T + 0.5 * T).floor().clamp(max=T - 1)  # (F,) grid indices in [T/2, T)
            sigma = shift_sigma(1.0 - idx / T, cfg.video_shift).view(1, F).expand(B, F)
        eps = draw("randn", tuple(x0.shape[1:]), B, generator, dev, x0.dtype)
        return interpolate(x0, eps, sigma.reshape(B, 1, F, 1, 1)), sigma

    def _window(self, B: int, generator, dev) -> AttentionWindow | None:
        """A training attention window per sequence, its size uniform in ``window_sizes`` (both ends included)."""
        cfg = self.cfg
        if cfg.window == "none":
            return None
        lo, hi = cfg.window_sizes
        u = draw("rand", (), B, generator, dev)
        return AttentionWindow(cfg.window, (lo + (u * (hi - lo + 1)).floor().clamp(max=hi - lo)).long())

    @staticmethod
    def _sigmas(schedule: FlowMatchingSchedule, B: int, F: int, generator, dev) -> torch.Tensor:
        if generator is None or isinstance(generator, torch.Generator):
            return schedule.sample((B, F), generator, dev)
        return torch.stack([schedule.sample((F,), g, dev) for g in generator])

    @staticmethod
    def _video_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """(B,): per sequence, the mean over frames of (per-frame mean squared error × timestep weight)."""
        per_frame = ((pred.float() - target.float()) ** 2).mean(dim=(1, 3, 4))  # (B, F)
        return (per_frame * weight).mean(dim=1)

    def _action_loss(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
        """Masked, timestep-weighted squared error of the actions (B, F, N, A), reduced as ``action_loss`` says."""
        B, F = pred.shape[:2]
        err = (pred.float() - target.float()) ** 2 * weight.view(B, F, 1, 1)  # (B, F, N, A)
        m = mask.to(err.dtype)
        if self.cfg.action_loss == "per_token":
            return (err * m).sum() / m.sum().clamp(min=1.0)
        # per (sequence, frame): its valid entries' mean; a frame without any counts as 0 (the release's 1e-6)
        return ((err * m).sum(dim=(2, 3)) / (m.sum(dim=(2, 3)) + 1e-6)).mean()
