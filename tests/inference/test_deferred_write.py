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
    stream, joint = LingBotVA.stream, LingBotVA.stream_write

    def counted(self, cache, tkv, modality, x, sigma, chunk, chunk_size, write=None, fdm=False, output=True):
        if write is not None:
            seen.append(tuple(write))
        return stream(self, cache, tkv, modality, x, sigma, chunk, chunk_size, write, fdm, output)

    def counted_joint(self, cache, tkv, chunk, chunk_size, entries):
        seen.extend((chunk, m, imagined) for m, _, _, imagined in entries)
        return joint(self, cache, tkv, chunk, chunk_size, entries)

    monkeypatch.setattr(LingBotVA, "stream", counted)
    monkeypatch.setattr(LingBotVA, "stream_write", counted_joint)
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
