"""Training batches from a prepared latent cache: windows of latent frames, packed to a token budget.

Axis legend: B batch, C latent channels, F latent frames, h/w latent pixels, N actions per latent frame,
A = 30 unified slots, Lt text tokens, Dt text width.

Batch contract (what :class:`lbva.objectives.FlowMatchingObjective` reads; docs/architecture.md#the-training-batch)::

    video        float32 (B, C, F, h, w)   normalised latents
    actions      float32 (B, F, N, 30)     q01/q99 -> [-1, 1] on used channels, 0 elsewhere
    action_mask  bool    (B, F, N, 30)     used channel AND valid step
    text         float32 (B, Lt, Dt)
    chunk_size   int                       one per batch, sampled from data.chunk_sizes
    episode_index, segment_start  int64 (B,)
    window_start  int64 (B,)   first latent frame of the window within its segment
    source        int64 (B,)   entry of data.mixture each sample came from (mixtures only; lbva.data.mixture)
    state         float32 (B, F, 30)  raw unified-slot state per latent frame (only when the dataset records one)

Sampling, per epoch (deterministic in seed + epoch, identical on every rank):

1. every segment is cut into windows of ``window_frames`` latent frames at a random phase, so each latent
   frame falls in exactly one window per epoch; windows shorter than 2 frames are dropped. A window's first
   frame is its conditioning frame — zero actions, masked — exactly like frame 0 of a segment;
2. windows of equal length F are grouped and cut into batches of B = token_budget // tokens(F) samples
   (or ``batch_size`` when no budget is set), tokens(F) = 2·F·(h·w/p² + N) for the clean and noisy copies;
3. batches are shuffled, each gets a chunk size; the list is padded (``even_batches``) to a multiple of the
   world size and rank r takes batches r, r+W, r+2W, …

``data.mixture`` draws the windows of step 1 from several caches by weight (:mod:`lbva.data.mixture`);
``data.pack_tokens`` replaces step 2 by packing windows of one instruction into one sequence
(:mod:`lbva.data.packing`).

Tensors are read from disk per window (safetensors slices); the dataset is never loaded whole.
Use it with ``Trainer(use_distributed_sampler=False)``: the batch sampler shards by rank itself.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lbva.data.cache import LatentCache, SegmentEntry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowRef:
    """One training sample: latent frames [f0, f0 + frames) of segment ``segment`` of cache ``source``, at
    ``chunk_size``."""

    segment: int
    f0: int
    frames: int
    chunk_size: int = 1
    source: int = 0  # which cache of a mixture (data.mixture); 0 for a single cache


def tokens_per_latent_frame(latent_shape: list[int] | tuple[int, ...], patch_size: int, actions_per_frame: int) -> int:
    """Sequence tokens one latent frame costs in training: video patches + action tokens, clean and noisy."""
    _, h, w = latent_shape
    return 2 * ((h // patch_size) * (w // patch_size) + actions_per_frame)


def epoch_windows(num_frames: list[int], window: int, rng: np.random.Generator) -> list[WindowRef]:
    """Cut each segment (given by its latent frame count) into windows at a random phase."""
    out = []
    for i, f in enumerate(num_frames):
        phase = int(rng.integers(0, window)) if f > window else 0
        cuts = sorted({0, *range(phase, f, window), f})
        out += [WindowRef(i, a, b - a) for a, b in zip(cuts[:-1], cuts[1:]) if b - a >= 2]
    return out


class _EpochHandle:
    """What Lightning reaches for (``batch_sampler.sampler.set_epoch``) at the start of every epoch."""

    def __init__(self, owner: "TokenBudgetBatchSampler"):
        self._owner = owner

    def set_epoch(self, epoch: int) -> None:
        self._owner.set_epoch(epoch)


class TokenBudgetBatchSampler(Sampler[list[WindowRef]]):
    """Yields this rank's batches of :class:`WindowRef` (equal F and chunk size within a batch).

    With ``pack_tokens`` a batch is one packed sequence instead (:mod:`lbva.data.packing`): windows of one
    instruction (``text_ids``, one per segment) concatenated up to ``pack_tokens`` tokens, any F."""

    def __init__(
        self,
        num_frames: list[int],
        window_frames: int,
        chunk_sizes: list[int],
        tokens_per_frame: int,
        token_budget: int | None = None,
        batch_size: int = 1,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        even_batches: bool = True,
        shuffle: bool = True,
        pack_tokens: int | None = None,
        text_ids: list[int] | None = None,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        if not chunk_sizes or min(chunk_sizes) < 1:
            raise ValueError(f"data.chunk_sizes must be positive integers, got {chunk_sizes}")
        self.num_frames = list(num_frames)
        self.window_frames, self.chunk_sizes = window_frames, list(chunk_sizes)
        self.tokens_per_frame, self.token_budget, self.batch_size = tokens_per_frame, token_budget, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.even_batches, self.shuffle = even_batches, shuffle
        self.pack_tokens, self.text_ids = pack_tokens, text_ids
        if pack_tokens is not None:
            if pack_tokens < window_frames * self.largest_frame_tokens():
                raise ValueError(
                    f"data.pack_tokens={pack_tokens} cannot hold one window of data.window_frames={window_frames} "
                    f"latent frames ({self.largest_frame_tokens()} tokens each): it must be at least "
                    f"{window_frames * self.largest_frame_tokens()}"
                )
            if token_budget is not None:
                raise ValueError(f"data.pack_tokens={pack_tokens} and data.token_budget={token_budget} are both set: "
                                 "a packed batch is one sequence of up to pack_tokens tokens; unset token_budget")
        self.epoch = 0
        self.sampler = _EpochHandle(self)  # Lightning calls batch_sampler.sampler.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def largest_frame_tokens(self) -> int:
        return self.tokens_per_frame

    def frame_tokens(self, w: WindowRef) -> int:
        """Tokens one latent frame of ``w`` costs in training."""
        return self.tokens_per_frame

    def text_id(self, w: WindowRef) -> int:
        return self.text_ids[w.segment]

    def epoch_windows(self, rng: np.random.Generator) -> list[WindowRef]:
        """This epoch's samples, before batching."""
        return epoch_windows(self.num_frames, self.window_frames, rng)

    def bucket(self, w: WindowRef) -> tuple[int, ...]:
        """Windows of one bucket may share a batch: equal F, or (packing) one cache's windows of one instruction."""
        if self.pack_tokens is not None:
            return (w.source, self.text_id(w))
        return (w.frames,)

    def split(self, items: list[WindowRef]) -> list[list[WindowRef]]:
        """Cut one bucket's windows, in order, into batches."""
        if self.pack_tokens is not None:
            from lbva.data.packing import pack_windows

            return pack_windows(items, [w.frames * self.frame_tokens(w) for w in items], self.pack_tokens)
        b = self.batch_size
        if self.token_budget is not None:
            b = max(1, self.token_budget // (items[0].frames * self.frame_tokens(items[0])))
        return [items[i : i + b] for i in range(0, len(items), b)]

    def global_batches(self, epoch: int | None = None) -> list[list[WindowRef]]:
        """Every rank's batches for an epoch, before padding and rank selection."""
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch])
        windows = self.epoch_windows(rng)
        buckets: dict[tuple[int, ...], list[WindowRef]] = defaultdict(list)
        for w in windows:
            buckets[self.bucket(w)].append(w)
        batches: list[list[WindowRef]] = []
        for key in sorted(buckets):
            items = buckets[key]
            if self.shuffle:
                items = [items[i] for i in rng.permutation(len(items))]
            batches += self.split(items)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        sizes = rng.choice(self.chunk_sizes, size=len(batches))
        return [[replace(w, chunk_size=int(k)) for w in batch] for batch, k in zip(batches, sizes)]

    def rank_batches(self, epoch: int | None = None) -> list[list[WindowRef]]:
        batches = self.global_batches(epoch)
        if self.even_batches and batches and len(batches) % self.world_size:
            pad = self.world_size - len(batches) % self.world_size
            batches = batches + [batches[i % len(batches)] for i in range(pad)]
        return batches[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[WindowRef]]:
        return iter(self.rank_batches())

    def __len__(self) -> int:
        return len(self.rank_batches())


