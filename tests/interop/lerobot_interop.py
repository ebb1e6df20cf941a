"""Shared pieces of the LeRobot interop tests: tiny models, tiny frozen encoders on disk, LeRobot folders.

Axis legend: B batch, C latent channels, K latent frames per chunk, h/w latent pixels, N actions per latent frame,
A = 30 action slots, Lt text tokens, Dt text width.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import torch

from lbva.embodiment import ActionStats

EMBODIMENT = "metaworld-sawyer"  # one 64×64 camera, K = 2, N = 4, native (dx, dy, dz, gripper) -> slots 0, 1, 2, 28
TINY = dict(num_layers=2, num_attention_heads=2, attention_head_dim=24, ffn_dim=96, text_dim=64, freq_dim=32)


def tiny_arch(in_channels: int = 16):
    from lbva.config.model import ArchConfig

    return ArchConfig(**TINY, in_channels=in_channels, layout="shared")


def tiny_model(seed: int = 0, in_channels: int = 16):
    """A tiny shared model with every parameter perturbed (norm weights and tables included), so a mis-mapped
    tensor cannot hide behind an identity initialisation."""
    from lbva.models.lingbot_va import LingBotVA

    torch.manual_seed(seed)
    model = LingBotVA(tiny_arch(in_channels)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def slot_stats(seed: int = 0) -> ActionStats:
    """Statistics on metaworld-sawyer's used slots (0, 1, 2, 28), zeros elsewhere."""
    rng = np.random.default_rng(seed)
    q01, q99 = np.zeros(30, np.float32), np.zeros(30, np.float32)
    for s in (0, 1, 2, 28):
        q01[s] = -rng.uniform(0.5, 1.5)
        q99[s] = rng.uniform(0.5, 1.5)
    return ActionStats(q01, q99, source="test stats")


def make_wan_root(root: Path, z_dim: int = 4, text_dim: int = 64) -> Path:
    """A tiny stand-in for LeRobot's ``wan_pretrained_path``: vae/ (AutoencoderKLWan, temporal stride 4),
    text_encoder/ (UMT5EncoderModel) and tokenizer/ (a small T5 Unigram vocabulary), all made here."""
    from diffusers import AutoencoderKLWan
    from transformers import T5TokenizerFast, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    AutoencoderKLWan(
        base_dim=8, z_dim=z_dim, dim_mult=[1, 2, 2], num_res_blocks=1, attn_scales=[], temperal_downsample=[True, True],
        latents_mean=[0.1 * i for i in range(z_dim)], latents_std=[1.0 + 0.1 * i for i in range(z_dim)],
        scale_factor_spatial=4, scale_factor_temporal=4,
    ).save_pretrained(root / "vae")
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(c, -3.0) for c in string.ascii_lowercase + string.digits] + [("▁" + c, -2.5) for c in string.ascii_lowercase]
    tok = T5TokenizerFast(vocab=vocab, extra_ids=0)
    tok.save_pretrained(root / "tokenizer")
    UMT5EncoderModel(UMT5Config(vocab_size=len(tok), d_model=text_dim, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                                relative_attention_num_buckets=8, relative_attention_max_distance=16,
                                dropout_rate=0.0)).save_pretrained(root / "text_encoder")
    return root


def lerobot_config(**overrides):
    """A tiny LeRobot LingBotVAConfig on metaworld-sawyer's camera and slots, fp32, CPU."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.lingbot_va import LingBotVAConfig

    fields = dict(
        **TINY, in_channels=16, out_channels=16, dtype="float32", device="cpu",
        obs_cam_keys=["observation.images.corner"], camera_layout="width_concat", height=64, width=64,
        action_per_frame=4, frame_chunk_size=2, used_action_channel_ids=[0, 1, 2, 28],
        num_inference_steps=3, action_num_inference_steps=4, attn_window=8,
        input_features={"observation.images.corner": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 64, 64))},
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(4,))},
    )
    fields.update(overrides)
    return LingBotVAConfig(**fields)


def save_lerobot_policy(out: Path, cfg=None, q01=None, q99=None, seed: int = 1):
    """A LeRobot-built, LeRobot-saved tiny lingbot_va folder (random weights, perturbed like :func:`tiny_model`)."""
    from lbva.bench.lerobot_chunk import save_random_lerobot_policy

    cfg = cfg or lerobot_config()
    n = len(cfg.used_action_channel_ids)
    q01 = torch.linspace(-1.0, -0.5, n) if q01 is None else torch.as_tensor(q01, dtype=torch.float32)
    q99 = torch.linspace(0.5, 2.0, n) if q99 is None else torch.as_tensor(q99, dtype=torch.float32)
    return save_random_lerobot_policy(out, cfg, q01, q99, seed)[0]
