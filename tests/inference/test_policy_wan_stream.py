"""Closed loop with the Wan2.2 VAE: a causal encoder streamed chunk by chunk sees what training saw.

Axis legend: T video frames, F latent frames, C latent channels, h/w latent pixels.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch

from lbva.config import load_config
from lbva.data.encoders import EmbeddedTextEncoder, WanVideoEncoder
from lbva.embodiment import ActionStats, get_embodiment
from lbva.models import build_model

CAM = "observation.images.corner"


def _tiny_wan(path, stride):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    AutoencoderKLWan(
        base_dim=8, z_dim=4, dim_mult=[1, 2, 2], num_res_blocks=1, attn_scales=[],
        temperal_downsample=[False, True] if stride == 2 else [True, True],
        latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[0.5, 2.0, 1.0, 1.5],
        scale_factor_spatial=4, scale_factor_temporal=stride,
    ).save_pretrained(path)
    return WanVideoEncoder(path)


@pytest.fixture(scope="module", params=[2, 4])
def wan(request, tmp_path_factory):
    return _tiny_wan(tmp_path_factory.mktemp("wan") / "vae", request.param)


def test_streamed_encode_equals_whole_clip_encode(wan):
    s = wan.temporal_stride
    frames = np.random.default_rng(0).integers(0, 256, size=(1 + 2 * 4, 32, 32, 3), dtype=np.uint8)
    whole = wan.encode(frames[None])  # (1, C, F, h, w) through diffusers' own clip loop
    stream = wan.stream()
    parts = [stream.encode(frames[:1])]
    for i in range(1, len(frames), s):
        look = stream.encode(frames[i : i + s], commit=False)  # a look ahead leaves the state alone ...
        parts.append(stream.encode(frames[i : i + s]))
        torch.testing.assert_close(look, parts[-1], rtol=0, atol=0)  # ... so committing gives the same latents
    got = torch.cat(parts, 2)
    assert got.shape == whole.shape == (1, 4, 1 + 8 // s, 8, 8)
    torch.testing.assert_close(got, whole, rtol=1e-5, atol=1e-5)


def test_stream_refuses_frames_out_of_step(wan):
    frames = np.zeros((5, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="first frame alone"):
        wan.stream().encode(frames[:2])
    stream = wan.stream()
    stream.encode(frames[:1])
    with pytest.raises(ValueError, match=f"multiples of {wan.temporal_stride}"):
        stream.encode(frames[: wan.temporal_stride + 1])


@pytest.fixture(scope="module")
def wan_policy_parts(tmp_path_factory):
    wan = _tiny_wan(tmp_path_factory.mktemp("wanp") / "vae", 4)  # 4 frames per latent frame, as Wan2.2
    torch.manual_seed(0)
    cfg = load_config(None, ["model.size=tiny", "model.in_channels=4", "inference.video_steps=2",
                             "inference.action_steps=2", "inference.video_cfg=1.0", "inference.action_cfg=1.0"])
    model = build_model(cfg.model).eval()
    spec = get_embodiment("metaworld-sawyer")  # K = 2 latent frames per chunk, N = 4 actions per latent frame
    stats = ActionStats(q01=np.full(30, -1.0, np.float32), q99=np.full(30, 1.0, np.float32), source="test")
    return wan, cfg, model, spec, stats


def _policy(parts, mode):
    from lbva.inference import Policy

    wan, cfg, model, spec, stats = parts
    cfg = replace(cfg, inference=replace(cfg.inference, mode=mode))
    return Policy(model, spec, wan, EmbeddedTextEncoder(), cfg, stats=stats)


@pytest.mark.parametrize("mode", ["sync", "fdm_async"])
def test_closed_loop_history_holds_the_offline_encoding_of_every_frame_seen(wan_policy_parts, mode):
    """select_action takes a frame every N / stride actions (here every action); the real history equals the
    offline encoding of all those frames as one clip (diffusers' own clip loop)."""
    wan = wan_policy_parts[0]
    policy = _policy(wan_policy_parts, mode)
    assert policy.stride == 4 and policy.feedback_frames(0) == 4 and policy.feedback_frames(1) == 8
    frames = np.random.default_rng(1).integers(0, 256, size=(40, 64, 64, 3), dtype=np.uint8)
    policy.reset("reach the goal")
    seen = []
    steps = 4 + 8 + 1  # chunk 0 executes (K-1)·N = 4 actions, chunk 1 executes 8; one more step commits chunk 1
    for t in range(steps):
        policy.select_action({CAM: frames[t], "observation.state": np.zeros(4, np.float32)})
        seen.append(frames[t])  # the first frame conditions chunk 0; then one frame after each action
    policy.close()
    real = sorted((e for e in policy.predictor.session.entries() if e.modality == "video" and not e.imagined),
                  key=lambda e: e.chunk)
    assert [e.chunk for e in real] == [0, 1]
    history = torch.cat([e.value for e in real], 2)  # (1, C, 4, h, w)
    whole = wan.encode(np.stack(seen)[None])  # 1 + 3·4 frames -> 4 latent frames
    torch.testing.assert_close(history, whole, rtol=1e-5, atol=1e-5)


def test_observe_names_the_frame_count_a_causal_encoder_needs(wan_policy_parts):
    from lbva.inference.policy import PolicyError

    policy = _policy(wan_policy_parts, "sync")
    policy.reset("reach the goal")
    obs = {CAM: np.zeros((64, 64, 3), np.uint8), "observation.state": np.zeros(4, np.float32)}
    actions = policy.predict_action_chunk(obs)
    with pytest.raises(PolicyError, match=r"needs 4 frames \(4 per latent frame, one after every action\)"):
        policy.observe(np.zeros((1, 64, 64, 3), np.uint8), actions)


def test_actions_per_frame_must_be_a_multiple_of_the_temporal_stride(wan_policy_parts):
    from lbva.inference import Policy
    from lbva.inference.policy import PolicyError

    _, cfg, model, spec, stats = wan_policy_parts
    wan4 = wan_policy_parts[0]
    odd = replace(spec, actions_per_frame=6)
    with pytest.raises(PolicyError, match="6 actions per latent frame, not a multiple of the video encoder's temporal stride 4"):
        Policy(model, odd, wan4, EmbeddedTextEncoder(), cfg, stats=stats)


def test_latent_tiling_encodes_each_camera_on_its_own_stream(wan_policy_parts):
    """data.tile_space=latents (LeRobot's and the release's way): each camera has its own causal stream and
    its latents sit where the layout puts the view — here side by side, so the history is the two cameras'
    whole-clip encodings concatenated along the latent width."""
    from lbva.embodiment import CameraSpec
    from lbva.inference import Policy

    wan, cfg, model, spec, stats = wan_policy_parts
    two = replace(spec, cameras=(CameraSpec("observation.images.left", 32, 32), CameraSpec("observation.images.right", 32, 32)),
                  camera_layout="width_concat")
    cfg = replace(cfg, data=replace(cfg.data, tile_space="latents"))
    policy = Policy(model, two, wan, EmbeddedTextEncoder(), cfg, stats=stats)
    rng = np.random.default_rng(4)
    left = rng.integers(0, 256, size=(20, 32, 32, 3), dtype=np.uint8)
    right = rng.integers(0, 256, size=(20, 32, 32, 3), dtype=np.uint8)
    policy.reset("reach the goal")
    for t in range(4 + 8 + 1):
        policy.select_action({"observation.images.left": left[t], "observation.images.right": right[t]})
    policy.close()
    real = sorted((e for e in policy.predictor.session.entries() if e.modality == "video" and not e.imagined), key=lambda e: e.chunk)
    history = torch.cat([e.value for e in real], 2)  # (1, C, 4, 8, 16)
    want = torch.cat([wan.encode(left[None, :13]), wan.encode(right[None, :13])], dim=-1)
    torch.testing.assert_close(history, want, rtol=1e-5, atol=1e-5)
    # encoding the pixel-tiled frame instead gives other latents (the convolutions see across the seam)
    assert not torch.allclose(wan.encode(two.tile({"observation.images.left": left[None, :13],
                                                   "observation.images.right": right[None, :13]})), want, atol=1e-3)
