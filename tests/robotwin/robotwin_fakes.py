"""Stand-ins for RoboTwin 2.0 (which cannot be installed here) and a scripted policy to serve.

``FakeTaskEnv`` mimics what ``script/eval_policy.py`` uses of a task env (``envs/_base_task.py``):
``get_obs()`` with RoboTwin's exact nesting and key names, ``take_action(action, action_type)``,
``take_action_cnt``, ``step_lim``, ``eval_success``, ``get_instruction()``. Its D435 cameras render 240×320.
"""

from __future__ import annotations

import threading

import numpy as np

from lbva_robotwin import deploy_policy

H, W = 240, 320  # RoboTwin's D435 camera (task_config/_camera_config.yml)


def robotwin_observation(t: int, episode: int = 0) -> dict:
    """An observation as RoboTwin's get_obs() builds it; every number depends on (t, episode)."""
    rng = np.random.default_rng(1000 * episode + t)
    cams = {}
    for name in ("head_camera", "right_camera", "left_camera"):  # RoboTwin's dict order is not ours
        cams[name] = {
            "intrinsic_cv": np.eye(3), "extrinsic_cv": np.zeros((3, 4)), "cam2world_gl": np.eye(4),
            "rgb": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        }
    left_q = rng.standard_normal(4)
    right_q = rng.standard_normal(4)
    left_arm = list(rng.uniform(-1, 1, 6))
    right_arm = list(rng.uniform(-1, 1, 6))
    lg, rg = float(rng.uniform()), float(rng.uniform())
    return {
        "observation": cams,
        "pointcloud": [],
        "joint_action": {
            "left_arm": left_arm, "left_gripper": lg, "right_arm": right_arm, "right_gripper": rg,
            "vector": np.array(left_arm + [lg] + right_arm + [rg]),
        },
        "endpose": {
            "left_endpose": list(rng.uniform(-0.5, 0.5, 3)) + list(left_q / np.linalg.norm(left_q)),
            "left_gripper": lg,
            "right_endpose": list(rng.uniform(-0.5, 0.5, 3)) + list(right_q / np.linalg.norm(right_q)),
            "right_gripper": rg,
        },
    }


class FakeTaskEnv:
    """Records take_action calls; succeeds after ``succeed_after`` actions (None: never)."""

    def __init__(self, instruction: str = "stack the bowls", step_lim: int = 100, succeed_after: int | None = None,
                 episode: int = 0):
        self.instruction = instruction
        self.step_lim = step_lim
        self.succeed_after = succeed_after
        self.episode = episode
        self.take_action_cnt = 0
        self.eval_success = False
        self.actions: list[tuple[np.ndarray, str]] = []
        self.obs_calls = 0

    def get_instruction(self):
        return self.instruction

    def get_obs(self) -> dict:
        self.obs_calls += 1
        return robotwin_observation(self.take_action_cnt, self.episode)

    def take_action(self, action, action_type="qpos"):
        if self.take_action_cnt == self.step_lim or self.eval_success:  # RoboTwin ignores these
            return
        self.actions.append((np.array(action, dtype=np.float64), action_type))
        self.take_action_cnt += 1
        if self.succeed_after is not None and self.take_action_cnt >= self.succeed_after:
            self.eval_success = True


def run_robotwin_episode(env: FakeTaskEnv, model) -> bool:
    """RoboTwin's eval_policy loop for one episode (reset_model, then eval until success or the limit)."""
    deploy_policy.reset_model(model)
    while env.take_action_cnt < env.step_lim:
        observation = env.get_obs()
        deploy_policy.eval(env, model, observation)
        if env.eval_success:
            return True
    return False


class ChunkPolicy:
    """A served policy returning scripted chunks — ``first`` for the first request of an episode, then ``later``
    cycling — and recording what reached it."""

    def __init__(self, first: np.ndarray, later: list[np.ndarray]):
        self.first = np.asarray(first, np.float32)
        self.later = [np.asarray(c, np.float32) for c in later]
        self.resets: list[str] = []
        self.observations: list[dict] = []
        self.feedback: list[tuple[dict, np.ndarray]] = []
        self.lock = threading.Lock()
        self._in_episode = 0

    def reset(self, prompt: str) -> None:
        self.resets.append(prompt)
        self._in_episode = 0

    def predict_action_chunk(self, observation):
        self.observations.append({k: (np.array(v) if not isinstance(v, str) else v) for k, v in observation.items()})
        self._in_episode += 1
        return self.first if self._in_episode == 1 else self.later[(self._in_episode - 2) % len(self.later)]

    def select_action(self, observation):
        raise NotImplementedError

    def observe(self, frames, executed_actions) -> None:
        self.feedback.append(({k: np.array(v) for k, v in frames.items()}, np.array(executed_actions)))


def relative_chunk(T: int = 32, seed: int = 0) -> np.ndarray:
    """(T, 16) relative actions: small offsets, unit (x, y, z, w) quaternions near identity, grippers in [0, 1]."""
    rng = np.random.default_rng(seed)
    out = np.zeros((T, 16), np.float32)
    for o in (0, 8):
        out[:, o : o + 3] = rng.uniform(-0.1, 0.1, (T, 3))
        q = np.concatenate([rng.normal(0, 0.2, (T, 3)), np.ones((T, 1))], axis=1)
        out[:, o + 3 : o + 7] = q / np.linalg.norm(q, axis=1, keepdims=True)
        out[:, o + 7] = rng.uniform(0, 1, T)
    return out
