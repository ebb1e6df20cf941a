"""The preallocated KV cache: the released eviction rule against a transcription of the release's slot allocator,
whole-chunk eviction, dropping, and a buffer that is written in place and never reallocated."""

import random

import pytest
import torch

from lbva.models.attention import AttentionWindow
from lbva.models.kv_cache import CacheFullError, KVCache

LAYERS, ROWS, HEADS, DH = 2, 2, 2, 4


def _kv(seed, L):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(ROWS, L, HEADS, DH, generator=g), torch.randn(ROWS, L, HEADS, DH, generator=g))
            for _ in range(LAYERS)]


def _call(cache, seed, L, chunk, modality="video", tag=None):
    """One model call's cache traffic: open (evict, reserve), store every layer, close (write or give back)."""
    ids = torch.full((L,), 2 * chunk + (modality == "actions"))
    call = cache.open(ids, torch.full((L,), tag is None), chunk, rows=ROWS)
    for i, (k, v) in enumerate(_kv(seed, L)):
        call.store(i, k, v)
    cache.close(call, tag)
    return call


class ReleasedAllocator:
    """The released server's per-layer cache bookkeeping, transcribed: a slot is free or holds a token of a group
    (``id`` = 1 + the largest id held, so a group's id orders it by write time); a call takes the lowest free slots
    after freeing the tokens of the smallest ids (a stable order: a group loses its first tokens first), and a call
    that does not write frees its slots again; clearing predictions frees every predicted slot."""

    def __init__(self, capacity):
        self.group = [None] * capacity  # slot -> (group id, token index, is_pred) or None

    def call(self, L, write, pred=False):
        free = [s for s, g in enumerate(self.group) if g is None]
        if len(free) < L:
            used = sorted((s for s, g in enumerate(self.group) if g is not None), key=lambda s: self.group[s][:2])
            for s in used[: L - len(free)]:
                self.group[s] = None
            free = [s for s, g in enumerate(self.group) if g is None]
        slots = free[:L]
        gid = 1 + max((g[0] for g in self.group if g is not None), default=-1)
        for j, s in enumerate(slots):
            self.group[s] = (gid, j, pred)
        if not write:
            for s in slots:
                self.group[s] = None
        return gid

    def clear_pred(self):
        self.group = [None if g is not None and g[2] else g for g in self.group]


def _ours_by_slot(cache, written):
    """slot -> (step that wrote it, token index) of what the lbva cache holds; ``written``: tag -> tokens written."""
    out = {}
    for e, n in zip(cache._entries, cache.entry_tokens()):
        for j, s in enumerate(e.slots.tolist()):
            out[s] = (e.tag[0], written[e.tag] - n + j)  # a cut group lost its first tokens
    return out


@pytest.mark.parametrize("seed", range(4))
def test_released_eviction_is_the_released_allocators(seed):
    """Random call sequences — queries, writes of varied sizes, dropping the predictions — leave the same tokens in
    the same slots as the release's allocator, including groups it cuts in part."""
    rnd = random.Random(seed)
    capacity = 24
    cache = KVCache(LAYERS, capacity, AttentionWindow.from_attn_window(6))  # the capacity decides, not the size
    ref = ReleasedAllocator(capacity)
    written, gid_of, cut = {}, {}, False
    for step in range(60):
        op = rnd.random()
        L = rnd.randint(1, 9)
        if op < 0.15:
            for c in {t[0] for t in cache.tags()}:
                cache.drop(c, None, imagined_only=True)
            ref.clear_pred()
            continue
        write = op > 0.45
        pred = write and rnd.random() < 0.5
        tag = (step, "video", pred) if write else None
        _call(cache, step, L, chunk=step, tag=tag)
        gid = ref.call(L, write, pred)
        if write:
            written[tag], gid_of[step] = L, gid
        ours = {s: (gid_of[w], j) for s, (w, j) in _ours_by_slot(cache, written).items()}
        theirs = {s: g[:2] for s, g in enumerate(ref.group) if g is not None}
        assert ours == theirs, step
        cut = cut or any(n < written[t] for t, n in zip(cache.tags(), cache.entry_tokens()))
    assert cut, "no group was cut in part: the sequence does not exercise the partial rule"


def test_released_cache_of_a_checkpoint_holds_its_attn_window_chunks():
    w = AttentionWindow.from_attn_window(30)
    assert (w.kind, w.size, w.attn_window) == ("released", 29, 30)
    assert w.capacity_tokens(768, 64) == 15 * (768 + 64)  # the release: (attn_window // 2) · (video + action)
    assert AttentionWindow.from_attn_window(7).size == 5  # 7 // 2 = 3 chunks: ids up to 5 apart
    assert AttentionWindow("released", 4).capacity_tokens(10, 3) == 3 * 13  # an even size: one chunk more
    assert AttentionWindow("chunks", 3).capacity_tokens(10, 3) == 4 * 13
    with pytest.raises(ValueError, match="attn_window 1"):
        AttentionWindow.from_attn_window(1)
    with pytest.raises(ValueError, match="kind 'tokens'"):
        AttentionWindow("tokens", 3)
    with pytest.raises(ValueError, match=">= 1"):
        AttentionWindow("released", 0)


