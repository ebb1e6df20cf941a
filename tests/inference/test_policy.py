"""The closed-loop Policy: cached streaming equals the reference, the offline sampler agrees, each mode uses the
context it should, and bad input gets a clear error."""

import numpy as np
import pytest
import torch

from policy_stack import FrameSource, make_policy, run_steps, stack  # noqa: F401  (stack is a fixture)

# metaworld-sawyer: K = 2 latent frames per chunk, N = 4 actions per latent frame -> chunk 0 has 4 actions
# (its first frame is the conditioning observation), later chunks 8.
K, N = 2, 4


def test_cached_session_equals_recompute_session_over_several_chunks(stack):
    src = FrameSource(seed=1)
    cached = run_steps(make_policy(stack, session="cached"), src, 4 + 8 * 3)
    reference = run_steps(make_policy(stack, session="recompute"), src, 4 + 8 * 3)
    assert cached.shape == (28, 4)
    np.testing.assert_allclose(cached, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("window,size", [("chunks", 2), ("released", 1), ("released", 2)])
def test_windowed_cache_equals_windowed_recompute(stack, window, size):
    """Four chunks through a cache sized from the window (it evicts from chunk 1 or 2 on, by the window's rule) give
    the full masked forward's numbers under the same window."""
    src = FrameSource(seed=2)
    a = run_steps(make_policy(stack, session="cached", window=window, window_size=size), src, 4 + 8 * 3)
    b = run_steps(make_policy(stack, session="recompute", window=window, window_size=size), src, 4 + 8 * 3)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=3e-6)  # tight: a wrongly evicted key moves them by ~1e-5
    if size == 1:
        c = run_steps(make_policy(stack, session="cached", window="released", window_size=29), src, 4 + 8 * 3)
        assert not np.allclose(a[-8:], c[-8:]), "the window should change what late chunks see"


def test_released_cache_departs_from_the_mask_where_the_release_does(stack):
    """With attn_window 4 (size 3) the released server evicts the actions of chunk c − 2 during chunk c's action
    query, before the real video of chunk c is written; the training mask would show them to that video (3 ids
    apart). lbva's cache does what the release does (tests/interop: LeRobot's port past its eviction point), so it
    departs from the full masked forward there: from chunk 3, the first to read a video written that way."""
    src = FrameSource(seed=2)
    a = run_steps(make_policy(stack, session="cached", window="released", window_size=3), src, 4 + 8 * 3)
    b = run_steps(make_policy(stack, session="recompute", window="released", window_size=3), src, 4 + 8 * 3)
    np.testing.assert_allclose(a[:4 + 8 * 2], b[:4 + 8 * 2], rtol=1e-5, atol=3e-6)  # chunks 0-2
    assert not np.allclose(a[-8:], b[-8:], rtol=1e-4, atol=1e-4)


def test_default_window_is_bounded_like_the_release():
    from lbva.config import load_config
    from lbva.inference.policy import inference_window

    w = inference_window(load_config(None).inference)
    assert (w.kind, w.size, w.attn_window) == ("released", 29, 30)  # the release's attn_window 30


def test_long_session_keeps_its_cache_within_the_window(stack):
    """Memory stays flat: after many chunks the cache holds at most the window's tokens, in the same buffer."""
    policy = make_policy(stack, window="released", window_size=3)
    src = FrameSource(seed=4)
    policy.reset("reach")
    actions = policy.predict_action_chunk(src.obs(0))
    cache = policy.predictor.session.cache
    sizes, buffers = [], None
    for c in range(1, 8):
        policy.observe(src.obs(c)["observation.images.corner"][None].repeat(policy.feedback_frames(c - 1), 0), actions)
        actions = policy.predict_action_chunk()
        sizes.append(cache.size)
        buffers = buffers or [k.data_ptr() for k in cache._k]
        assert [k.data_ptr() for k in cache._k] == buffers
    video_tokens, action_tokens = stack["model"].chunk_tokens(8, 8, K, N)  # 8x8 latents of the 64x64 camera
    assert max(sizes) <= cache.capacity == 2 * (video_tokens + action_tokens)  # (3 + 1) // 2 chunks
    assert sizes[-1] == sizes[-4]  # steady state
    assert {t[0] for t in cache.tags()} == {6, 7}  # only the last chunks remain
    assert {e.chunk for e in policy.predictor.session.entries()} == {6, 7}


