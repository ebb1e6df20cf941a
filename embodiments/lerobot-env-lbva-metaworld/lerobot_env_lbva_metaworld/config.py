"""``--env.type=lbva_metaworld``: the config LeRobot parses, and the vector envs it asks for.

The observations are those lbva's Meta-World plugin gives (and ``lbva collect metaworld`` records): the
``corner2`` camera placed like LeRobot's own Meta-World env, rendered at 64×64 by default, as
``observation.images.corner``; the hand position and gripper opening as ``observation.state``. LeRobot's own
``--env.type=metaworld`` renders 480×480 for a fixed 500 steps and names its camera ``observation.image``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.utils.constants import ACTION, OBS_STATE

ENV_TYPE = "lbva_metaworld"
SUITE = "metaworld"
MAX_STEPS = 500  # Meta-World's episode limit
CAMERA_FEATURE = "pixels/corner"
STATE_FEATURE = "agent_pos"


class EnvConfigError(Exception):
    """An ``--env.*`` value that cannot work, naming it and what is allowed. Not a ``ValueError``: draccus replaces
    those, raised while it builds the config, by "Couldn't instantiate class", hiding the message."""


@EnvConfig.register_subclass(ENV_TYPE)
@dataclass
class LbvaMetaWorldEnvConfig(EnvConfig):
    """``task``: one Meta-World v3 task or several, comma-separated (``reach-v3,push-v3``); ``episode_length``:
    the step limit (at most 500); ``camera`` and ``observation_height`` / ``observation_width``: the rendered view."""

    task: str = "reach-v3"
    fps: int = 80  # Meta-World's control rate
    episode_length: int = MAX_STEPS
    camera: str = "corner2"
    observation_height: int = 64
    observation_width: int = 64
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if not 1 <= self.episode_length <= MAX_STEPS:
            raise EnvConfigError(f"--env.episode_length={self.episode_length} must be in 1..{MAX_STEPS} (Meta-World's limit)")
        if self.observation_height < 1 or self.observation_width < 1:
            raise EnvConfigError(f"--env.observation_height/width must be positive; got "
                             f"{self.observation_height}x{self.observation_width}")
        self.features = {
            ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(4,)),
            CAMERA_FEATURE: PolicyFeature(type=FeatureType.VISUAL,
                                          shape=(self.observation_height, self.observation_width, 3)),
            STATE_FEATURE: PolicyFeature(type=FeatureType.STATE, shape=(4,)),
        }
        from lbva_metaworld.env import CAMERA_KEY

        self.features_map = {ACTION: ACTION, CAMERA_FEATURE: CAMERA_KEY, STATE_FEATURE: OBS_STATE}

    @property
    def tasks(self) -> list[str]:
        from lbva_metaworld.env import check_task

        names = [t.strip() for t in self.task.split(",") if t.strip()]
        if not names:
            raise ValueError("--env.task is empty; name a Meta-World v3 task, e.g. reach-v3")
        return [check_task(t) for t in names]

    @property
    def gym_kwargs(self) -> dict:
        return {"episode_length": self.episode_length, "camera": self.camera,
                "observation_height": self.observation_height, "observation_width": self.observation_width}

    def create_envs(self, n_envs: int, use_async_envs: bool = False):
        """``{"metaworld": {task_index: VectorEnv of n_envs copies}}``, one entry per task."""
        import gymnasium as gym
        from lerobot.envs.utils import freeze_after_episode_end

        from lerobot_env_lbva_metaworld.env import LbvaMetaWorldGymEnv

        if n_envs < 1:
            raise ValueError(f"n_envs must be at least 1; got {n_envs}")
        out = {}
        for index, task in enumerate(self.tasks):
            make = [freeze_after_episode_end(lambda t=task: LbvaMetaWorldGymEnv(t, **self.gym_kwargs))
                    for _ in range(n_envs)]
            if use_async_envs and n_envs > 1:
                out[index] = gym.vector.AsyncVectorEnv(make, context="forkserver")
            else:
                out[index] = gym.vector.SyncVectorEnv(make)
        return {SUITE: out}
