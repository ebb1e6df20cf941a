"""The RoboTwin policy adapter end to end: RoboTwin's eval loop (a stand-in TASK_ENV with RoboTwin's observation
structure) -> lbva_robotwin.deploy_policy -> a real websocket ``lbva serve`` (in-process PolicyServer) -> back."""

import importlib
import sys

import numpy as np
import pytest
from robotwin_fakes import FakeTaskEnv, relative_chunk, robotwin_observation, run_robotwin_episode
from scipy.spatial.transform import Rotation

from lbva_robotwin import convert as C
from lbva_robotwin import deploy_policy
from lbva_robotwin.checkout import RoboTwinCheckoutError, check_checkout
from lbva_robotwin.install import install

CAMS = {"head_camera": ("observation.images.cam_high", (256, 320)),
        "left_camera": ("observation.images.cam_left_wrist", (128, 160)),
        "right_camera": ("observation.images.cam_right_wrist", (128, 160))}


def expected_command(rel, init):
    """The released client's add_init_pose with scipy, then RoboTwin's gripper range."""
    out = []
    for o in (0, 8):
        q = (Rotation.from_quat(init[o + 3 : o + 7]) * Rotation.from_quat(rel[o + 3 : o + 7])).as_quat()
        out += [rel[o : o + 3] + init[o : o + 3], q / np.linalg.norm(q), [np.clip(rel[o + 7], 0, 1)]]
    return np.concatenate(out)


def model_for(port, **kw):
    return deploy_policy.get_model({"policy_name": "lbva_policy", "task_name": "t", "seed": 0, "port": port, **kw})


def test_one_episode_round_trip(served):
    chunk0, chunk1 = relative_chunk(16, 0), relative_chunk(32, 1)  # an episode's first chunk is one latent frame shorter
    port, policies = served(chunk0, [chunk1])
    model = model_for(port)
    env = FakeTaskEnv("stack the bowls", step_lim=48)
    first = robotwin_observation(0)
    assert run_robotwin_episode(env, model) is False
    policy = policies[0]
    assert policy.resets == ["stack the bowls"]
    # the two chunks (16 + 32) fill the 48-step limit; every command is an 'ee' command composed with the first end pose
    assert len(env.actions) == 48 and {t for _, t in env.actions} == {"ee"}
    init = C.end_poses(first)
    sent = np.concatenate([chunk0, chunk1])
    for t, (cmd, _) in enumerate(env.actions):
        np.testing.assert_allclose(cmd, expected_command(sent[t].astype(np.float64), init), atol=1e-6)
    # the server saw RoboTwin's cameras under lbva's keys at the served sizes, the joint vector and the prompt
    assert len(policy.observations) == 2
    seen = policy.observations[0]
    for cam, (key, size) in CAMS.items():
        assert seen[key].shape == (*size, 3) and seen[key].dtype == np.uint8
        np.testing.assert_array_equal(seen[key], C.resize_bilinear(first["observation"][cam]["rgb"], *size))
    np.testing.assert_allclose(seen["observation.state"], first["joint_action"]["vector"], rtol=1e-6)
    assert seen["prompt"] == "stack the bowls"
    np.testing.assert_allclose(policy.observations[1]["observation.state"], robotwin_observation(16)["joint_action"]["vector"], rtol=1e-6)
    # after each full chunk: the executed native actions and one keyframe per 16 actions (after the 16th, 32nd, 48th)
    assert len(policy.feedback) == 2
    for (frames, executed), chunk, steps in zip(policy.feedback, (chunk0, chunk1), ((16,), (32, 48))):
        np.testing.assert_allclose(executed, chunk, rtol=0, atol=0)
        for cam, (key, size) in CAMS.items():
            assert frames[key].shape == (len(steps), *size, 3)
            for i, t in enumerate(steps):
                np.testing.assert_array_equal(frames[key][i], C.resize_bilinear(robotwin_observation(t)["observation"][cam]["rgb"], *size))
    model.close()


def test_keyframe_interval_follows_the_servers_feedback_metadata(served):
    """A policy with the Wan VAE takes 4 frames per latent frame: the server says so, the adapter obeys."""
    port, policies = served(metadata={"feedback": {"frame_every_actions": 4}})
    model = model_for(port)
    run_robotwin_episode(FakeTaskEnv("stack the bowls", step_lim=16), model)
    frames, executed = policies[0].feedback[0]
    key, size = CAMS["head_camera"]
    assert frames[key].shape == (4, *size, 3) and executed.shape == (16, 16)
    for i, t in enumerate(range(4, 17, 4)):
        np.testing.assert_array_equal(frames[key][i], C.resize_bilinear(robotwin_observation(t)["observation"]["head_camera"]["rgb"], *size))
    model.close()


