"""One lbva Meta-World task behind gymnasium's ``Env`` interface, in the observation layout LeRobot's rollout reads.

``reset``/``step`` return ``{"pixels": {"corner": uint8 (h, w, 3)}, "agent_pos": float32 (4,)}`` (LeRobot maps them to
``observation.images.corner`` and ``observation.state``) and ``info["is_success"]`` (Meta-World's success flag,
which ends the episode); the step limit truncates it. ``task_description`` is the instruction lbva's Meta-World
plugin gives the task; ``render()`` returns the last camera frame.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class LbvaMetaWorldGymEnv(gym.Env):
    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(self, task: str, episode_length: int = 500, camera: str = "corner2", observation_height: int = 64,
                 observation_width: int = 64):
        from lbva_metaworld.env import MetaWorldEnv

        super().__init__()
        self._env = MetaWorldEnv(task, max_steps=episode_length, camera=camera, width=observation_width,
                                 height=observation_height)
        self.task = task
        self.task_description = self._env.instruction
        self._max_episode_steps = int(episode_length)  # LeRobot's rollout reads the step limit from here
        self.render_mode = "rgb_array"
        h, w = int(observation_height), int(observation_width)
        self.observation_space = spaces.Dict({
            "pixels": spaces.Dict({"corner": spaces.Box(0, 255, (h, w, 3), np.uint8)}),
            "agent_pos": spaces.Box(-np.inf, np.inf, (4,), np.float32),
        })
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self._frame = np.zeros((h, w, 3), np.uint8)

    def _format(self, obs) -> dict:
        from lbva_metaworld.env import CAMERA_KEY, STATE_KEY

        self._frame = np.asarray(obs[CAMERA_KEY])  # rendered now, before the simulator steps on
        return {"pixels": {"corner": self._frame}, "agent_pos": np.asarray(obs[STATE_KEY], np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self._format(self._env.reset(seed=seed)), {"is_success": False}

    def step(self, action):
        obs, reward, terminated, truncated, info = self._env.step(np.asarray(action, np.float32))
        return self._format(obs), reward, terminated, truncated, {"is_success": bool(info["success"]),
                                                                   "progress": float(info["progress"])}

    def render(self) -> np.ndarray:
        return self._frame.copy()

    def close(self) -> None:
        self._env.close()
