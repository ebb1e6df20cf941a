"""The policy's parts on their own: the action codec's round trip, the observation encoder's checks."""

import numpy as np
import pytest
import torch

from lbva.embodiment import ActionStats, get_embodiment
from lbva.inference import PolicyError
from lbva.inference.action_codec import ActionCodec

K, N = 2, 4  # metaworld-sawyer


def _codec():
    stats = ActionStats(q01=np.full(30, -2.0, np.float32), q99=np.full(30, 3.0, np.float32), source="test")
    spec = get_embodiment("metaworld-sawyer").with_stats(stats)
    return ActionCodec(spec, K, N, 30, torch.device("cpu"))


@pytest.mark.parametrize("c", [0, 1])
def test_native_actions_round_trip_through_the_model_slots(c):
    """to_model(to_native(a)) = a on the used slots (0 elsewhere); chunk 0's conditioning frame stays zero."""
    codec = _codec()
    a = (torch.rand(1, K, N, 30, generator=torch.Generator().manual_seed(c)) * 2 - 1) * codec.used
    if c == 0:
        a[:, 0] = 0.0
    native = codec.to_native(c, a)
    assert native.shape == ((K - 1) * N if c == 0 else K * N, codec.spec.native_action_dim)
    torch.testing.assert_close(codec.to_model(c, native), a, rtol=1e-5, atol=1e-5)


def test_executed_actions_of_the_wrong_shape_are_refused():
    codec = _codec()
    with pytest.raises(PolicyError, match=r"chunk 1 must have shape \(8, 4\)"):
        codec.to_model(1, np.zeros((4, 4), np.float32))
