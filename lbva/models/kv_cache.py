"""The KV cache of a streaming session: per-layer keys/values of clean history tokens, in one preallocated buffer.

Axis legend: R batch rows (CFG rows), S key slots, Hh heads, Dh head dim, L tokens of one call.

Storage is one buffer per layer of ``capacity`` token slots, allocated once (heads first, (R, Hh, capacity, Dh),
so that a slot range is a view SDPA reads without a copy). Nothing is ever moved: a call reserves the lowest free
slots, writes its own keys/values there, and attends over the slots in place — the free ones hidden by the mask;
a writing call then keeps its slots as an *entry* (tagged ``(chunk, modality, imagined)``), a query call gives
them back. Dropping or evicting an entry frees its slots for later calls (the released server's slot allocator,
minus its per-layer gather of the valid slots).

Eviction follows the cache's :class:`~lbva.models.attention.AttentionWindow`, before every call that needs room,
whether it writes or not:

* ``released`` — the release's rule: the oldest written tokens go first, as many as the call needs (a group is
  cut from its first token when only part of it must go);
* ``chunks`` — entries of chunks the call cannot see any more (older than ``size`` chunks), oldest first;
* no window — nothing is evicted, and a call that does not fit is refused.

The capacity comes from the window (:meth:`AttentionWindow.capacity_tokens`), so memory and per-call work stay
flat however long the episode runs. A session's cache has ``slack`` slots beyond it, room for one query: a query that
carries the writes before it (:meth:`KVCache.open_joint`) evicts what it must like any call, but the evicted keys
keep their slots until the call ends, so the written rows still read them while the query's rows are shown none.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lbva.models.attention import AttentionWindow


class CacheFullError(ValueError):
    """A call needs more room than the cache can make under its window."""


@dataclass
class _Entry:
    tag: tuple  # (chunk, modality, imagined)
    slots: torch.Tensor  # (n,) physical slots in token order (CPU, int64)


def _index(slots: torch.Tensor):
    """A slice when the slots are one contiguous run (a view write), else the index tensor."""
    first, n = int(slots[0]), slots.numel()
    if int(slots[-1]) - first + 1 == n:
        return slice(first, first + n)
    return slots


class CacheCall:
    """One model call against the cache: the slots it holds and the key layout its mask reads.

    ``key_ids`` / ``key_noisy`` / ``key_valid`` (S,) describe slots [0, S): committed history (clean), this call's
    own tokens (its ids and noisy flags), and free slots (invalid)."""

    def __init__(self, cache: "KVCache", slots: torch.Tensor, extent: int, ids: torch.Tensor, noisy: torch.Tensor,
                 rows: int):
        self.cache, self.slots, self.extent, self.rows = cache, slots, extent, rows
        self.ids = ids
        self.writes: torch.Tensor | None = None  # (L,) bool: a joint call's written tokens (:meth:`KVCache.open_joint`)
        self._where = _index(slots)
        dev = ids.device
        key_ids = cache._ids[:extent].clone()
        key_noisy = torch.zeros(extent, dtype=torch.bool)
        key_valid = cache._used[:extent].clone()
        key_ids[self._where] = ids.cpu()
        key_noisy[self._where] = noisy.cpu()
        key_valid[self._where] = True
        self.key_ids, self.key_noisy, self.key_valid = key_ids.to(dev), key_noisy.to(dev), key_valid.to(dev)

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this call's k/v (R, L, Hh, Dh) of ``layer`` into its slots; return the keys/values to attend over,
        (R, S, Hh, Dh) views of the buffer (no copy). No gradient flows into the cache."""
        kbuf, vbuf = self.cache._buffers(layer, k)
        r = k.shape[0]
        kbuf[:r, :, self._where] = k.detach().transpose(1, 2)
        vbuf[:r, :, self._where] = v.detach().transpose(1, 2)
        return kbuf[:r, :, : self.extent].transpose(1, 2), vbuf[:r, :, : self.extent].transpose(1, 2)