class LatentWindowDataset(Dataset):
    """Map-style dataset indexed by :class:`WindowRef`; reads one window from disk per item."""

    def __init__(self, cache: LatentCache, stats, used_mask: np.ndarray):
        from lbva.embodiment import normalize

        self.cache = cache
        self.stats = stats
        self.used_mask = torch.as_tensor(np.asarray(used_mask, bool))
        self._normalize = normalize

    def __len__(self) -> int:
        return len(self.cache.segments)

    def __getitem__(self, ref: WindowRef) -> dict[str, Any]:
        entry: SegmentEntry = self.cache.segments[ref.segment]
        win = self.cache.read_window(entry, ref.f0, ref.frames)
        actions = win["actions"].float().numpy()  # (F, N, 30) raw slots
        valid = win["action_valid"].clone()  # (F, N)
        valid[0] = False  # the window's first frame conditions the rest; its actions lead from outside
        norm = torch.as_tensor(np.asarray(self._normalize(actions, self.stats, self.used_mask.numpy()), np.float32))
        mask = valid[..., None] & self.used_mask  # (F, N, 30)
        item = {
            "video": win["latents"].float(),  # (C, F, h, w)
            "actions": torch.where(mask, norm, torch.zeros_like(norm)),
            "action_mask": mask,
            "text": self.cache.text(entry.text_key),  # (Lt, Dt)
            "chunk_size": ref.chunk_size,
            "episode_index": entry.episode_index,
            "segment_start": entry.start,
            "window_start": ref.f0,
        }
        if win["states"] is not None:
            item["state"] = win["states"].float()  # (F, 30)
        return item