def test_streaming_policy_equals_offline_full_sequence_sampler(stack):
    """Chunk 1 from the policy equals lbva.objectives.sampler.sample_chunk given the same history and noise."""
    from lbva.objectives.sampler import SamplerConfig, sample_chunk

    policy = make_policy(stack)
    src = FrameSource(seed=3)
    policy.reset("open the drawer")
    first = policy.predict_action_chunk(src.obs(0))
    keyframes = np.stack([src.obs(N)["observation.images.corner"]])
    policy.observe(keyframes, first)
    hist = {e.modality: e.value for e in policy.predictor.session.entries()}
    g = torch.Generator().set_state(policy.predictor.generator.get_state())
    second = policy.predict_action_chunk()
    used = torch.as_tensor(np.array(stack["spec"].used_mask))
    video, actions = sample_chunk(
        stack["model"], policy._text, K, tuple(hist["video"].shape[i] for i in (1, 3, 4)), N,
        history_video=hist["video"], history_actions=hist["actions"], null_text=policy._null, used_mask=used,
        config=SamplerConfig.from_config(policy.config), generator=g)
    spec = policy.spec
    expect = spec.slots_to_action(spec.denormalize_actions(actions[0].reshape(-1, 30).numpy()))
    np.testing.assert_allclose(second, expect, rtol=1e-4, atol=1e-5)


def _with_imagined_offset(monkeypatch, policy, chunk, offset=2.0):
    """Once chunk ``chunk``'s actions are decoded, shift its imagined video as stored for later context.

    The actions of the chunk (and so what the robot executes) stay the same; only what a *later* chunk can
    see of this chunk's imagination changes."""
    from lbva.inference.session import Entry

    original = policy.predictor.decode_actions

    def patched(c, zero_first):
        a = original(c, zero_first)
        if c == chunk:
            e = next(e for e in policy.predictor.session.entries() if e.chunk == c and e.modality == "video")
            assert e.imagined
            policy.predictor.session.write(Entry(c, "video", e.value + offset, e.sigma, True))
        return a

    monkeypatch.setattr(policy.predictor, "decode_actions", patched)


@pytest.mark.parametrize("mode, real_matters, imagined_matters", [
    ("sync", True, False),
    ("naive_async", False, True),
    ("fdm_async", True, False),
])
def test_each_mode_uses_its_intended_context(stack, monkeypatch, mode, real_matters, imagined_matters):
    """Chunk 2 (actions 12..19) after perturbing chunk 1's real frames, or chunk 1's imagined video."""
    steps = 4 + 8 + 8
    nxt = slice(12, 20)
    base = run_steps(make_policy(stack, mode=mode), FrameSource(seed=4), steps)
    # real keyframes of chunk 1 are the observations after 4 + 4 and 4 + 8 executed actions
    real = run_steps(make_policy(stack, mode=mode), FrameSource(seed=4, perturb_steps={8, 12}), steps)
    p = make_policy(stack, mode=mode)
    _with_imagined_offset(monkeypatch, p, chunk=1)
    imagined = run_steps(p, FrameSource(seed=4), steps)
    np.testing.assert_allclose(base[:12], real[:12])  # chunks 0 and 1 were predicted before the perturbation
    assert (not np.allclose(base[nxt], real[nxt], atol=1e-6)) == real_matters
    assert (not np.allclose(base[nxt], imagined[nxt], atol=1e-6)) == imagined_matters


def test_async_modes_record_latency_and_idle_time(stack):
    p = make_policy(stack, mode="naive_async")
    run_steps(p, FrameSource(seed=5), 4 + 8 * 2)
    s = p.stats.summary()
    assert s["chunks"] >= 3 and s["latency_p50_s"] > 0 and s["idle_total_s"] >= 0


