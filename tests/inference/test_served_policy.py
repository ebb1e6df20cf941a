"""A trained-format policy folder served by `lbva serve`'s factory: reset, infer, feedback, infer over a websocket
give exactly what the same Policy gives in process."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lbva.serving.client import LbvaClient


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("served") / "policy"
    r = subprocess.run([sys.executable, "-m", "lbva", "model", "init", str(out), "--embodiment", "metaworld-sawyer"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def _obs(seed):
    rng = np.random.default_rng(seed)
    return {"observation.images.corner": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
            "observation.state": rng.standard_normal(4).astype(np.float32)}


def test_websocket_session_equals_in_process_policy(policy_dir):
    from lbva.inference import Policy
    from lbva.serving.cli import CheckpointPolicyFactory
    from lbva.serving.server import PolicyServer

    local = Policy.from_pretrained(policy_dir, embodiment="metaworld-sawyer")
    local.reset("press the button")
    first = local.predict_action_chunk(_obs(0))
    keyframe = _obs(1)
    local.observe({"observation.images.corner": keyframe["observation.images.corner"][None]}, first)
    second = local.predict_action_chunk()

    factory = CheckpointPolicyFactory(policy_dir, "metaworld-sawyer")
    with PolicyServer(factory, factory.template.spec, port=0).start() as server:
        with LbvaClient("127.0.0.1", server.port) as client:
            assert client.metadata  # openpi clients read one metadata frame on connect
            client.reset("press the button")
            got_first = client.infer(_obs(0))["actions"]
            client.feedback(first, {"observation.images.corner": keyframe["observation.images.corner"][None]})
            got_second = client.infer(_obs(2))["actions"]
            rows = client.metadata["action"]
    # the metadata announces what each reply of the real policy holds (the first chunk has one latent frame fewer)
    assert (rows["rows_first_chunk"], rows["rows_later_chunks"]) == (len(first), len(second)) == (4, 8)
    np.testing.assert_allclose(got_first, first, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_second, second, rtol=1e-5, atol=1e-6)