def test_reset_model_starts_a_new_session_and_a_new_initial_pose(served):
    first = relative_chunk(16, 3)
    port, policies = served(first)
    model = model_for(port)
    env1 = FakeTaskEnv("first task", step_lim=100, succeed_after=10, episode=0)
    assert run_robotwin_episode(env1, model) is True
    assert len(env1.actions) == 10  # stopped at success, mid-chunk
    assert policies[0].feedback == []  # a cut chunk is not fed back
    env2 = FakeTaskEnv("first task", step_lim=10, episode=1)  # the same instruction again: still a new episode
    run_robotwin_episode(env2, model)
    assert policies[0].resets == ["first task", "first task"]
    assert len(policies[0].observations) == 2  # the leftover 6 actions of episode 1 were dropped: a new chunk
    init2 = C.end_poses(robotwin_observation(0, episode=1))
    assert len(env2.actions) == 10
    for t, (cmd, _) in enumerate(env2.actions):  # the new episode's first chunk, from its own initial pose
        np.testing.assert_allclose(cmd, expected_command(first[t].astype(np.float64), init2), atol=1e-6)
    model.close()


def test_actions_per_call_limits_each_eval(served):
    port, policies = served()
    model = model_for(port, actions_per_call=5)
    env = FakeTaskEnv(step_lim=100)
    deploy_policy.reset_model(model)
    counts = []
    for _ in range(8):
        before = env.take_action_cnt
        deploy_policy.eval(env, model, env.get_obs())
        counts.append(env.take_action_cnt - before)
    assert counts == [5, 5, 5, 1, 5, 5, 5, 5]  # the first chunk of 16 runs out after 3×5 + 1; then one of 32
    assert len(policies[0].observations) == 2 and len(policies[0].feedback) == 1
    model.close()


def test_feedback_reports_the_grippers_robotwin_received(served):
    chunk = relative_chunk(16, 4)
    chunk[:, 7] = np.linspace(-0.5, 1.5, 16)
    port, policies = served(chunk)
    model = model_for(port)
    run_robotwin_episode(FakeTaskEnv(step_lim=16), model)
    _, executed = policies[0].feedback[0]
    np.testing.assert_allclose(executed[:, 7], np.clip(np.linspace(-0.5, 1.5, 16), 0, 1), atol=1e-6)
    np.testing.assert_array_equal(np.delete(executed, [7], axis=1), np.delete(chunk, [7], axis=1))
    model.close()


def test_absolute_mode_sends_wxyz(served):
    rng = np.random.default_rng(8)
    chunk = rng.standard_normal((16, 16)).astype(np.float32)
    chunk[:, [7, 15]] = rng.uniform(0, 1, (16, 2))
    port, _ = served(chunk)
    model = model_for(port, pose_mode="absolute")
    env = FakeTaskEnv(step_lim=16)
    run_robotwin_episode(env, model)
    for t, (cmd, _) in enumerate(env.actions):
        for o in (0, 8):
            np.testing.assert_allclose(cmd[o : o + 3], chunk[t, o : o + 3], rtol=1e-6)
            xyzw = Rotation.from_quat(chunk[t, o + 3 : o + 7].astype(np.float64)).as_quat()
            np.testing.assert_allclose(abs(np.dot(cmd[o + 3 : o + 7], [xyzw[3], *xyzw[:3]])), 1.0, atol=1e-6)
    model.close()


def test_feedback_off_for_openpi_servers(served):
    port, policies = served()
    model = model_for(port, feedback=False)
    run_robotwin_episode(FakeTaskEnv(step_lim=48), model)
    assert policies[0].feedback == [] and len(policies[0].observations) == 2
    model.close()


def test_wrong_embodiment_and_bad_settings_are_refused(served):
    port, _ = served(embodiment="aloha")
    with pytest.raises(ValueError, match=r"serves 'aloha', not 'robotwin-aloha-agilex'.*--embodiment robotwin-aloha-agilex"):
        model_for(port)
    port, _ = served()
    with pytest.raises(ValueError, match="pose_mode 'delta'"):
        model_for(port, pose_mode="delta")
    with pytest.raises(ValueError, match="actions_per_call must be >= 1"):
        model_for(port, actions_per_call=0)


def test_a_broken_observation_fails_before_anything_moves(served):
    port, policies = served()
    model = model_for(port)
    env = FakeTaskEnv()
    obs = env.get_obs()
    del obs["endpose"]
    deploy_policy.reset_model(model)
    with pytest.raises(C.RoboTwinFormatError, match=r"\['endpose'\] is missing"):
        deploy_policy.eval(env, model, obs)
    obs = env.get_obs()
    obs["observation"]["left_camera"].pop("rgb")
    with pytest.raises(C.RoboTwinFormatError, match=r"\['left_camera'\]\['rgb'\] is missing"):
        deploy_policy.eval(env, model, obs)
    assert env.actions == [] and policies[0].observations == []
    model.close()


