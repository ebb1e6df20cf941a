"""Training on several prepared caches at once (``data.mixture``): windows drawn from each by its weight.

Per epoch (deterministic in seed + epoch, identical on every rank): each cache is cut into windows as a single
cache would be (:func:`lbva.data.datamodule.epoch_windows`); the epoch draws as many windows as all caches hold
together, the number from each cache multinomial with probabilities weight / sum of weights; a cache drawn more
often than it has windows repeats them (each pass in a fresh order). Batching, chunk sizes, padding and rank
sharding are the single-cache sampler's; a batch only mixes caches whose tokens have the same shape (latent
h × w and actions per frame).

Each sample is normalised with its own cache's statistics and masked with its own embodiment's used channels;
the batch's ``source`` (B,) says which entry of ``data.mixture`` each sample came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lbva.data.cache import LatentCache
from lbva.data.datamodule import LatentWindowDataset, TokenBudgetBatchSampler, WindowRef, epoch_windows
from lbva.data.errors import DataError


@dataclass(frozen=True)
class MixtureSource:
    """What the sampler needs of one cache: its segments' latent frame counts, weight, token cost and shape."""

    num_frames: list[int]
    weight: float
    tokens_per_frame: int
    shape: tuple[int, ...]  # caches of one shape may share a batch
    text_ids: list[int] | None = None  # per segment, when packing: windows of one instruction share a sequence


class MixtureBatchSampler(TokenBudgetBatchSampler):
    """:class:`TokenBudgetBatchSampler` over several caches, each drawn by its weight."""

    def __init__(self, sources: list[MixtureSource], window_frames: int, chunk_sizes: list[int], **kw):
        if not sources:
            raise ValueError("a mixture needs at least one source")
        for i, s in enumerate(sources):
            if not (s.weight > 0 and math.isfinite(s.weight)):
                raise ValueError(f"mixture source {i}: weight {s.weight!r} must be a positive finite number")
            if max(s.num_frames, default=0) < 2:
                raise ValueError(f"mixture source {i} has no segment of at least 2 latent frames to train on")
        self.sources = list(sources)
        total = sum(s.weight for s in sources)
        self.probabilities = np.array([s.weight / total for s in sources])
        shapes = list(dict.fromkeys(s.shape for s in sources))
        self._group = [shapes.index(s.shape) for s in sources]
        super().__init__([], window_frames, chunk_sizes, tokens_per_frame=0, **kw)

    def largest_frame_tokens(self) -> int:
        return max(s.tokens_per_frame for s in self.sources)

    def frame_tokens(self, w: WindowRef) -> int:
        return self.sources[w.source].tokens_per_frame

    def text_id(self, w: WindowRef) -> int:
        return self.sources[w.source].text_ids[w.segment]

    def epoch_windows(self, rng: np.random.Generator) -> list[WindowRef]:
        pools = [epoch_windows(s.num_frames, self.window_frames, rng) for s in self.sources]
        counts = rng.multinomial(sum(len(p) for p in pools), self.probabilities)
        out: list[WindowRef] = []
        for i, (pool, k) in enumerate(zip(pools, counts)):
            passes = -(-int(k) // len(pool))
            order = [j for _ in range(passes) for j in rng.permutation(len(pool))][: int(k)]
            out += [replace(pool[j], source=i) for j in order]
        return out

    def bucket(self, w: WindowRef) -> tuple[int, ...]:
        if self.pack_tokens is not None:
            return super().bucket(w)
        return (self._group[w.source], w.frames)


class MixtureWindowDataset:
    """Map-style dataset over several caches, indexed by :class:`WindowRef` (its ``source`` picks the cache)."""

    def __init__(self, parts: list[LatentWindowDataset]):
        self.parts = parts

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __getitem__(self, ref: WindowRef) -> dict[str, Any]:
        return self.parts[ref.source][ref] | {"source": ref.source}


def open_mixture(entries, data_cfg, default_embodiment: str | None) -> list[LatentCache]:
    """Open and check every cache of ``data.mixture``: a clear error names the entry, its value and what is allowed.

    Each cache is checked against the settings its embodiment (``embodiment``, default ``default_embodiment``)
    and ``data_cfg`` expect; all must share the latent channel count and the text embedding shape, since one
    model reads them."""
    from lbva.data.prepare import _resolve_spec, settings_parts

    caches = []
    for i, e in enumerate(entries):
        where = f"data.mixture[{i}]"
        if not (isinstance(e.weight, (int, float)) and e.weight > 0 and math.isfinite(e.weight)):
            raise DataError(f"{where}.weight={e.weight!r}: weights must be positive finite numbers "
                            "(a cache's share of the draws is its weight / the sum of the weights)")
        if not e.path or not Path(e.path).is_dir():
            raise DataError(f"{where}.path={e.path!r} is not a folder: it must be a latent cache made by "
                            "`lbva prepare DATASET --embodiment NAME --out CACHE`")
        name = e.embodiment or default_embodiment
        expect = settings_parts(data_cfg, _resolve_spec(name)) if name is not None else None
        caches.append(LatentCache(e.path, expect=expect))
    first = caches[0].index
    for i, c in enumerate(caches[1:], 1):
        if c.index.latent_shape[0] != first.latent_shape[0] or c.index.text_shape != first.text_shape:
            raise DataError(
                f"data.mixture[{i}] ({c.root}) has latent channels {c.index.latent_shape[0]} and text shape "
                f"{c.index.text_shape}, data.mixture[0] ({caches[0].root}) {first.latent_shape[0]} and "
                f"{first.text_shape}: the caches of a mixture must be prepared with the same encoders"
            )
    return caches
