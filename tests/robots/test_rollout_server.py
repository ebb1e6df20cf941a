"""`lbva rollout --server`: a policy on an lbva server drives the arm one action a call, and the server hears
back the actions the robot really received and a keyframe every N actions (its KV-cache feedback)."""

from __future__ import annotations

import numpy as np
import pytest
from robots_helpers import FakeClock, RecordingRobot

from lbva.embodiment import get_embodiment
from lbva.robots.loop import run_rollout
from lbva.robots.remote import ServerPolicy
from lbva.serving.fake_policy import FakePolicy
from lbva.serving.server import PolicyServer
from lbva_lerobot_arms.adapter import LeRobotArm

SPEC = get_embodiment("so101")


class LoggingArm(LeRobotArm):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.observations = []

    def get_observation(self):
        obs = super().get_observation()
        self.observations.append(obs)
        return obs


@pytest.fixture(params=[None, 4], ids=["one-frame-per-latent", "server-asks-every-4"])
def served(request):
    """A server that says nothing about feedback frames, and one that asks for a frame every 4 actions (what
    ``lbva serve`` announces for a policy with the Wan2.2 VAE)."""
    policies = []

    def factory():
        policies.append(FakePolicy.from_embodiment(SPEC))
        return policies[-1]

    meta = None if request.param is None else {"feedback": {"frame_every_actions": request.param}}
    with PolicyServer(factory, SPEC, port=0, metadata=meta).start() as server:
        yield server, policies, request.param


def test_server_policy_drives_the_arm_and_feeds_back_what_was_executed(served):
    server, policies, every = served
    robot = RecordingRobot(start=(0.0, 0.0, 0.0, 0.0, 0.0, 50.0))
    arm = LoggingArm(robot, SPEC)
    policy = ServerPolicy.connect(f"ws://127.0.0.1:{server.port}", SPEC)
    T = (SPEC.chunk_frames - 1) * SPEC.actions_per_frame  # the first chunk of an episode (24): one latent frame fewer
    N = every or SPEC.actions_per_frame  # a keyframe after every N actions
    clock = FakeClock()
    try:
        summary = run_rollout(arm, policy, "stack the cubes", T + 3, fps=30, max_delta=5.0, progress=False,
                              clock=clock, sleep=clock.sleep)
    finally:
        policy.close()
    [remote] = policies
    assert remote.resets == ["stack the cubes"] and remote.inferences == 2 and policy.chunks == 2
    assert summary.steps == T + 3
    [(frames, executed)] = remote.feedback
    sent = robot.sent_array()[:T].astype(np.float32)  # what the robot received (the gripper is rate-limited)
    np.testing.assert_allclose(executed, sent, atol=1e-5)
    assert summary.reasons["rate_limited"] > 0  # so the executed actions are not the chunk the server sent
    # keyframes: the observation before executed action N, 2N, ... (steps N, 2N, ..., T)
    steps = list(range(N, T + 1, N))
    want_state = np.stack([arm.observations[s]["observation.state"] for s in steps])
    np.testing.assert_allclose(frames["observation.state"], want_state, atol=1e-6)
    assert frames["observation.images.front"].shape == (len(steps), 256, 320, 3)


def test_server_for_another_embodiment_is_refused(served):
    server, _, _ = served
    with pytest.raises(ValueError, match="serves embodiment 'so101'.*drives 'koch'"):
        ServerPolicy.connect(f"ws://127.0.0.1:{server.port}", get_embodiment("koch"))