class KVCache:
    """Per-layer K/V of a session's history in ``capacity`` preallocated token slots, evicted by ``window``."""

    def __init__(self, num_layers: int, capacity: int, window: AttentionWindow | None = None, rows: int | None = None,
                 slack: int = 0):
        if int(capacity) < 1:
            raise ValueError(f"KV cache capacity must be >= 1 token, got {capacity}; size it from the window "
                             "(AttentionWindow.capacity_tokens) or from the tokens the history will hold")
        if int(slack) < 0:
            raise ValueError(f"KV cache slack must be >= 0 tokens, got {slack}")
        if window is not None and torch.is_tensor(window.size):
            raise ValueError("a KV cache takes one window; per-sequence windows exist only in training")
        self.num_layers, self.capacity, self.window, self.rows = num_layers, int(capacity), window, rows
        # ``capacity`` is what the history may hold (the window's rule evicts by it); ``slack`` more physical slots
        # let a joint call (:meth:`open_joint`) keep the keys its query evicts readable by its writes
        self.slack = int(slack)
        slots = self.capacity + self.slack
        self._k: list[torch.Tensor] = []  # per layer (R, Hh, capacity + slack, Dh)
        self._v: list[torch.Tensor] = []
        self._ids = torch.full((slots,), -1, dtype=torch.int64)  # chunk id of each committed slot
        self._used = torch.zeros(slots, dtype=torch.bool)  # slots holding a committed token
        self._entries: list[_Entry] = []  # oldest written first
        self._extent = 0  # slots [0, extent) have held a token; calls attend over them

    # ---------------------------------------------------------------------------------------------- inspection
    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Committed tokens."""
        return int(self._used.sum())

    def tags(self) -> list[tuple]:
        return [e.tag for e in self._entries]

    def entry_tokens(self) -> list[int]:
        """Tokens each entry still holds (an entry partly evicted by the released rule holds fewer)."""
        return [e.slots.numel() for e in self._entries]

    @property
    def ids(self) -> torch.Tensor:
        """(S,) chunk ids of the committed tokens, oldest entry first."""
        if not self._entries:
            return torch.zeros(0, dtype=torch.int64)
        return torch.cat([self._ids[e.slots] for e in self._entries])

    def history(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(k, v) of ``layer``'s committed tokens, (R, S, Hh, Dh), oldest entry first — a gather for tests and
        inspection; calls attend over the buffer in place."""
        if not self._entries:
            raise ValueError("the cache holds no entry")
        order = torch.cat([e.slots for e in self._entries]).to(self._k[layer].device)
        return (self._k[layer].index_select(2, order).transpose(1, 2),
                self._v[layer].index_select(2, order).transpose(1, 2))

    # ---------------------------------------------------------------------------------------------- calls
    def open(self, ids: torch.Tensor, noisy: torch.Tensor, chunk: int, rows: int) -> CacheCall:
        """Make room for a call of ``ids`` (L,) tokens of ``chunk`` with ``rows`` batch rows (evicting as the window
        says), reserve the lowest free slots and return the call."""
        L = int(ids.numel())
        if self.rows is not None and rows > self.rows:
            raise ValueError(f"a call with {rows} batch rows, but the cache holds {self.rows}")
        if L > self.capacity:
            raise CacheFullError(f"a call of {L} tokens does not fit a KV cache of {self.capacity} tokens; "
                                 "size the cache from the window (AttentionWindow.capacity_tokens)")
        self._make_room(L, chunk)
        slots = (~self._used).nonzero().squeeze(1)[:L]
        extent = max(self._extent, int(slots[-1]) + 1)
        return CacheCall(self, slots, extent, ids, noisy, rows)

    def open_joint(self, ids: torch.Tensor, noisy: torch.Tensor, writes: torch.Tensor, chunk: int,
                   rows: int) -> CacheCall | None:
        """One call for history writes and a query of ``chunk`` together: ``writes`` (L,) bool marks the tokens that
        become history, the others are the query. The call sees what the writes, each its own call, and then the
        query would see: the writes keep every key the query's eviction takes (they were written before it), the
        query's rows are shown none of them. Returns None where one call cannot give those numbers: the writes
        would evict (their keys would then differ), the query would evict part of this call's own writes, or no
        slack is left to keep the evicted keys readable (the cache's ``slack``). Close it with the writes' tags."""
        L, n_w = int(ids.numel()), int(writes.sum())
        if self.rows is not None and rows > self.rows:
            raise ValueError(f"a call with {rows} batch rows, but the cache holds {self.rows}")
        if n_w == 0 or n_w == L or n_w > self.free_tokens or L - n_w > self.capacity:
            return None
        try:  # the writes are the newest entries, so the query's eviction takes from the current ones only
            cuts = self._evictions((L - n_w) - (self.free_tokens - n_w), chunk)
        except CacheFullError:
            return None
        free = (~self._used).nonzero().squeeze(1)
        if free.numel() < L:  # the evicted keys are still read in this call: their slots stay taken
            return None
        slots = free[:L]
        call = CacheCall(self, slots, max(self._extent, int(slots[-1]) + 1), ids, noisy, rows)
        call.writes = writes.cpu()
        if cuts:
            gone = torch.zeros(call.extent, dtype=torch.bool)
            gone[torch.cat([e.slots[:cut] for e, cut in cuts])] = True
            self._evict(cuts)
            hide = ~call.writes[:, None] & gone[None, :]  # (L, S): the query's rows lose what it evicted
            call.key_valid = call.key_valid[None, :] & ~hide.to(call.key_valid.device)
        return call

    def close(self, call: CacheCall, tag: tuple | list[tuple[tuple, int]] | None = None) -> None:
        """Keep the call's tokens as an entry tagged ``tag`` (a write), or give its slots back (``tag=None``).

        A call that wrote several entries at once (:meth:`LingBotVA.stream_write
        <lbva.models.lingbot_va.LingBotVA.stream_write>`) passes ``[(tag, tokens), ...]`` in its token order: each
        entry keeps its share of the call's slots, oldest first."""
        if tag is None:
            return
        slots, ids = call.slots, call.ids.cpu()
        if call.writes is not None:  # a joint call keeps its written tokens; its query's slots go back
            slots, ids = slots[call.writes], ids[call.writes]
        parts = [(tag, int(slots.numel()))] if isinstance(tag, tuple) else list(tag)
        if sum(n for _, n in parts) != slots.numel():
            raise ValueError(f"the entries {parts} do not add up to the call's {slots.numel()} written tokens")
        if self.rows is not None and call.rows != self.rows:
            raise ValueError(f"a write with {call.rows} batch rows, but the cache holds {self.rows}: every row "
                             "of the history must be written")
        self.rows = call.rows
        self._used[slots] = True
        self._ids[slots] = ids
        start = 0
        for t, n in parts:
            self._entries.append(_Entry(tuple(t), slots[start:start + n]))
            start += n
        self._extent = call.extent

    @property
    def free_tokens(self) -> int:
        """Slots a call may take without evicting anything."""
        return self.capacity - self.size

    def _buffers(self, layer: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._k:
            rows = self.rows if self.rows is not None else like.shape[0]
            _, _, Hh, Dh = like.shape
            shape = (rows, Hh, self.capacity + self.slack, Dh)
            self._k = [like.new_zeros(shape) for _ in range(self.num_layers)]
            self._v = [like.new_zeros(shape) for _ in range(self.num_layers)]
            self.rows = rows
        if like.shape[0] > self._k[layer].shape[0]:
            raise ValueError(f"a call with {like.shape[0]} batch rows, but the cache holds {self._k[layer].shape[0]}")
        return self._k[layer], self._v[layer]

    # ---------------------------------------------------------------------------------------------- forgetting
    def _free(self, slots: torch.Tensor) -> None:
        self._used[slots] = False
        self._ids[slots] = -1

    def _remove(self, keep) -> None:
        kept = []
        for e in self._entries:
            if keep(e.tag):
                kept.append(e)
            else:
                self._free(e.slots)
        self._entries = kept

    def _make_room(self, need: int, chunk: int) -> None:
        self._evict(self._evictions(need - self.free_tokens, chunk))

    def _evictions(self, short: int, chunk: int) -> list[tuple[_Entry, int]]:
        """What freeing ``short`` more tokens for a call of ``chunk`` takes under the window: ``(entry, tokens cut
        from its front)``, oldest first. Changes nothing; a :class:`CacheFullError` where the window allows too little."""
        if short <= 0:
            return []
        w = self.window
        cuts = []
        if w is not None and w.kind == "released":  # the oldest written tokens, exactly as many as needed
            for e in self._entries:
                if short <= 0:
                    break
                cut = min(short, e.slots.numel())
                cuts.append((e, cut))
                short -= cut
        elif w is not None:  # chunks: only what this call can no longer see, oldest first
            oldest_visible = chunk - int(w.size) + 1
            for e in self._entries:
                if short <= 0:
                    break
                if e.tag[0] < oldest_visible:
                    cuts.append((e, e.slots.numel()))
                    short -= e.slots.numel()
        if short > 0:
            raise CacheFullError(
                f"the KV cache of {self.capacity} tokens holds {self.size} and a call of chunk {chunk} needs "
                f"{short} more: "
                + ("nothing older than its window is left to evict; make the capacity cover the window "
                   "(AttentionWindow.capacity_tokens)" if w is not None else
                   "it has no window to evict by; give it a window or a capacity for the whole history")
            )
        return cuts

    def _evict(self, cuts: list[tuple[_Entry, int]]) -> None:
        for e, cut in cuts:
            self._free(e.slots[:cut])
            e.slots = e.slots[cut:]
        self._entries = [e for e in self._entries if e.slots.numel()]

    def drop(self, chunk: int, modality: str | None = None, imagined_only: bool = True) -> None:
        """Forget the entries of ``chunk`` (of one modality, or both); by default only imagined ones."""
        def keep(tag):
            c, m, imagined = tag
            return not (c == chunk and (modality is None or m == modality) and (imagined or not imagined_only))

        self._remove(keep)
