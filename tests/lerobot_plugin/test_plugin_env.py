"""``--env.type=lbva_metaworld``: lbva's Meta-World tasks as LeRobot vector envs.

LeRobot's rollout reads the env through ``preprocess_observation``; what comes out must be what lbva's own
Meta-World env shows for the same seed (so a policy trained on ``lbva collect`` data sees the same camera under
``lerobot-eval``), and Meta-World's success must reach LeRobot as ``is_success``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

CAM = "observation.images.corner"


@pytest.fixture
def envs():
    from lerobot_env_lbva_metaworld import LbvaMetaWorldEnvConfig

    cfg = LbvaMetaWorldEnvConfig(task="reach-v3", episode_length=120)
    made = cfg.create_envs(n_envs=1)
    yield cfg, made["metaworld"][0]
    made["metaworld"][0].close()


def test_features_map_onto_lbva_keys():
    from lerobot.envs.utils import env_to_policy_features
    from lerobot_env_lbva_metaworld import LbvaMetaWorldEnvConfig

    features = env_to_policy_features(LbvaMetaWorldEnvConfig(task="reach-v3"))
    assert {k: tuple(v.shape) for k, v in features.items()} == {"action": (4,), CAM: (3, 64, 64),
                                                                 "observation.state": (4,)}


def test_observations_equal_lbva_env_and_success_ends_the_episode(envs):
    """Same seed, same actions: LeRobot's view of the vector env equals lbva's Meta-World env frame for frame, and
    the scripted expert's success arrives as info['is_success'] with termination."""
    from lerobot.envs.utils import preprocess_observation

    from lbva.embodiment import get_env_factory

    _, vec = envs
    _, factory = get_env_factory("metaworld")
    lbva_env = factory("reach-v3", seed=0, max_steps=120)
    expert = factory.expert("reach-v3")
    obs, _ = vec.reset(seed=[7])
    ref = lbva_env.reset(seed=7)
    assert list(vec.call("task_description")) == [lbva_env.instruction] and vec.call("_max_episode_steps")[0] == 120
    success = False
    for step in range(120):
        ours = preprocess_observation(obs)
        img = (ours[CAM][0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        np.testing.assert_array_equal(img, ref[CAM], err_msg=f"step {step}")
        np.testing.assert_allclose(ours["observation.state"][0].numpy(), ref["observation.state"], atol=1e-6)
        action = expert.select_action(ref)
        obs, _, terminated, truncated, info = vec.step(action[None])
        ref, _, ref_done, _, ref_info = lbva_env.step(action)
        assert bool(info["is_success"][0]) == ref_info["success"]
        if terminated[0] or truncated[0]:
            success = bool(info["is_success"][0]) and bool(terminated[0])
            break
    lbva_env.close()
    assert success and ref_done


def test_step_limit_truncates():
    from lerobot_env_lbva_metaworld import LbvaMetaWorldEnvConfig

    made = LbvaMetaWorldEnvConfig(task="reach-v3", episode_length=3).create_envs(n_envs=1)["metaworld"][0]
    made.reset(seed=[0])
    for _ in range(3):
        _, _, terminated, truncated, info = made.step(np.zeros((1, 4), np.float32))
    assert truncated[0] and not terminated[0] and not info["is_success"][0]
    made.close()


def test_bad_values_name_the_field():
    from lerobot_env_lbva_metaworld import LbvaMetaWorldEnvConfig
    from lerobot_env_lbva_metaworld.config import EnvConfigError

    with pytest.raises(EnvConfigError, match=r"--env.episode_length=600 must be in 1..500"):
        LbvaMetaWorldEnvConfig(episode_length=600)
    with pytest.raises(ValueError, match=r"unknown Meta-World task 'reach-v9'.*valid tasks"):
        _ = LbvaMetaWorldEnvConfig(task="reach-v9").tasks
