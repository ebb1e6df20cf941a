"""Training inside LeRobot: a LeRobot batch becomes exactly the window lbva trains on.

The reference is computed here from the dataset's own rows: for a window starting at row g, the video frames at
rows g, g + τ, g + 2τ, … (τ = N / s), the actions of rows g … g + (F − 1)·N − 1 normalised with the dataset's
q01/q99 and placed in the embodiment's slots from latent frame 1 on (frame 0 conditions), the task embedded by a
freshly built text encoder.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plugin_helpers import REPO_ID, build_policy, training_batch

CAM = "observation.images.corner"
SLOTS = [0, 1, 2, 28]  # metaworld-sawyer: dx, dy, dz, gripper
STARTS = [3, 40 + 11]  # a window in episode 0 and one in episode 1 (40 frames each)


@pytest.fixture(scope="module")
def embedded(dataset_meta):
    torch.manual_seed(0)
    return build_policy(dataset_meta)


def _tiny_wan_vae(path):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    AutoencoderKLWan(
        base_dim=8, z_dim=4, dim_mult=[1, 2, 2], num_res_blocks=1, attn_scales=[], temperal_downsample=[True, True],
        latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[0.5, 2.0, 1.0, 1.5], scale_factor_spatial=4,
        scale_factor_temporal=4,
    ).save_pretrained(path)
    return path


def _reference(root, starts, F, N, stride, encode):
    """(video, actions, mask) for windows starting at ``starts``, from the dataset's rows."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata

    plain = LeRobotDataset(REPO_ID, root=root)
    stats = LeRobotDatasetMetadata(REPO_ID, root=root).stats["action"]
    q01, q99 = np.asarray(stats["q01"], np.float64), np.asarray(stats["q99"], np.float64)
    rows = np.stack(plain.hf_dataset["action"])  # (frames, 4) native, every episode in order
    tau = N // stride
    videos, actions, masks = [], [], []
    for g in starts:
        frames = np.stack([(plain[g + j * tau][CAM].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                           for j in range((F - 1) * stride + 1)])
        videos.append(encode(frames[None])[0])
        a = np.zeros((F, N, 30), np.float32)
        a[1:, :, SLOTS] = (2 * (rows[g : g + (F - 1) * N] - q01) / (q99 - q01) - 1).reshape(F - 1, N, 4)
        m = np.zeros((F, N, 30), bool)
        m[1:, :, SLOTS] = True
        actions.append(a)
        masks.append(m)
    return torch.stack(videos), torch.from_numpy(np.stack(actions)), torch.from_numpy(np.stack(masks))


def test_embedded_vae_windows_match_the_dataset_rows(embedded, plugin_dataset):
    from lbva.data.encoders import EmbeddedTextEncoder, EmbeddedVideoEncoder

    policy, pre, _ = embedded
    cfg = policy.config
    F, N = cfg.data.window_frames, cfg.actions_per_frame
    assert cfg.observation_delta_indices == [N * f for f in range(F)]  # one frame per latent frame (stride 1)
    got = policy.training_inputs(training_batch(policy, pre, plugin_dataset, STARTS))
    video, actions, mask = _reference(plugin_dataset, STARTS, F, N, 1, EmbeddedVideoEncoder(policy.video_vae).encode)
    torch.testing.assert_close(got["video"], video, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["actions"], actions, rtol=1e-4, atol=1e-5)
    assert torch.equal(got["action_mask"], mask)
    tasks = ["push the block left", "push the block right"]  # the synthetic dataset alternates them per episode
    d = cfg.data
    want_text = EmbeddedTextEncoder(d.embedded_text_dim, d.embedded_text_max_length, d.embedded_text_seed).encode(tasks)
    torch.testing.assert_close(got["text"], want_text, rtol=1e-5, atol=1e-6)
    assert got["chunk_size"] in cfg.data.chunk_sizes


def test_wan_vae_clips_match_the_dataset_rows(dataset_meta, plugin_dataset, tmp_path):
    """With the Wan2.2 VAE (temporal stride 4) a window of F latent frames is a clip of (F − 1)·4 + 1 frames."""
    from lbva.data.encoders import WanVideoEncoder

    vae = _tiny_wan_vae(tmp_path / "vae")
    policy, pre, _ = build_policy(dataset_meta, **{"data.encoder": "wan2.2", "data.vae_path": str(vae),
                                                  "data.text_encoder": "embedded", "embedded_vae.hidden": None})
    cfg = policy.config
    F, N = cfg.data.window_frames, cfg.actions_per_frame
    assert cfg.observation_delta_indices == list(range((F - 1) * N + 1))  # τ = N / 4 = 1 row per video frame
    assert policy.video_vae is None and cfg.model.in_channels == 4
    got = policy.training_inputs(training_batch(policy, pre, plugin_dataset, STARTS))
    video, actions, _ = _reference(plugin_dataset, STARTS, F, N, 4, WanVideoEncoder(vae).encode)
    assert got["video"].shape == (2, 4, F, 16, 16)
    torch.testing.assert_close(got["video"], video, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got["actions"], actions, rtol=1e-4, atol=1e-5)
    loss, terms = policy.forward(training_batch(policy, pre, plugin_dataset, STARTS))
    assert torch.isfinite(loss) and set(terms) == {"loss_dyn", "loss_inv"}


def test_loss_trains_the_world_model_only(embedded, plugin_dataset):
    """The loss reaches every world-model parameter and no encoder one; the optimiser gets the model's."""
    policy, pre, _ = embedded
    policy.train()
    policy.zero_grad()
    loss, terms = policy.forward(training_batch(policy, pre, plugin_dataset, STARTS))
    loss.backward()
    assert torch.isfinite(loss) and set(terms) == {"loss_dyn", "loss_inv"}
    assert all(p.grad is None for p in policy.video_vae.parameters())
    assert all(p.grad is None for p in policy.text_net.parameters())
    optimised = {id(p) for group in policy.get_optim_params() for p in group["params"]}
    assert optimised == {id(p) for p in policy.model.parameters()}
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.model.parameters())
    policy.zero_grad()
    policy.eval()


def test_padded_windows_are_refused(embedded, plugin_dataset):
    """A window running past an episode's end (LeRobot pads it) is an error naming the fix, not silent padding."""
    policy, pre, _ = embedded
    assert policy.config.drop_n_last_frames == (policy.config.data.window_frames - 1) * policy.config.actions_per_frame
    with pytest.raises(ValueError, match="padded frames past an episode's end"):
        policy.forward(training_batch(policy, pre, plugin_dataset, [39]))