def text_ids(segments: list[SegmentEntry]) -> list[int]:
    """One small int per segment, equal for segments of one instruction."""
    ids: dict[str, int] = {}
    return [ids.setdefault(s.text_key, len(ids)) for s in segments]


def collate_windows(items: list[dict[str, Any]]) -> dict[str, Any]:
    sizes = {it["chunk_size"] for it in items}
    frames = {it["video"].shape[1] for it in items}
    if len(sizes) != 1 or len(frames) != 1:
        raise ValueError(f"a batch must share F and chunk size; got F {sorted(frames)}, chunk sizes {sorted(sizes)}")
    batch = {
        "video": torch.stack([it["video"] for it in items]),
        "actions": torch.stack([it["actions"] for it in items]),
        "action_mask": torch.stack([it["action_mask"] for it in items]),
        "text": torch.stack([it["text"] for it in items]),
        "chunk_size": sizes.pop(),
        "episode_index": torch.tensor([it["episode_index"] for it in items], dtype=torch.int64),
        "segment_start": torch.tensor([it["segment_start"] for it in items], dtype=torch.int64),
        "window_start": torch.tensor([it["window_start"] for it in items], dtype=torch.int64),
    }
    if "source" in items[0]:
        batch["source"] = torch.tensor([it["source"] for it in items], dtype=torch.int64)
    if all("state" in it for it in items):
        batch["state"] = torch.stack([it["state"] for it in items])
    return batch