def stable_checkout(root, branch="stable_2.0"):
    """The files of RoboTwin stable_2.0 that install and evaluate look for (empty stand-ins), on ``branch``."""
    for rel in ("script/eval_policy.py", "script/test_render.py", "description/utils/generate_episode_instructions.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    for rel in ("policy", "envs", "task_config"):
        (root / rel).mkdir(exist_ok=True)
    if branch is not None:
        (root / ".git").mkdir(exist_ok=True)
        (root / ".git" / "HEAD").write_text(f"ref: refs/heads/{branch}\n")
    return root


def test_install_writes_a_policy_folder_robotwin_can_import(tmp_path, monkeypatch):
    root = stable_checkout(tmp_path / "RoboTwin")
    folder = install(root)
    assert sorted(p.name for p in folder.iterdir()) == ["__init__.py", "deploy_policy.py", "deploy_policy.yml", "eval.sh"]
    import yaml

    cfg = yaml.safe_load((folder / "deploy_policy.yml").read_text())
    assert cfg["pose_mode"] == "relative" and cfg["port"] == 8000 and "policy_name" in cfg
    assert cfg["protocol"] == "lingbot-va" and cfg["instruction_type"] is None  # the paper's protocol by default
    assert "python -m lbva_robotwin.evaluate --config policy/$policy_name/deploy_policy.yml" in (folder / "eval.sh").read_text()
    # RoboTwin: sys.path.append("./policy"); importlib.import_module(policy_name); getattr(module, "get_model")
    monkeypatch.setattr(sys, "path", sys.path + [str(root / "policy")])
    monkeypatch.delitem(sys.modules, "lbva_policy", raising=False)
    try:
        mod = importlib.import_module("lbva_policy")
    finally:
        sys.modules.pop("lbva_policy", None)  # later tests install into other folders
    assert mod.__file__ == str(folder / "__init__.py")
    assert mod.get_model is deploy_policy.get_model and mod.eval is deploy_policy.eval
    assert mod.reset_model is deploy_policy.reset_model
    with pytest.raises(FileExistsError, match="--overwrite"):
        install(root)
    with pytest.raises(ValueError, match="'lbva' is already an importable module"):
        install(root, name="lbva", overwrite=True)  # RoboTwin would import the lbva library, which has no get_model


def test_install_tells_how_to_get_the_supported_branch(tmp_path, caplog):
    main = tmp_path / "main"  # RoboTwin's current main: XPolicyLab and scripts/eval_policy_*.py, no script/
    (main / "scripts").mkdir(parents=True)
    (main / "scripts" / "eval_policy_xpolicylab.py").write_text("")
    (main / "XPolicyLab").mkdir()
    (main / ".git").mkdir()
    (main / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    with pytest.raises(RoboTwinCheckoutError,
                       match=rf"git branch 'main'.*script/eval_policy\.py.*`git -C {main} checkout stable_2\.0`"):
        install(main)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RoboTwinCheckoutError, match=r"not a RoboTwin 2\.0 checkout.*git clone -b stable_2\.0"):
        install(tmp_path / "empty")
    with pytest.raises(RoboTwinCheckoutError, match="is not a folder"):
        install(tmp_path / "nowhere")
    # a worktree (".git" is a file) of the supported branch installs; another branch with the files warns
    wt = stable_checkout(tmp_path / "wt", branch=None)
    (tmp_path / "gitdir").mkdir()
    (tmp_path / "gitdir" / "HEAD").write_text("ref: refs/heads/stable_2.0\n")
    (wt / ".git").write_text(f"gitdir: {tmp_path / 'gitdir'}\n")
    assert check_checkout(wt).branch == "stable_2.0"
    mine = stable_checkout(tmp_path / "mine", branch="my-fixes")
    with caplog.at_level("WARNING"):
        install(mine)
    assert "on branch 'my-fixes', not stable_2.0" in caplog.text and f"git -C {mine} checkout stable_2.0" in caplog.text


def test_default_sizes_are_the_embodiments():
    """The adapter's fallbacks (for servers that do not say) are lbva's robotwin-aloha-agilex, which it cannot import."""
    from lbva.embodiment import get_embodiment

    spec = get_embodiment("robotwin-aloha-agilex")
    assert C.CAMERA_SIZES == {c.key: (c.height, c.width) for c in spec.cameras}
    assert C.ACTIONS_PER_FRAME == spec.actions_per_frame
    assert set(C.CAMERAS.values()) == set(C.CAMERA_SIZES)


def test_a_direct_robotwin_run_without_the_protocol_is_refused(served):
    port, _ = served()
    with pytest.raises(ValueError, match="instruction_type is null.*eval.sh"):
        model_for(port, instruction_type=None)
