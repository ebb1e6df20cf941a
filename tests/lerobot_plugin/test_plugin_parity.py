"""A chunk predicted through the LeRobot plugin equals lbva's own Policy on the same observations and weights.

The plugin runs on LeRobot's conventions (float CHW images in [0, 1], actions normalised by LeRobot's processors,
one ``select_action`` per control step); lbva's Policy is loaded from the lbva layout the plugin writes beside
LeRobot's files, with the robot's own embodiment and LeRobot's statistics converted to slot units. Equal actions
step by step across several chunks check the image conversion, the normalisation and slot mapping, the chunk
slicing and the keyframe feedback at once.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plugin_helpers import EMBODIMENT

CAM = "observation.images.corner"
TASK = "push the block left"


def lerobot_batch(frames: np.ndarray, task: str = TASK) -> dict:
    """uint8 frames (B, h, w, 3) as LeRobot's env loop hands them to a policy."""
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    return {CAM: images, "observation.state": torch.zeros(len(frames), 4), "task": [task] * len(frames)}


def frame_streams(rows: int, steps: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(steps, rows, 64, 64, 3), dtype=np.uint8)


def lbva_chunk(folder) -> int:
    """Actions in a full chunk (K·N) of the saved policy."""
    import json

    cfg = json.loads((folder / "config.json").read_text())
    return cfg["chunk_frames"] * cfg["actions_per_frame"]


def load_plugin(folder, **inference):
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot_policy_lbva import LBVAPolicy

    cfg = PreTrainedConfig.from_pretrained(folder, cli_overrides=[f"--inference.{k}={v}" for k, v in inference.items()])
    cfg.pretrained_path = folder
    policy = LBVAPolicy.from_pretrained(folder, config=cfg)
    pre, post = make_pre_post_processors(cfg, pretrained_path=str(folder))
    return policy, pre, post


