"""A query that carries the writes before it (``stream_after_writes``): one model call with the numbers of the
writes, each its own call, followed by the query — the keys/values the cache keeps, what it evicts, the velocity —
or a refusal that changes nothing where one call cannot give them."""

import copy

import pytest
import torch

from model_inputs import tiny_model

from lbva.models.attention import AttentionWindow

K = 2
VIDEO, ACTIONS = 8, 6  # tokens of one chunk of the tiny model: 2 frames of 4×4 latents (patch 2×2), 2·3 actions


def _chunk(c, seed=0):
    g = torch.Generator().manual_seed(1000 * seed + c)
    return torch.randn(2, 16, K, 4, 4, generator=g), torch.randn(2, K, 3, 30, generator=g)


def _history(model, window, chunks, slack=max(VIDEO, ACTIONS)):
    """A session's cache (two text rows, as with CFG) after ``chunks`` real chunks, each written as the session
    writes them, evicting by ``window`` as it goes."""
    text = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(9))
    tkv = model.text_context(text)
    cache = model.new_cache(window.capacity_tokens(VIDEO, ACTIONS), window, rows=2, slack=slack)
    z = torch.zeros(2, K)
    with torch.no_grad():
        for c in range(chunks):
            v, a = _chunk(c)
            model.stream(cache, tkv, "video", v, z, c, K, write=(c, "video", False))
            model.stream(cache, tkv, "actions", a, z, c, K, write=(c, "actions", False))
    return cache, tkv


def _same_cache(a, b, layers):
    assert a.tags() == b.tags() and a.entry_tokens() == b.entry_tokens()
    assert torch.equal(a.ids, b.ids) and a.size == b.size  # the same history; slots may differ (a joint call packs its own)
    for layer in range(layers if len(a) else 0):
        for x, y in zip(a.history(layer), b.history(layer)):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


def _apart(model, cache, tkv, writes, query):
    """The reference: one stream call per write, in order, then the query."""
    qmod, qx, qsigma, qchunk = query
    for m, x, sigma, tag in writes:
        model.stream(cache, tkv, m, x, sigma, tag[0], K, write=tag)
    return model.stream(cache, tkv, qmod, qx, qsigma, qchunk, K)


def _imagined_video_then_actions(c, seed=1):
    """The predictor's step inside a chunk: the imagined video of chunk c is written, the actions of c queried."""
    v, _ = _chunk(c, seed)
    _, a = _chunk(c, seed + 1)
    return [("video", v, torch.full((2, K), 0.2), (c, "video", True))], ("actions", a, torch.full((2, K), 0.6), c)


def _real_chunk_then_next_video(c, seed=1):
    """Between chunks: the real chunk c (video, actions) is written, the video of chunk c + 1 queried."""
    v, a = _chunk(c, seed)
    x, _ = _chunk(c + 1, seed + 1)
    z = torch.zeros(2, K)
    return ([("video", v, z, (c, "video", False)), ("actions", a, z, (c, "actions", False))],
            ("video", x, torch.full((2, K), 0.8), c + 1))


CASES = {"imagined video, then the actions": _imagined_video_then_actions,
         "a real chunk, then the next video": _real_chunk_then_next_video}


def _prepare(model, window, chunks, case, slack=max(VIDEO, ACTIONS)):
    """The cache as the predictor leaves it before ``case``: the history of ``chunks`` chunks, then
    * in a chunk: one video query of chunk ``chunks``, which makes room for its tokens and gives them back;
    * between chunks: chunk ``chunks - 1``'s imagined video and predicted actions were written in place of its real
      ones (each evicting as it must), and the feedback has just dropped them."""
    cache, tkv = _history(model, window, chunks - (case is _real_chunk_then_next_video), slack)
    with torch.no_grad():
        if case is _imagined_video_then_actions:
            x, _ = _chunk(chunks, 7)
            model.stream(cache, tkv, "video", x, torch.full((2, K), 0.9), chunks, K)
        else:
            c = chunks - 1
            v, a = _chunk(c, 7)
            model.stream(cache, tkv, "video", v, torch.full((2, K), 0.2), c, K, write=(c, "video", True))
            model.stream(cache, tkv, "actions", a, torch.zeros(2, K), c, K, write=(c, "actions", True))
            cache.drop(c)
    return cache, tkv


@pytest.mark.parametrize("layout", ["shared", "mot"])
@pytest.mark.parametrize("window", [AttentionWindow("released", 3), AttentionWindow("released", 1),
                                    AttentionWindow("released", 5), AttentionWindow("chunks", 2)], ids=str)