@pytest.mark.parametrize("mode, hidden_by", [
    ("sync", lambda T: 0),  # the robot waits for every prediction
    ("naive_async", lambda T: T),  # chunk c+1 is predicted while all T actions of chunk c execute
    ("fdm_async", lambda T: T - N),  # ... once chunk c's first real keyframe (after N actions) is in
])
def test_chunk_timings_count_the_actions_that_hide_the_latency(stack, mode, hidden_by):
    """Modelled robot idle time = latency the executed actions did not cover, at the embodiment's control rate."""
    p = make_policy(stack, mode=mode)
    run_steps(p, FrameSource(seed=5), 4 + 8 * 3 + 1)  # the last step finishes chunk 3 and starts chunk 4
    chunks = p.stats.chunks
    assert chunks[0].chunk == 0 and chunks[0].overlap_actions == 0  # chunk 0 is always waited for
    # chunk 0 executes N actions (its first latent frame is the conditioning observation), later chunks K*N
    assert [c.overlap_actions for c in chunks[1:]] == [hidden_by(N)] + [hidden_by(K * N)] * (len(chunks) - 2)
    assert len(chunks) >= 4
    hz = 80.0
    expect = sum(max(0.0, c.latency_s - c.overlap_actions / hz) for c in chunks)
    assert p.stats.summary(control_hz=hz)["modelled_idle_s"] == pytest.approx(expect)
    # with a slow enough robot only the chunks nothing executed under are waited for: chunk 0, every sync chunk,
    # and fdm's chunk 1 (chunk 0's only keyframe arrives with its last action)
    slow = p.stats.summary(control_hz=1e-3)["modelled_idle_s"]
    waited = {"sync": chunks, "naive_async": chunks[:1], "fdm_async": chunks[:2]}[mode]
    assert slow == pytest.approx(sum(c.latency_s for c in waited))


def test_bad_observation_and_call_order_errors(stack):
    from lbva.inference import PolicyError

    p = make_policy(stack)
    p.reset("x")
    with pytest.raises(PolicyError, match="observation.images.corner"):
        p.predict_action_chunk({"observation.state": np.zeros(4)})
    p.predict_action_chunk(FrameSource().obs(0))
    with pytest.raises(PolicyError, match=r"shape \(4, 4\)"):
        p.observe(np.zeros((1, 64, 64, 3), np.uint8), np.zeros((3, 4)))
    with pytest.raises(PolicyError, match=r"needs 1 frames \(1 per latent frame"):
        p.observe(np.zeros((2, 64, 64, 3), np.uint8), np.zeros((4, 4)))
    fresh = make_policy(stack)
    with pytest.raises(PolicyError, match="prompt"):
        fresh.predict_action_chunk({"observation.images.corner": np.zeros((64, 64, 3), np.uint8)})


def test_float_camera_frames_are_refused_not_cast(stack):
    from lbva.inference import PolicyError

    p = make_policy(stack)
    p.reset("x")
    obs = FrameSource().obs(0)
    obs["observation.images.corner"] = obs["observation.images.corner"] / 255.0  # float in [0, 1]
    with pytest.raises(PolicyError, match=r"uint8.*'observation.images.corner': 'float64'"):
        p.predict_action_chunk(obs)


def test_the_policy_lays_its_model_out_for_inference(stack):
    """Policy applies LingBotVA.inference_layout: every linear weight input-major, same values."""
    import copy

    from torch import nn

    model = copy.deepcopy(stack["model"])
    model.apply(lambda m: setattr(m.weight, "data", m.weight.data.contiguous()) if isinstance(m, nn.Linear) else None)
    values = {k: v.clone() for k, v in model.state_dict().items()}
    policy = make_policy({**stack, "model": model})
    assert policy.model is model
    linears = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(w.t().is_contiguous() and not w.is_contiguous() for w in linears)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in values.items())
