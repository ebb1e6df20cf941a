"""The deployment session: history as per-layer keys/values in the model's KV cache.

Axis legend: R text rows (1, or 2 with classifier-free guidance: cond then uncond), C latent channels,
K latent frames per chunk, h/w latent pixels, N actions per latent frame, A action slots.

Each history entry runs once through the model as clean tokens and leaves its keys/values in the cache;
a velocity query runs only the query chunk's tokens. The text's cross-attention keys/values are computed
once per prompt. The cache is sized from the session's attention window and evicts by it, so memory and time per
chunk stay flat over an episode. In the sync loop it gives the numbers of
:class:`~lbva.inference.session.RecomputeSession` (whose mask applies the same window), with the one exception the
released server has: under a released window of odd size ≥ 3 the real video of chunk c is written after the action
query of chunk c evicted the oldest actions that video's mask would still show.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lbva.inference.session import Entry, EntryBook, Modality
from lbva.models.attention import AttentionWindow
from lbva.objectives.sampler import repeat_rows


class CachedSession(EntryBook):
    """The history in a KV cache sized from ``window`` (or ``capacity`` tokens), evicting by the same window.

    Entries the cache evicts leave :meth:`entries` too; an entry the released rule cut in part stays listed."""

    def __init__(self, model, chunk_frames: int, video_shape, action_shape, window: AttentionWindow | None = None,
                 capacity: int | None = None):
        super().__init__()
        self.model = model
        self.chunk_frames = chunk_frames
        self.video_shape, self.action_shape = video_shape, action_shape
        self.window = window
        if capacity is None:
            if window is None:
                raise ValueError("a cached session needs an attention window to size its KV cache from, or an explicit "
                                 "capacity in tokens for the whole history")
            _, h, w = video_shape
            capacity = window.capacity_tokens(*model.chunk_tokens(h, w, chunk_frames, action_shape[0]))
        self.capacity = int(capacity)
        self.cache = None  # made by set_text, once the number of text rows is known
        self._tkv = None
        self._rows = 0

    def set_text(self, text: torch.Tensor, null_text: torch.Tensor | None) -> None:
        rows = text if null_text is None else torch.cat([text, null_text.expand_as(text)], 0)
        with torch.no_grad():
            self._tkv = self.model.text_context(rows)
        self._rows = rows.shape[0]
        # slack for one query: a velocity call writes what waits (velocity(writes=...)) in the same pass
        _, h, w = self.video_shape
        slack = self.model.query_slack(h, w, self.chunk_frames, self.action_shape[0])
        self.cache = self.model.new_cache(self.capacity, self.window, rows=self._rows, slack=slack)

    def _text_rows(self, r: int):
        if r > self._rows:
            raise ValueError(f"a query with {r} text rows, but the session was prepared with {self._rows}")
        return self._tkv if r == self._rows else [(k[:r], v[:r]) for k, v in self._tkv]

    def _forget_evicted(self) -> None:
        present = {(c, m) for c, m, _ in self.cache.tags()}
        for key in [k for k in self._entries if k not in present]:
            del self._entries[key]

    def write(self, entry: Entry) -> None:
        if self._record(entry):  # a rewrite replaces the cached keys/values, never duplicates them
            self.cache.drop(entry.chunk, entry.modality, imagined_only=False)
        self._write_recorded(entry)

    def _write_recorded(self, entry: Entry) -> None:
        with torch.no_grad():
            self.model.stream(self.cache, self._tkv, entry.modality, repeat_rows(entry.value, self._rows),
                              repeat_rows(entry.sigma, self._rows), entry.chunk, self.chunk_frames,
                              write=(entry.chunk, entry.modality, entry.imagined), output=False)
        self._forget_evicted()

    def write_chunk(self, video: Entry, actions: Entry) -> None:
        """A chunk's video and actions (in that order): one model call when the cache has room for both without
        evicting (:meth:`~lbva.models.lingbot_va.LingBotVA.stream_write`, the same keys/values as two writes), else
        two :meth:`write` calls, each evicting as it must."""
        for entry in (video, actions):
            if self._record(entry):
                self.cache.drop(entry.chunk, entry.modality, imagined_only=False)
        need = sum(self.model.chunk_tokens(self.video_shape[1], self.video_shape[2], self.chunk_frames,
                                           self.action_shape[0]))
        if video.chunk != actions.chunk or need > self.cache.free_tokens:
            for entry in (video, actions):
                self._write_recorded(entry)
            return
        with torch.no_grad():
            self.model.stream_write(self.cache, self._tkv, video.chunk, self.chunk_frames,
                                    [(e.modality, repeat_rows(e.value, self._rows), repeat_rows(e.sigma, self._rows),
                                      e.imagined) for e in (video, actions)])
        self._forget_evicted()

    def drop(self, chunk: int, modality: Modality | None = None, imagined_only: bool = True) -> None:
        self.cache.drop(chunk, modality, imagined_only)
        self._forget(chunk, modality, imagined_only)

    @torch.no_grad()
    def velocity(self, chunk: int, modality: Modality, x: torch.Tensor, sigma: torch.Tensor, text: torch.Tensor,
                 fdm: bool = False, writes: Sequence[tuple[Entry, ...]] = ()) -> torch.Tensor:
        """The query's velocity, with ``writes`` (groups as :meth:`write` (one entry) or :meth:`write_chunk` (a
        chunk's video and actions) take them) written first: in the same model call where the cache allows it
        (:meth:`~lbva.models.lingbot_va.LingBotVA.stream_after_writes`), else one call each, in order."""
        r = text.shape[0]
        entries = [e for group in writes for e in group]
        if entries and r == self._rows and not any((e.chunk, e.modality) in self._entries for e in entries):
            u = self.model.stream_after_writes(
                self.cache, self._tkv, self.chunk_frames,
                [(e.modality, repeat_rows(e.value, r), repeat_rows(e.sigma, r), (e.chunk, e.modality, e.imagined))
                 for e in entries],
                (modality, repeat_rows(x, r), repeat_rows(sigma, r), chunk), fdm=fdm)
            if u is not None:
                for e in entries:
                    self._record(e)
                self._forget_evicted()
                return u
        self.write_all(writes)
        u = self.model.stream(self.cache, self._text_rows(r), modality, repeat_rows(x, r), repeat_rows(sigma, r), chunk,
                              self.chunk_frames, fdm=fdm)
        self._forget_evicted()  # the released rule evicts for calls that do not write, too
        return u
