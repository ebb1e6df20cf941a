"""openpi's own client (openpi-client 0.1.2, in its own venv: it needs numpy < 2) against our server, unmodified:
its WebsocketClientPolicy, its image_tools, and its runtime (Runtime + PolicyAgent + ActionChunkBroker) over
several episodes with the same prompt.

The venv is made by scripts/setup_openpi_client.sh (idempotent; it needs the package registry only the first
time), so this test never skips.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from serving_helpers import FRONT, STATE, WRIST, expected_actions, fake_policy_actions

from lbva.embodiment import get_embodiment
from lbva.serving.fake_policy import FakePolicy
from lbva.serving.images import resize_with_pad
from lbva.serving.server import PolicyServer

ROOT = Path(__file__).resolve().parents[2]

CLIENT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    port = int(sys.argv[1])
    policy = WebsocketClientPolicy("127.0.0.1", port)
    meta = policy.get_server_metadata()
    obs = {
        "observation.images.front": np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3),
        "observation.images.wrist": np.full((4, 4, 3), 200, dtype=np.uint8),
        "observation.state": np.array([0.1, -0.2, 0.3, 0.4, -0.5]),  # float64: the server casts it
        "prompt": "wipe the table",
    }
    first = policy.infer(obs)
    bad = dict(obs)
    bad["observation.state"] = np.zeros(2)
    try:
        policy.infer(bad)
        error = None
    except RuntimeError as e:
        error = str(e)
    second = policy.infer(obs)
    print(json.dumps({
        "numpy": np.__version__,
        "meta": meta,
        "actions": first["actions"].tolist(),
        "dtype": str(first["actions"].dtype),
        "timing": sorted(second["server_timing"]),
        "error": error,
        "again": second["actions"].tolist(),
    }))
    """
)


def openpi_python() -> str:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup_openpi_client.sh")], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"setup_openpi_client.sh failed:\n{proc.stderr}"
    return proc.stdout.strip().splitlines()[-1]


