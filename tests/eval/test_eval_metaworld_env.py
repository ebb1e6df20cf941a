"""The lbva-metaworld plugin: real Meta-World episodes through the registry (64x64 offscreen rendering)."""

import numpy as np
import pytest

from lbva.demo import DEFAULT_TASKS
from lbva.embodiment import get_embodiment, get_env_factory
from lbva.eval.env import RobotEnv, check_observation

# the demo's default tasks included: its collection and evaluation rely on their experts and progress scores
TASKS = list(dict.fromkeys(["reach-v3", "push-v3", "button-press-topdown-v3", "drawer-open-v3", "door-open-v3",
                            *DEFAULT_TASKS]))


def test_registered_for_the_sawyer_embodiment():
    embodiment, factory = get_env_factory("metaworld")
    assert embodiment == "metaworld-sawyer"
    assert callable(factory.expert)


@pytest.mark.parametrize("task", TASKS)
def test_short_episode_returns_proper_observations(task):
    spec = get_embodiment("metaworld-sawyer")
    _, factory = get_env_factory("metaworld")
    env = factory(task, seed=0)
    try:
        assert isinstance(env, RobotEnv) and env.task == task and env.instruction
        obs = env.reset(seed=1)
        for _ in range(3):
            check_observation(obs, spec)
            img = obs["observation.images.corner"]
            assert img.shape == (64, 64, 3) and img.dtype == np.uint8 and img.std() > 5  # a rendered scene
            state = obs["observation.state"]
            assert state.dtype == np.float32 and state.shape == (4,)
            # the state is hand xyz + gripper opening: the first 4 dims of Meta-World's own vector
            np.testing.assert_array_equal(state, obs["observation.environment_state"][:4])
            assert -0.6 < state[0] < 0.6 and 0.3 < state[1] < 1.0 and 0.0 < state[2] < 0.5
            obs, reward, terminated, truncated, info = env.step(np.array([0.0, 0.0, 0.5, -1.0], np.float32))
            assert isinstance(info["success"], bool) and 0.0 <= info["progress"] <= 1.0
            assert np.isfinite(reward) and not truncated
    finally:
        env.close()


def test_camera_is_rotated_upright_against_a_raw_mujoco_render():
    import mujoco

    _, factory = get_env_factory("metaworld")
    env = factory("reach-v3", seed=0, camera="corner")
    try:
        obs = env.reset(seed=0)
        raw_env = env._env
        r = mujoco.Renderer(raw_env.model, 64, 64)
        r.update_scene(raw_env.data, camera="corner")
        r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        raw = r.render()
        r.close()
        np.testing.assert_array_equal(obs["observation.images.corner"], raw[::-1, ::-1])
    finally:
        env.close()


def test_same_seed_same_scene_other_seed_other_goal():
    _, factory = get_env_factory("metaworld")
    env = factory("reach-v3", seed=0, render=False)
    try:
        a = env.reset(seed=5)["observation.environment_state"]
        b = env.reset(seed=6)["observation.environment_state"]
        c = env.reset(seed=5)["observation.environment_state"]
        np.testing.assert_array_equal(a, c)
        assert np.abs(a[-3:] - b[-3:]).max() > 1e-3  # the goal moved
    finally:
        env.close()


def test_expert_solves_reach_and_progress_tracks_the_distance():
    _, factory = get_env_factory("metaworld")
    env = factory("reach-v3", seed=0, render=False)
    expert = factory.expert("reach-v3")
    try:
        obs = env.reset(seed=3)
        hand0, goal = obs["observation.state"][:3].copy(), obs["observation.environment_state"][-3:].copy()
        d0 = float(np.linalg.norm(hand0 - goal))
        progress, info = [], {}
        for _ in range(env.max_steps):
            obs, _, terminated, truncated, info = env.step(expert.select_action(obs))
            progress.append(info["progress"])
            if not info["success"]:  # before success: 1 - d/d0 from the hand-goal distance (tcp vs hand: ~1 cm)
                d = float(np.linalg.norm(obs["observation.state"][:3] - goal))
                assert info["progress"] >= 1 - d / d0 - 0.15
            if terminated or truncated:
                break
        assert info["success"] is True and terminated and len(progress) < env.max_steps
        assert progress[-1] == 1.0 and all(b >= a for a, b in zip(progress, progress[1:]))  # a running best
        with pytest.raises(RuntimeError, match="reset"):
            env.step(np.zeros(4, np.float32))
    finally:
        env.close()