class LatentDataModule(L.LightningDataModule):
    """Lightning data module over a latent cache, or over the caches of ``data.mixture`` (``cache_dir`` None).

    ``embodiment`` (a name or an EmbodimentSpec) lets it check that the cache was built for this config
    (raising a stale-cache error otherwise); a mixture entry without its own embodiment is checked against it.
    ``stats`` overrides a single cache's q01/q99 (e.g. a released checkpoint's); a mixture's samples are
    normalised with their own cache's. Rank and world size come from the attached Trainer unless given.
    """

    def __init__(
        self,
        cache_dir: str | Path | None,
        data_cfg=None,
        embodiment=None,
        stats=None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__()
        from lbva.config.data import DataConfig

        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.data_cfg = data_cfg or DataConfig()
        self.embodiment = embodiment
        self._stats = stats
        self.seed = seed
        self._rank, self._world = rank, world_size
        self.cache: LatentCache | None = None  # the single cache, or a mixture's first
        self.caches: list[LatentCache] = []
        if self.cache_dir is None and not self.data_cfg.mixture:
            raise ValueError("LatentDataModule needs a cache_dir, or a data config with data.mixture")
        if self.cache_dir is not None and self.data_cfg.mixture:
            raise ValueError("LatentDataModule got both a cache_dir and data.mixture; give one")
        if stats is not None and self.data_cfg.mixture:
            raise ValueError("stats overrides a single cache's statistics; a mixture uses each cache's own")

    @classmethod
    def from_config(cls, cfg, stats=None, rank: int | None = None, world_size: int | None = None) -> "LatentDataModule":
        """From a full :class:`~lbva.config.LbvaConfig`: ``data.cache_dir`` (default ``data.dataset``/lbva_cache),
        ``embodiment.name`` for the staleness check, ``trainer.seed`` for sampling."""
        from lbva.data.errors import DataError

        if cfg.data.mixture:
            if cfg.data.cache_dir or cfg.data.dataset:
                raise DataError(
                    f"data.mixture replaces data.cache_dir and data.dataset, but data.cache_dir={cfg.data.cache_dir!r}"
                    f" and data.dataset={cfg.data.dataset!r} are set too: give either the mixture or one cache"
                )
            return cls(None, cfg.data, embodiment=cfg.embodiment.name, seed=cfg.trainer.seed, rank=rank,
                       world_size=world_size)
        cache_dir = cfg.data.cache_dir or (str(Path(cfg.data.dataset) / "lbva_cache") if cfg.data.dataset else None)
        if cache_dir is None:
            raise DataError(
                "set data.cache_dir (a cache made by `lbva prepare`) or data.dataset (its cache defaults to "
                "DATASET/lbva_cache)"
            )
        return cls(cache_dir, cfg.data, embodiment=cfg.embodiment.name, stats=stats, seed=cfg.trainer.seed,
                   rank=rank, world_size=world_size)

    def setup(self, stage: str | None = None) -> None:
        if self.cache is not None:
            return
        if self.data_cfg.mixture:
            from lbva.data.mixture import open_mixture

            self.caches = open_mixture(self.data_cfg.mixture, self.data_cfg, self.embodiment)
            self.cache = self.caches[0]
            return
        expect = None
        if self.embodiment is not None:
            from lbva.data.prepare import _resolve_spec, settings_parts

            expect = settings_parts(self.data_cfg, _resolve_spec(self.embodiment))
        self.cache = LatentCache(self.cache_dir, expect=expect)
        self.caches = [self.cache]
        if self._stats is None:
            self._stats = self.cache.stats()

    @property
    def stats(self):
        """The single cache's statistics (or the override); None for a mixture."""
        return self._stats

    def empty_text(self) -> torch.Tensor:
        """(Lt, Dt) embedding of the empty instruction, for text dropout / classifier-free guidance."""
        self.setup()
        return self.cache.empty_text()

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        rank = self._rank if self._rank is not None else (trainer.global_rank if trainer is not None else 0)
        world = self._world if self._world is not None else (trainer.world_size if trainer is not None else 1)
        return rank, world

    def batch_sampler(self) -> TokenBudgetBatchSampler:
        self.setup()
        cfg, idx = self.data_cfg, self.cache.index
        rank, world = self._rank_world()
        if cfg.mixture:
            from lbva.data.mixture import MixtureBatchSampler, MixtureSource

            sources = [
                MixtureSource(
                    num_frames=[s.num_latent_frames for s in c.index.segments],
                    weight=float(e.weight),
                    tokens_per_frame=tokens_per_latent_frame(c.index.latent_shape, cfg.patch_size,
                                                             c.index.actions_per_frame),
                    shape=(*c.index.latent_shape, c.index.actions_per_frame),
                    text_ids=text_ids(c.index.segments),
                )
                for c, e in zip(self.caches, cfg.mixture)
            ]
            return MixtureBatchSampler(sources, cfg.window_frames, list(cfg.chunk_sizes), token_budget=cfg.token_budget,
                                       batch_size=cfg.batch_size, rank=rank, world_size=world, seed=self.seed,
                                       even_batches=cfg.even_batches, pack_tokens=cfg.pack_tokens)
        return TokenBudgetBatchSampler(
            num_frames=[s.num_latent_frames for s in idx.segments],
            window_frames=cfg.window_frames,
            chunk_sizes=list(cfg.chunk_sizes),
            tokens_per_frame=tokens_per_latent_frame(idx.latent_shape, cfg.patch_size, idx.actions_per_frame),
            token_budget=cfg.token_budget,
            batch_size=cfg.batch_size,
            rank=rank,
            world_size=world,
            seed=self.seed,
            even_batches=cfg.even_batches,
            pack_tokens=cfg.pack_tokens,
            text_ids=text_ids(idx.segments),
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        if self.data_cfg.mixture:
            from lbva.data.mixture import MixtureWindowDataset

            dataset = MixtureWindowDataset([LatentWindowDataset(c, c.stats(), c.used_mask()) for c in self.caches])
        else:
            dataset = LatentWindowDataset(self.cache, self._stats, self.cache.used_mask())
        if self.data_cfg.pack_tokens is None:
            collate = collate_windows
        else:
            from lbva.data.packing import collate_packed as collate
        return DataLoader(
            dataset,
            batch_sampler=self.batch_sampler(),
            collate_fn=collate,
            num_workers=self.data_cfg.num_workers,
            persistent_workers=self.data_cfg.num_workers > 0,
        )