def test_openpi_websocket_client_policy_talks_to_our_server(server):
    python = openpi_python()
    proc = subprocess.run(
        [python, "-c", CLIENT_SCRIPT, str(server.port)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["numpy"].startswith("1.")  # really openpi's environment
    assert out["meta"]["embodiment"] == "toy-arm" and out["meta"]["action"]["shape"] == [None, 4]
    assert out["meta"]["action"]["rows_first_chunk"] == 3 and out["meta"]["episodes"]["plain_observations"] == "new_episode"
    assert out["meta"]["observation"][STATE] == {"shape": [5], "dtype": "float32"}
    obs = {
        FRONT: np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3),
        WRIST: np.full((4, 4, 3), 200, dtype=np.uint8),
        STATE: np.array([0.1, -0.2, 0.3, 0.4, -0.5], dtype=np.float32),
    }
    want = expected_actions(obs, "wipe the table", 0)
    np.testing.assert_allclose(np.array(out["actions"], np.float32), want, rtol=0, atol=1e-6)
    assert out["dtype"] == "float32"
    assert "Error in inference server" in out["error"] and "observation.state" in out["error"]
    # the same observation again is a new episode (openpi clients never say when one starts): the same answer
    np.testing.assert_allclose(np.array(out["again"], np.float32), want, rtol=0, atol=1e-6)
    assert out["timing"] == ["infer_ms", "prev_total_ms"]


CONVENTIONS_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from openpi_client import image_tools
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    libero_port, droid_port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rng = np.random.default_rng(7)
    saved = {}
    # openpi's LIBERO example: two views resized to 224x224 with image_tools, the 8-dim state, the prompt
    image, wrist = (rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(2))
    element = {
        "observation/image": image_tools.resize_with_pad(image, 224, 224),
        "observation/wrist_image": image_tools.resize_with_pad(wrist, 224, 224),
        "observation/state": rng.standard_normal(8),
        "prompt": "put the bowl on the plate",
    }
    libero = WebsocketClientPolicy("127.0.0.1", libero_port)
    saved["libero_actions"] = libero.infer(element)["actions"]
    saved["libero_state"] = element["observation/state"]
    for key, size in (("observation/image", (256, 256)), ("observation/wrist_image", (256, 256))):
        saved["libero_sent/" + key] = element[key]
        saved["libero_openpi_resized/" + key] = image_tools.resize_with_pad(element[key], *size)
    # openpi's DROID example: an exterior and the wrist view (720x1280 -> 224x224 with padding), joints, gripper
    exterior, wrist = (rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8) for _ in range(2))
    request = {
        "observation/exterior_image_1_left": image_tools.resize_with_pad(exterior, 224, 224),
        "observation/wrist_image_left": image_tools.resize_with_pad(wrist, 224, 224),
        "observation/joint_position": rng.standard_normal(7),
        "observation/gripper_position": np.array([0.4]),
        "prompt": "open the drawer",
    }
    droid = WebsocketClientPolicy("127.0.0.1", droid_port)
    saved["droid_actions"] = droid.infer(request)["actions"]
    for key in ("observation/exterior_image_1_left", "observation/wrist_image_left"):
        saved["droid_sent/" + key] = request[key]
        saved["droid_openpi_resized/" + key] = image_tools.resize_with_pad(request[key], 256, 320)
    np.savez(out, **saved)
    print("ok")
    """
)


class KeepingFactory:
    """Fake policies for an embodiment, kept after their connection closes (to read what reached them)."""

    def __init__(self, name: str) -> None:
        self.spec = get_embodiment(name)
        self.made: list[FakePolicy] = []

    def __call__(self) -> FakePolicy:
        self.made.append(FakePolicy.from_embodiment(self.spec))
        return self.made[-1]


def test_openpi_libero_and_droid_observations_are_served(tmp_path):
    libero, droid = KeepingFactory("libero-franka"), KeepingFactory("franka")
    with PolicyServer(libero, libero.spec, port=0).start() as a, PolicyServer(droid, droid.spec, port=0).start() as b:
        proc = subprocess.run([openpi_python(), "-c", CONVENTIONS_SCRIPT, str(a.port), str(b.port), str(tmp_path / "out.npz")],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = dict(np.load(tmp_path / "out.npz"))
    keys = {"libero": ("observation/image", "observation/wrist_image"),
            "droid": ("observation/exterior_image_1_left", "observation/wrist_image_left")}
    sizes = {"libero": (256, 256), "droid": (256, 320)}
    for side in ("libero", "droid"):
        for key in keys[side]:  # our resize is openpi's, pixel for pixel
            np.testing.assert_array_equal(resize_with_pad(out[f"{side}_sent/{key}"], *sizes[side]),
                                          out[f"{side}_openpi_resized/{key}"])
    # the actions came from the fake policy fed openpi's own resized frames (and, for LIBERO, the state)
    libero_frames = [out[f"libero_openpi_resized/{k}"] for k in keys["libero"]]
    want = fake_policy_actions(libero_frames, out["libero_state"], "put the bowl on the plate", rows=12, dim=7)
    np.testing.assert_allclose(out["libero_actions"], want, rtol=0, atol=1e-6)
    droid_frames = [out[f"droid_openpi_resized/{k}"] for k in keys["droid"]]
    want = fake_policy_actions(droid_frames, None, "open the drawer", rows=12, dim=8)  # DROID sends no franka state
    np.testing.assert_allclose(out["droid_actions"], want, rtol=0, atol=1e-6)


RUNTIME_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from openpi_client import action_chunk_broker, base_policy, websocket_client_policy
    from openpi_client.runtime import environment, runtime
    from openpi_client.runtime.agents import policy_agent

    class Table(environment.Environment):
        # a LIBERO-like scene: the same task every episode, 8 steps long
        def __init__(self):
            self.episodes, self.steps, self.rng = 0, 0, np.random.default_rng(3)
        def reset(self):
            self.episodes += 1
            self.steps = 0
        def is_episode_complete(self):
            return self.steps >= 8
        def get_observation(self):
            return {"observation/image": self.rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
                    "observation/wrist_image": self.rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
                    "observation/state": self.rng.standard_normal(8), "prompt": "put the bowl on the plate"}
        def apply_action(self, action):
            self.steps += 1

    class Lengths(base_policy.BasePolicy):
        # only watches: the reply lengths the openpi client received
        def __init__(self, inner):
            self.inner, self.rows = inner, []
        def infer(self, obs):
            out = self.inner.infer(obs)
            self.rows.append(len(out["actions"]))
            return out
        def reset(self):
            self.inner.reset()

    client = websocket_client_policy.WebsocketClientPolicy("127.0.0.1", int(sys.argv[1]))
    watched = Lengths(client)
    agent = policy_agent.PolicyAgent(action_chunk_broker.ActionChunkBroker(watched, action_horizon=4))
    env = Table()
    runtime.Runtime(env, agent, subscribers=[], num_episodes=2, max_episode_steps=8).run()
    print(json.dumps({"episodes": env.episodes, "rows": watched.rows, "meta": client.get_server_metadata()["action"]}))
    """
)


@pytest.mark.parametrize("openpi_history", [False, True])
def test_a_repeated_prompt_after_the_clients_reset_does_not_continue_the_old_history(openpi_history):
    """openpi's Runtime resets its agent between episodes, which sends nothing to the server. Two episodes with
    the same prompt, 8 steps each, a chunk every 4 steps: four requests."""
    factory = KeepingFactory("libero-franka")
    with PolicyServer(factory, factory.spec, port=0, openpi_history=openpi_history).start() as srv:
        proc = subprocess.run([openpi_python(), "-c", RUNTIME_SCRIPT, str(srv.port)], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["episodes"] == 3  # Runtime resets the environment once more after the last episode
    (policy,) = factory.made
    first, later = out["meta"]["rows_first_chunk"], out["meta"]["rows_later_chunks"]
    if not openpi_history:  # the rule: every plain request is an episode of its own
        assert policy.resets == ["put the bowl on the plate"] * 4
        assert out["rows"] == [first] * 4 == [12] * 4
    else:  # opting out shows what the rule prevents: episode 2 (request 3) continues episode 1's history
        assert policy.resets == ["put the bowl on the plate"]
        assert out["rows"] == [first, later, later, later] == [12, 16, 16, 16]