@pytest.mark.parametrize("case", list(CASES))
def test_one_call_gives_the_numbers_of_the_calls_apart(layout, window, case):
    model = tiny_model(layout)
    make = CASES[case]
    for chunks in (1, 2, 3, 4):  # filling up, full, and evicting on every call
        cache, tkv = _prepare(model, window, chunks, make)
        writes, query = make(chunks if make is _imagined_video_then_actions else chunks - 1)
        ref, got = copy.deepcopy(cache), copy.deepcopy(cache)
        with torch.no_grad():
            u_ref = _apart(model, ref, tkv, writes, query)
            u_got = model.stream_after_writes(got, tkv, K, writes, query)
        held = dict(zip(ref.tags(), ref.entry_tokens()))
        own_evicted = any(held.get(tag, 0) < (VIDEO if tag[1] == "video" else ACTIONS) for *_, tag in writes)
        if own_evicted:  # a one-chunk cache: the query evicts what this call writes; only calls apart can do that
            assert u_got is None, f"under {window} the query evicts the writes, yet one call was made"
            _same_cache(got, cache, len(model.blocks))
            continue
        assert u_got is not None, f"refused after {chunks} chunks under {window}"
        torch.testing.assert_close(u_got, u_ref, rtol=1e-5, atol=1e-6)
        _same_cache(got, ref, len(model.blocks))


def test_the_cases_above_make_the_query_evict_what_the_writes_read():
    """Teeth for the test above: under a released window of size 3, once the cache is full, the action query of
    chunk c evicts the actions of chunk c − 2 — which the imagined video of chunk c, written just before, still
    reads. A call that evicted before writing would give that video other keys/values."""
    model = tiny_model("shared")
    window = AttentionWindow("released", 3)
    cache, tkv = _prepare(model, window, 2, _imagined_video_then_actions)
    writes, query = _imagined_video_then_actions(2)
    ref = copy.deepcopy(cache)
    with torch.no_grad():
        _apart(model, ref, tkv, writes, query)
    assert (0, "actions", False) in cache.tags() and (0, "actions", False) not in ref.tags()
    early = copy.deepcopy(cache)
    early.drop(0, "actions", imagined_only=False)  # the eviction done before the write
    with torch.no_grad():
        _apart(model, early, tkv, writes, query)
    k_ref, k_early = ref.history(1)[0][:, -VIDEO:], early.history(1)[0][:, -VIDEO:]
    assert not torch.allclose(k_ref, k_early, atol=1e-4), "the evicted actions should change the video's keys"


def test_the_query_does_not_see_what_it_evicted_and_the_writes_do():
    """The joint call's key layout, checked against the calls apart: the query's rows lose exactly the slots the
    query's own call evicts, the written rows keep them."""
    model = tiny_model("shared")
    window = AttentionWindow("released", 3)
    cache, _ = _prepare(model, window, 2, _imagined_video_then_actions)
    before = {tuple(e.tag): e.slots.clone() for e in cache._entries}
    n_w, n_q = VIDEO, ACTIONS
    ids = torch.tensor([4] * n_w + [5] * n_q)
    writes = torch.tensor([True] * n_w + [False] * n_q)
    call = cache.open_joint(ids, ~writes, writes, 2, rows=2)
    assert call is not None
    gone = torch.cat([s for tag, s in before.items() if tag not in {tuple(e.tag) for e in cache._entries}]
                     + [s[: s.numel() - e.slots.numel()] for tag, s in before.items()
                        for e in cache._entries if tuple(e.tag) == tag and e.slots.numel() < s.numel()])
    assert gone.numel() == n_q  # the cache was full after the video query gave its slots back: n_q evicted
    valid = call.key_valid
    assert valid.shape == (n_w + n_q, call.extent)
    assert valid[:n_w, gone].all() and not valid[n_w:, gone].any()
    rest = ~torch.isin(torch.arange(call.extent), gone)
    assert (valid[:, rest] == valid[0, rest]).all(), "elsewhere every row sees the same slots"
    assert not torch.isin(call.slots, gone).any(), "the call's own tokens must not overwrite keys it still reads"


def test_refusals_change_nothing():
    model = tiny_model("shared")
    window = AttentionWindow("released", 3)
    writes, query = _real_chunk_then_next_video(2)
    # the writes would evict: the full cache has no room for a real chunk
    cache, tkv = _history(model, window, 2)
    state = (cache.tags(), cache.entry_tokens(), cache._used.clone())
    with torch.no_grad():
        assert model.stream_after_writes(cache, tkv, K, writes, query) is None
    assert (cache.tags(), cache.entry_tokens()) == state[:2] and torch.equal(cache._used, state[2])
    # no slack: the query's eviction would need slots the writes still read
    cache, tkv = _prepare(model, window, 2, _imagined_video_then_actions)
    tight, _ = _prepare(model, window, 2, _imagined_video_then_actions, slack=0)
    w, q = _imagined_video_then_actions(2)
    with torch.no_grad():
        assert model.stream_after_writes(tight, tkv, K, w, q) is None
    # rows that differ from the query's, and writes whose ids do not rise
    one_row = [(m, x[:1], s[:1], tag) for m, x, s, tag in w]
    backwards = list(reversed(writes))
    with torch.no_grad():
        assert model.stream_after_writes(cache, tkv, K, one_row, q) is None
        emptied, _ = _history(model, AttentionWindow("released", 29), 1)
        assert model.stream_after_writes(emptied, tkv, K, backwards, query) is None
    with pytest.raises(ValueError, match="modality 'audio' is unknown"):
        model.stream_after_writes(cache, tkv, K, w, ("audio",) + q[1:])
