"""Cache writes that skip what nobody reads: ``output=False`` stops the last layer at its keys/values, and
``stream_write`` writes a chunk's video and actions in one call — both leave the keys/values two plain writes leave."""

import pytest
import torch

from model_inputs import tiny_model

from lbva.models.attention import AttentionWindow

K = 2


def _chunk(c, seed):
    g = torch.Generator().manual_seed(seed + c)
    return torch.randn(1, 16, K, 4, 4, generator=g), torch.randn(1, K, 3, 30, generator=g)


def _filled(model, how, chunks=3, window=None, capacity=200):
    """A cache holding ``chunks`` written chunks, each written ``how``: "plain" (two writes with output), "no_output"
    (two writes, output=False) or "joint" (stream_write)."""
    text = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(9))  # two rows, like CFG
    tkv = model.text_context(text)
    cache = model.new_cache(capacity, window)
    zeros = torch.zeros(2, K)
    with torch.no_grad():
        for c in range(chunks):
            v, a = (t.repeat(2, *[1] * (t.ndim - 1)) for t in _chunk(c, 0))
            if how == "joint":
                model.stream_write(cache, tkv, c, K, [("video", v, zeros, False), ("actions", a, zeros, False)])
            else:
                out = how == "plain"
                rv = model.stream(cache, tkv, "video", v, zeros, c, K, write=(c, "video", False), output=out)
                ra = model.stream(cache, tkv, "actions", a, zeros, c, K, write=(c, "actions", False), output=out)
                assert (rv is None and ra is None) == (not out)
    return cache, tkv


@pytest.mark.parametrize("layout", ["shared", "mot"])
@pytest.mark.parametrize("how", ["no_output", "joint"])
def test_short_writes_leave_the_keys_and_values_of_plain_writes(layout, how):
    model = tiny_model(layout)
    ref, _ = _filled(model, "plain")
    got, tkv = _filled(model, how)
    assert got.tags() == ref.tags() and got.entry_tokens() == ref.entry_tokens()
    assert torch.equal(got.ids, ref.ids)
    for layer in range(len(model.blocks)):
        for a, b in zip(got.history(layer), ref.history(layer)):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    # and a query against either cache gives the same velocity
    x = torch.randn(2, K, 3, 30, generator=torch.Generator().manual_seed(5))
    sig = torch.full((2, K), 0.7)
    with torch.no_grad():
        u_ref = model.stream(ref, tkv, "actions", x, sig, 3, K)
        u_got = model.stream(got, tkv, "actions", x, sig, 3, K)
    torch.testing.assert_close(u_got, u_ref, rtol=1e-6, atol=1e-6)


def test_the_joint_write_would_differ_if_the_actions_could_not_see_their_video():
    """Teeth for the test above: the joint call's actions must see the video written in the same call (the mask's
    clean j ≤ i); writing the actions against a cache without that video gives other keys/values."""
    model = tiny_model("shared")
    ref, tkv = _filled(model, "joint", chunks=1)
    lone = model.new_cache(200)
    _, a = _chunk(0, 0)
    with torch.no_grad():
        model.stream(lone, tkv, "actions", a.repeat(2, 1, 1, 1), torch.zeros(2, K), 0, K, write=(0, "actions", False),
                     output=False)
    assert not torch.allclose(lone.history(1)[0], ref.history(1)[0][:, -lone.size:], atol=1e-4)


def test_a_joint_write_without_room_for_both_is_refused_and_changes_nothing():
    model = tiny_model("shared")
    window = AttentionWindow("released", 3)
    per_chunk = sum(model.chunk_tokens(4, 4, K, 3))
    cache, tkv = _filled(model, "plain", chunks=2, window=window, capacity=2 * per_chunk)  # full
    before = (cache.tags(), cache.size)
    v, a = (t.repeat(2, *[1] * (t.ndim - 1)) for t in _chunk(2, 0))
    z = torch.zeros(2, K)
    with pytest.raises(ValueError, match=r"needs that much free room, but the cache has 0: write the entries one by"):
        model.stream_write(cache, tkv, 2, K, [("video", v, z, False), ("actions", a, z, False)])
    assert (cache.tags(), cache.size) == before
    with pytest.raises(ValueError, match="one video and then one action write"):
        model.stream_write(cache, tkv, 2, K, [("actions", a, z, False), ("video", v, z, False)])
    with pytest.raises(ValueError, match="output=False is for cache writes"):
        model.stream(cache, tkv, "video", v, z, 2, K, output=False)
