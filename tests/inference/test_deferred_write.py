"""The predicted actions of a chunk are written into the history lazily: the sync loop never computes them (the
feedback replaces them first), an asynchronous prediction gets them written before it reads, and anyone reading the
session sees them — the same numbers as writing them at once."""

import numpy as np
import pytest

from policy_stack import FrameSource, make_policy, run_steps, stack  # noqa: F401  (stack is a fixture)

from lbva.models.lingbot_va import LingBotVA


@pytest.fixture
def writes(monkeypatch):
    """Every cache write the model runs: (chunk, modality, imagined)."""
    seen = []
    stream, joint, with_query = LingBotVA.stream, LingBotVA.stream_write, LingBotVA.stream_after_writes

    def counted(self, cache, tkv, modality, x, sigma, chunk, chunk_size, write=None, fdm=False, output=True):
        if write is not None:
            seen.append(tuple(write))
        return stream(self, cache, tkv, modality, x, sigma, chunk, chunk_size, write, fdm, output)

    def counted_joint(self, cache, tkv, chunk, chunk_size, entries):
        seen.extend((chunk, m, imagined) for m, _, _, imagined in entries)
        return joint(self, cache, tkv, chunk, chunk_size, entries)

    def counted_with_query(self, cache, tkv, chunk_size, entries, query, fdm=False):
        u = with_query(self, cache, tkv, chunk_size, entries, query, fdm)
        if u is not None:  # None: refused, the session writes them apart (counted there)
            seen.extend(tuple(tag) for _, _, _, tag in entries)
        return u

    monkeypatch.setattr(LingBotVA, "stream", counted)
    monkeypatch.setattr(LingBotVA, "stream_write", counted_joint)
    monkeypatch.setattr(LingBotVA, "stream_after_writes", counted_with_query)
    return seen


def test_the_sync_loop_never_writes_predicted_actions(stack, writes):
    src = FrameSource(seed=1)
    run_steps(make_policy(stack), src, 4 + 8 * 3)
    assert writes, "the loop wrote nothing at all"
    assert not [w for w in writes if w[1] == "actions" and w[2]], writes
    assert [w for w in writes if w[1] == "video" and w[2]]  # the imagined video is written: the actions read it
    assert [w for w in writes if w[1] == "actions" and not w[2]]  # the executed actions are written


def test_reading_the_session_writes_the_waiting_chunk(stack, writes):
    policy = make_policy(stack)
    policy.reset("reach")
    policy.predict_action_chunk(FrameSource(seed=1).obs(0))
    assert not [w for w in writes if w[1] == "actions"]
    tags = policy.predictor.session.cache.tags()  # reading the session writes it first
    assert (0, "actions", True) in tags and writes[-1] == (0, "actions", True)


def _writing_at_once(monkeypatch):
    """The reference: every predicted chunk written into the history as soon as it is predicted."""
    from lbva.inference.predictor import ChunkPredictor

    predict = ChunkPredictor.predict

    def at_once(self, c, fixed=None):
        actions = predict(self, c, fixed)
        self._write_deferred()
        return actions

    monkeypatch.setattr(ChunkPredictor, "predict", at_once)


@pytest.mark.parametrize("mode", ["sync", "naive_async"])
def test_deferring_gives_the_numbers_of_writing_at_once(stack, writes, monkeypatch, mode):
    """naive_async predicts chunk c + 1 before chunk c's feedback: the waiting write happens before that prediction
    reads the history. Both modes give what writing every prediction at once gives (to float rounding: the keys sit
    in other slots)."""
    src = FrameSource(seed=3)
    lazy = run_steps(make_policy(stack, mode=mode), src, 4 + 8 * 3)
    lazy_writes = list(writes)
    _writing_at_once(monkeypatch)
    eager = run_steps(make_policy(stack, mode=mode), src, 4 + 8 * 3)
    np.testing.assert_allclose(lazy, eager, rtol=1e-5, atol=1e-6)
    predicted = [w for w in lazy_writes if w[1] == "actions" and w[2]]
    assert bool(predicted) == (mode == "naive_async"), lazy_writes


@pytest.fixture
def passes(monkeypatch):
    """Model passes and session velocity calls the loop makes: {"runs": n, "velocities": n}."""
    from lbva.inference.cached_session import CachedSession

    counts = {"runs": 0, "velocities": 0}
    run, velocity = LingBotVA._run, CachedSession.velocity

    def counted_run(self, *args, **kw):
        counts["runs"] += 1
        return run(self, *args, **kw)

    def counted_velocity(self, *args, **kw):
        counts["velocities"] += 1
        return velocity(self, *args, **kw)

    monkeypatch.setattr(LingBotVA, "_run", counted_run)
    monkeypatch.setattr(CachedSession, "velocity", counted_velocity)
    return counts


@pytest.mark.parametrize("window,size", [("chunks", 2), ("released", 3), ("released", 29)])
def test_with_cfg_on_both_streams_every_write_rides_on_a_query(stack, passes, monkeypatch, window, size):
    """With the same text rows on both streams, the imagined video goes into the history with the first action
    query and the real chunk with the next chunk's first video query: the sync loop makes one model pass per
    velocity and none for its writes (five a chunk here, where the calls apart make seven), with the numbers of the
    calls apart — and, where the window is not the released one that evicts early, of the full masked forward."""
    src = FrameSource(seed=5)
    kw = dict(window=window, window_size=size, action_cfg=2.0)
    joint = run_steps(make_policy(stack, **kw), src, 4 + 8 * 4)
    assert passes["velocities"] == 5 * 5 and passes["runs"] == passes["velocities"], passes
    monkeypatch.setattr(LingBotVA, "stream_after_writes", lambda *a, **k: None)  # every write its own call
    passes.update(runs=0, velocities=0)
    apart = run_steps(make_policy(stack, **kw), src, 4 + 8 * 4)
    assert passes["runs"] == 25 + 5 + 4, passes  # + 5 imagined videos + 4 real chunks (the fifth is never fed back)
    np.testing.assert_allclose(joint, apart, rtol=1e-5, atol=1e-6)
    if (window, size) != ("released", 3):
        reference = run_steps(make_policy(stack, session="recompute", **kw), src, 4 + 8 * 4)
        np.testing.assert_allclose(joint, reference, rtol=1e-5, atol=3e-6)