def test_bad_task_and_action_are_named():
    _, factory = get_env_factory("metaworld")
    with pytest.raises(ValueError, match="reach-v3"):
        factory("reach-v2", seed=0)
    env = factory("reach-v3", seed=0, render=False)
    try:
        env.reset(seed=0)
        with pytest.raises(ValueError, match=r"\(4,\)"):
            env.step(np.zeros(3))
        with pytest.raises(ValueError, match="non-finite"):
            env.step(np.array([np.nan, 0, 0, 0]))
    finally:
        env.close()


@pytest.mark.parametrize("task", TASKS)
def test_progress_starts_low_and_the_expert_completes_it(task):
    """Standing still makes (almost) no progress; the expert reaches success and progress 1 (no rendering)."""
    _, factory = get_env_factory("metaworld")
    env = factory(task, seed=0, render=False)
    expert = factory.expert(task)
    try:
        env.reset(seed=2)
        for _ in range(10):
            _, _, _, _, info = env.step(np.zeros(4, np.float32))
        assert info["progress"] < 0.2 and not info["success"]
        obs = env.reset(seed=2)
        progress = []
        for _ in range(env.max_steps):
            obs, _, terminated, truncated, info = env.step(expert.select_action(obs))
            progress.append(info["progress"])
            if terminated or truncated:
                break
        assert info["success"] and progress[-1] == 1.0
        assert progress[len(progress) // 4] < 1.0  # progress is earned along the way, not given at the start
    finally:
        env.close()


def test_camera_image_is_rendered_on_first_read_and_only_for_its_own_step():
    """Lazy rendering: a frame read late equals one read at once; unread frames cost no render; a frame never
    read before the env stepped on raises instead of showing the wrong state; copies and pickles are plain dicts."""
    import pickle

    from lbva_metaworld.env import CAMERA_KEY

    _, factory = get_env_factory("metaworld")
    eager, lazy = factory("reach-v3", seed=5), factory("reach-v3", seed=5)
    renders = []
    inner = lazy._frame
    lazy._frame = lambda: renders.append(1) or inner()

    def eager_step(a):  # every image read at once, as an eager renderer would
        obs = eager.step(a)[0]
        return obs, obs[CAMERA_KEY]

    try:
        e0, l0 = eager.reset(seed=5), lazy.reset(seed=5)
        e0_img = e0[CAMERA_KEY]
        assert renders == [] and CAMERA_KEY in l0 and len(l0) == len(e0)
        action = np.array([0.5, 0.3, -0.2, 0.0], np.float32)
        e1, e1_img = eager_step(action)
        lazy.step(action)
        with pytest.raises(RuntimeError, match="stepped"):
            l0[CAMERA_KEY]  # the state of the reset is gone
        eager_step(action), lazy.step(action)  # an observation nobody reads: no render
        assert renders == []
        assert not np.array_equal(e0_img, e1_img)  # the arm moved
        e3, e3_img = eager_step(action)
        l3 = lazy.step(action)[0]
        np.testing.assert_array_equal(l3[CAMERA_KEY], e3_img)
        assert len(renders) == 1
        plain = pickle.loads(pickle.dumps(l3))
        assert type(plain) is dict and set(plain) == set(e3) and np.array_equal(plain[CAMERA_KEY], e3_img)
        e4, e4_img = eager_step(action)
        copied = dict(lazy.step(action)[0])  # listing the keys renders first
        np.testing.assert_array_equal(copied[CAMERA_KEY], e4_img)
        assert len(renders) == 2
    finally:
        eager.close(), lazy.close()


@pytest.mark.parametrize("version, works", [("3.1.6", True), ("3.8.1", True), ("3.16.0", True), ("3.17.0", False),
                                            ("4.0.0", False)])
def test_a_mujoco_that_breaks_meta_world_is_named_with_the_fix(version, works):
    """mujoco 3.17 and 4.0 fail inside env.step with a bare numpy broadcast error; the plugin says what to do."""
    from lbva_metaworld.env import MujocoVersionError, check_mujoco

    if works:
        check_mujoco(version)
    else:
        with pytest.raises(MujocoVersionError, match=r"mujoco>=3.1,<3.17"):
            check_mujoco(version)


def test_the_plugin_distribution_pins_a_mujoco_that_works():
    """The dependency range the plugin declares admits no mujoco that check_mujoco refuses (3.17 / 4.0 broke it)."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    mujoco = next(Requirement(r) for r in requires("lbva-metaworld") if Requirement(r).name == "mujoco")
    assert not mujoco.specifier.contains("3.17.0") and not mujoco.specifier.contains("4.0.0")
    assert mujoco.specifier.contains("3.8.1")
