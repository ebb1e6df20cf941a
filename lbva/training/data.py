"""Training data for the LightningModule and the Fabric loop: the latent cache or fixed synthetic batches,
behind a loader that resumes mid-epoch at the exact batch (so a resumed run sees the batches an
uninterrupted run would).

Axis legend (synthetic batches follow the batch contract of :mod:`lbva.data.datamodule`): B batch, C latent channels, F
latent frames, H, W latent height/width, N actions per latent frame, A = 30 action slots, Lt/Dt text tokens/width.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

logger = logging.getLogger(__name__)


class SyntheticBatches(Dataset):
    """``length`` fixed batches, batch ``i`` a function of ``(seed, i)`` only.

    Video is a smooth random walk over frames; actions are the frame-to-frame change of a projection of
    it (so inverse dynamics is learnable); unused channels and frame 0 carry zero and are masked.
    """

    def __init__(self, length: int, batch_size: int, channels: int, height: int, width: int, frames: int,
                 actions_per_frame: int, text_tokens: int, text_dim: int, chunk_sizes=(1, 2), used_mask=None,
                 seed: int = 0, action_dim: int = 30):
        if length < 1:
            raise ValueError(f"SyntheticBatches needs length >= 1, got {length}")
        self.length, self.seed = length, seed
        self.shape = (batch_size, channels, frames, height, width)
        self.N, self.A, self.Lt, self.Dt = actions_per_frame, action_dim, text_tokens, text_dim
        self.chunk_sizes = [c for c in chunk_sizes if frames % c == 0] or [1]
        used = torch.ones(action_dim, dtype=torch.bool) if used_mask is None else torch.tensor(np.array(used_mask, dtype=bool))
        self.used = used  # (A,)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + int(i))
        B, C, F, H, W = self.shape
        steps = torch.randn(B, C, F, H, W, generator=g) * 0.3
        video = steps.cumsum(dim=2) + torch.randn(B, C, 1, H, W, generator=g)  # (B, C, F, H, W)
        feat = video.mean(dim=(1, 3, 4))  # (B, F)
        delta = torch.zeros(B, F)
        delta[:, 1:] = feat[:, 1:] - feat[:, :-1]
        phase = torch.linspace(0.5, 1.5, self.A)  # per-channel gain
        ramp = torch.linspace(0.5, 1.0, self.N)
        actions = torch.tanh(delta.view(B, F, 1, 1) * ramp.view(1, 1, -1, 1) * phase.view(1, 1, 1, -1))
        mask = self.used.view(1, 1, 1, -1).expand(B, F, self.N, self.A).clone()
        mask[:, 0] = False
        actions = actions * mask
        return {
            "video": video,
            "actions": actions,
            "action_mask": mask,
            "text": torch.randn(B, self.Lt, self.Dt, generator=g),
            "chunk_size": self.chunk_sizes[int(i) % len(self.chunk_sizes)],
            "episode_index": torch.full((B,), int(i), dtype=torch.int64),
            "segment_start": torch.zeros(B, dtype=torch.int64),
        }


class _SkipFirst:
    """A batch sampler that leaves out the first ``skip`` batches of its inner batch sampler (cheap: indices only)."""

    def __init__(self, inner, skip: int):
        self.inner, self.skip = inner, skip
        self.sampler = getattr(inner, "sampler", None)

    def __iter__(self):
        return itertools.islice(iter(self.inner), self.skip, None)

    def __len__(self) -> int:
        return max(len(self.inner) - self.skip, 0)


class ResumableLoader:
    """Wraps a DataLoader; ``state_dict()`` records how many batches of this epoch were consumed.

    Lightning saves it with the checkpoint (the loader is ``_Stateful``) and calls ``load_state_dict``
    when resuming, so the next epoch iterator starts at the first batch not yet trained on. The training
    step reports consumption with :meth:`mark_consumed` (the data fetcher prefetches, so counting yields
    would be off by the prefetch depth).
    """

    def __init__(self, loader: DataLoader):
        self.loader = loader
        self.consumed = 0
        self._skip = 0

    # Lightning calls set_epoch on these
    @property
    def sampler(self):
        return getattr(self.loader, "sampler", None)

    @property
    def batch_sampler(self):
        return getattr(self.loader, "batch_sampler", None)

    def __len__(self) -> int:
        return len(self.loader)

    def mark_consumed(self, batches_in_epoch: int) -> None:
        self.consumed = batches_in_epoch

    def state_dict(self) -> dict[str, int]:
        return {"consumed": int(self.consumed)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._skip = self.consumed = int(state.get("consumed", 0))

    def __iter__(self) -> Iterator:
        skip, self._skip = self._skip, 0
        if skip == 0:
            self.consumed = 0
            return iter(self.loader)
        if skip >= len(self.loader):
            return iter(())
        logger.info("resuming mid-epoch: skipping the %d batches already trained on", skip)
        dl = self.loader
        if dl.batch_sampler is not None and not isinstance(dl.dataset, IterableDataset):  # skip indices, not data
            return iter(DataLoader(dl.dataset, batch_sampler=_SkipFirst(dl.batch_sampler, skip),
                                   collate_fn=dl.collate_fn, num_workers=dl.num_workers, pin_memory=dl.pin_memory))
        return itertools.islice(iter(dl), skip, None)


def synthetic_loader(cfg, model, length: int) -> DataLoader:
    """A loader over :class:`SyntheticBatches` shaped for ``model`` and the recipe's embodiment."""
    from lbva.embodiment import get_embodiment

    spec = get_embodiment(cfg.embodiment.name)
    model = getattr(model, "module", model)  # unwrap DDP / Fabric wrappers
    arch = getattr(model, "arch", None)  # LingBotVA has in_channels etc. as properties; fall back to model.arch

    def attr(name, default=None):
        return getattr(model, name, getattr(arch, name, default))

    p = attr("patch_size", 2)
    p = p[-1] if isinstance(p, (tuple, list)) else p
    ds = SyntheticBatches(
        length=length, batch_size=cfg.data.batch_size, channels=attr("in_channels"), height=2 * p, width=2 * p,
        frames=cfg.data.window_frames, actions_per_frame=spec.actions_per_frame, text_tokens=4,
        text_dim=attr("text_dim"), chunk_sizes=tuple(cfg.data.chunk_sizes), used_mask=spec.used_mask,
        seed=cfg.trainer.seed,
    )
    return DataLoader(ds, batch_size=None, shuffle=False, num_workers=0)