def test_whole_chunk_window_evicts_only_chunks_out_of_sight():
    window = AttentionWindow("chunks", 2)
    cache = KVCache(LAYERS, window.capacity_tokens(4, 2), window)  # 3 chunks of 6 tokens
    for c in range(3):
        _call(cache, 10 * c, 4, c, "video", (c, "video", False))
        _call(cache, 10 * c + 1, 2, c, "actions", (c, "actions", False))
    assert [t[0] for t in cache.tags()] == [0, 0, 1, 1, 2, 2]  # full, nothing evicted yet: room was enough
    # a query of chunk 3 sees chunks 2 and 3: out-of-sight entries go, oldest first, as many as it needs room for
    _call(cache, 99, 4, 3)
    assert cache.tags()[0] == (0, "actions", False) and [t[0] for t in cache.tags()] == [0, 1, 1, 2, 2]
    _call(cache, 98, 4, 3, "video", (3, "video", False))
    _call(cache, 97, 2, 3, "actions", (3, "actions", False))
    assert [t[0] for t in cache.tags()] == [1, 1, 2, 2, 3, 3]
    # a call that still sees every chunk held cannot be served: the error says so
    with pytest.raises(CacheFullError, match="nothing older than its window"):
        _call(cache, 96, 4, 2)


def test_cache_without_window_refuses_to_overflow():
    cache = KVCache(LAYERS, 10)
    _call(cache, 1, 6, 0, tag=(0, "video", False))
    with pytest.raises(CacheFullError, match="no window"):
        _call(cache, 2, 6, 1)
    with pytest.raises(CacheFullError, match="does not fit"):
        _call(cache, 3, 11, 1)


def test_drop_frees_slots_that_the_next_write_reuses_and_history_keeps_write_order():
    cache = KVCache(LAYERS, 32)
    items = [(1, (0, "video", False), 5), (2, (0, "actions", True), 3), (3, (1, "video", True), 5),
             (4, (1, "actions", False), 3)]
    for seed, tag, L in items:
        _call(cache, seed, L, tag[0], tag[1], tag)
    cache.drop(0, "actions")
    cache.drop(1, None)  # both modalities of chunk 1, but only the imagined one goes
    assert cache.tags() == [(0, "video", False), (1, "actions", False)]
    call = _call(cache, 5, 4, 2, "video", (2, "video", False))
    assert call.slots.tolist() == [5, 6, 7, 8]  # the lowest free slots: those actions 0 and video 1 held
    # the history in write order holds exactly what was written for the surviving entries
    expect = {1: 5, 4: 3, 5: 4}
    for i in range(LAYERS):
        k, v = cache.history(i)
        want_k = torch.cat([_kv(seed, L)[i][0] for seed, L in expect.items()], dim=1)
        want_v = torch.cat([_kv(seed, L)[i][1] for seed, L in expect.items()], dim=1)
        assert torch.equal(k, want_k) and torch.equal(v, want_v)
    assert cache.ids.tolist() == [0] * 5 + [3] * 3 + [4] * 4


def test_a_query_reads_its_own_tokens_and_gives_its_slots_back():
    cache = KVCache(LAYERS, 16)
    _call(cache, 1, 5, 0, tag=(0, "video", False))
    ids = torch.full((3,), 1)
    call = cache.open(ids, torch.ones(3, dtype=torch.bool), 0, rows=ROWS)
    assert call.key_valid.tolist() == [True] * 8 and call.key_noisy.tolist() == [False] * 5 + [True] * 3
    k, v = _kv(7, 3)[0]
    keys, values = call.store(0, k, v)
    assert keys.shape == (ROWS, 8, HEADS, DH) and torch.equal(keys[:, 5:], k) and torch.equal(values[:, 5:], v)
    cache.close(call)
    assert cache.size == 5 and cache.tags() == [(0, "video", False)]
    # a conditional-only call (one row of a CFG pair) reads the first row of the history
    call = cache.open(ids, torch.ones(3, dtype=torch.bool), 0, rows=1)
    keys, _ = call.store(0, k[:1], v[:1])
    assert keys.shape == (1, 8, HEADS, DH) and torch.equal(keys[:, :5], cache.history(0)[0][:1])
    cache.close(call)
    with pytest.raises(ValueError, match="every row"):
        c = cache.open(ids, torch.zeros(3, dtype=torch.bool), 0, rows=1)
        cache.close(c, (0, "actions", False))