def test_saved_folder_is_both_layouts(saved_folder):
    """LeRobot's files and lbva's policy layout side by side; lbva reads the robot and the statistics right."""
    import json

    from safetensors.torch import load_file

    from lbva.inference import load_policy

    names = {p.name for p in saved_folder.iterdir()}
    assert {"config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json",
            "lbva_policy.json", "transformer", "video_encoder", "text_encoder.safetensors"} <= names
    assert json.loads((saved_folder / "config.json").read_text())["type"] == "lbva"
    bundle = load_policy(saved_folder)
    assert bundle.embodiment == EMBODIMENT and bundle.config.model.layout == "mot"
    # LeRobot's q01/q99 (native units, in the postprocessor's state) become slot units: the raw dims copy, the
    # gripper maps through slot = (v - closed) / (open - closed) with closed = +1, open = -1 (metaworld-sawyer)
    state = load_file(str(next(saved_folder.glob("policy_postprocessor_step_*_unnormalizer_processor.safetensors"))))
    lo, hi = state["action.q01"].numpy(), state["action.q99"].numpy()
    np.testing.assert_allclose(bundle.stats.q01[[0, 1, 2]], lo[:3], rtol=0, atol=1e-6)
    np.testing.assert_allclose(bundle.stats.q99[[0, 1, 2]], hi[:3], rtol=0, atol=1e-6)
    np.testing.assert_allclose(bundle.stats.q01[28], (lo[3] - 1.0) / -2.0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(bundle.stats.q99[28], (hi[3] - 1.0) / -2.0, rtol=0, atol=1e-6)
    assert not bundle.stats.q01[3:28].any() and not bundle.stats.q99[3:28].any()


def test_select_action_equals_lbva_policy_over_several_chunks(saved_folder):
    """Step by step through three chunks (two feedbacks of real keyframes and executed actions)."""
    from lbva.inference import Policy

    plugin, pre, post = load_plugin(saved_folder)
    lbva = Policy.from_pretrained(saved_folder)
    K, N = lbva.K, lbva.N
    steps = (K - 1) * N + 2 * K * N  # chunk 0 has K-1 latent frames of actions, the next ones K
    frames = frame_streams(1, steps)
    plugin.reset()
    lbva.reset(TASK)
    for t in range(steps):
        ours = post(plugin.select_action(pre(lerobot_batch(frames[t]))))
        theirs = lbva.select_action({CAM: frames[t][0]})
        assert ours.shape == (1, 4)
        np.testing.assert_allclose(ours[0].numpy(), theirs, rtol=1e-5, atol=1e-5, err_msg=f"step {t}")
    assert len(lbva.stats.chunks) == 3


def test_batch_rows_are_independent_sessions(saved_folder):
    """Row i of a batched select_action is a session of its own, sampling with seed + i."""
    from lbva.inference import Policy

    plugin, pre, post = load_plugin(saved_folder)
    steps = 2 * lbva_chunk(saved_folder)
    frames = frame_streams(2, steps, seed=1)
    sessions = [Policy.from_pretrained(saved_folder, seed=i) for i in range(2)]
    for s in sessions:
        s.reset(TASK)
    plugin.reset()
    for t in range(steps):
        ours = post(plugin.select_action(pre(lerobot_batch(frames[t])))).numpy()
        for row, s in enumerate(sessions):
            np.testing.assert_allclose(ours[row], s.select_action({CAM: frames[t][row]}), rtol=1e-5, atol=1e-5)


def test_predict_action_chunk_equals_lbva_policy(saved_folder):
    """The first chunk of an episode, then the next one from an observation taken as the real last frame."""
    from lbva.inference import Policy

    plugin, pre, post = load_plugin(saved_folder)
    lbva = Policy.from_pretrained(saved_folder)
    frames = frame_streams(1, 2, seed=2)
    plugin.reset()
    lbva.reset(TASK)
    for t in range(2):
        ours = post(plugin.predict_action_chunk(pre(lerobot_batch(frames[t]))))
        theirs = lbva.predict_action_chunk({CAM: frames[t][0]})
        assert ours.shape == (1, *theirs.shape)
        np.testing.assert_allclose(ours[0].numpy(), theirs, rtol=1e-5, atol=1e-5)
    assert theirs.shape == (lbva.K * lbva.N, 4)


def test_async_mode_under_lerobot_inference_mode(saved_folder):
    """LeRobot's eval loop calls select_action inside torch.inference_mode; the naive async worker thread still
    writes its KV cache, and the actions equal lbva's own Policy in the same mode."""
    from lbva.inference import Policy

    plugin, pre, post = load_plugin(saved_folder, mode="naive_async")
    lbva = Policy.from_pretrained(saved_folder, mode="naive_async")
    steps = 3 * lbva_chunk(saved_folder)
    frames = frame_streams(1, steps, seed=3)
    plugin.reset()
    lbva.reset(TASK)
    for t in range(steps):
        with torch.inference_mode():
            ours = post(plugin.select_action(pre(lerobot_batch(frames[t]))))
        np.testing.assert_allclose(ours[0].numpy(), lbva.select_action({CAM: frames[t][0]}), rtol=1e-5, atol=1e-5)
    lbva.close()


def test_loading_is_strict(saved_folder, tmp_path):
    """A checkpoint missing a weight is refused rather than left at random initialisation."""
    import shutil

    from lerobot_policy_lbva import LBVAPolicy
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(saved_folder, broken)
    state = load_file(str(broken / "model.safetensors"))
    dropped = next(k for k in state if k.startswith("model."))
    del state[dropped]
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(RuntimeError, match="Missing key"):
        LBVAPolicy.from_pretrained(broken)


def test_an_empty_task_is_refused_with_the_fix(saved_folder):
    plugin, pre, _ = load_plugin(saved_folder)
    plugin.reset()
    with pytest.raises(ValueError, match=r"conditions on the task text.*--task="):
        plugin.select_action(pre(lerobot_batch(frame_streams(1, 1)[0], task="")))


def test_shared_layout_saved_lerobot_only_then_exported(dataset_meta, plugin_dataset, tmp_path):
    """The released (``shared``) layout trains, round-trips through LeRobot's folder; with ``export_lbva=false`` the
    folder is LeRobot's only, and ``export_lbva_policy`` writes the lbva folder afterwards, which predicts the same
    chunk."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot_policy_lbva import LBVAPolicy, export_lbva_policy
    from plugin_helpers import build_policy, training_batch

    from lbva.inference import Policy

    torch.manual_seed(1)
    policy, pre, post = build_policy(dataset_meta, **{"model.layout": "shared", "export_lbva": False})
    loss, _ = policy.forward(training_batch(policy, pre, plugin_dataset, [0, 45]))
    loss.backward()
    no_grad = {n for n, p in policy.model.named_parameters() if p.grad is None}
    # the released layout carries an action text embedder its forward never uses
    assert torch.isfinite(loss) and no_grad and all(n.startswith("condition_embedder_action.text_embedder.") for n in no_grad)
    policy.zero_grad()
    folder = tmp_path / "shared"
    for part in (policy, pre, post):
        part.save_pretrained(folder)
    assert not (folder / "lbva_policy.json").exists()
    loaded = LBVAPolicy.from_pretrained(folder)
    assert loaded.config.model.layout == "shared" and PreTrainedConfig.from_pretrained(folder).model.layout == "shared"
    for (name, a), (_, b) in zip(policy.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    out = export_lbva_policy(folder, tmp_path / "lbva")
    lbva = Policy.from_pretrained(out)
    assert lbva.model.arch.layout == "shared"
    plugin, pre, post = load_plugin(folder)
    frame = frame_streams(1, 1, seed=4)[0]
    plugin.reset()
    lbva.reset(TASK)
    ours = post(plugin.predict_action_chunk(pre(lerobot_batch(frame))))
    np.testing.assert_allclose(ours[0].numpy(), lbva.predict_action_chunk({CAM: frame[0]}), rtol=1e-5, atol=1e-5)
