"""Encoders: the embedded VAE and text encoder, the Wan2.2 VAE and umT5 wrappers (tiny random weights)."""

import numpy as np
import pytest
import torch

from lbva.config.data import DataConfig
from lbva.data.embedded_vae import EmbeddedVAE, EmbeddedVAEConfig, train_embedded_vae
from lbva.data.encoders import (
    EmbeddedTextEncoder,
    EmbeddedVideoEncoder,
    UMT5TextEncoder,
    WanVideoEncoder,
    build_text_encoder,
    build_video_encoder,
)
from lbva.data.synthetic import _render


def _frames(n=48, h=32, w=32, seed=0):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 1, size=(n, 2))
    colours = rng.integers(120, 256, size=(4, 3)).astype(np.float32)
    return np.stack([_render(h, w, p, colours[i % 4], 0.6 + 0.1 * (i % 4)) for i, p in enumerate(pos)])


@pytest.fixture(scope="module")
def trained_vae():
    torch.manual_seed(0)
    return train_embedded_vae(_frames(), steps=150, batch_size=16, lr=3e-3, progress=False), _frames()


# -- embedded text ------------------------------------------------------------------------------------------


def test_embedded_text_encoder_is_deterministic_and_distinguishes_texts():
    a = EmbeddedTextEncoder(dim=64, max_length=16, seed=3)
    b = EmbeddedTextEncoder(dim=64, max_length=16, seed=3)
    x = a.encode(["pick the cube", "place the cube"])
    assert x.shape == (2, 16, 64) and x.dtype == torch.float32
    torch.testing.assert_close(x, b.encode(["pick the cube", "place the cube"]), rtol=0, atol=0)
    assert (x[0] - x[1]).abs().max() > 1e-2
    assert a.fingerprint() == b.fingerprint()
    assert EmbeddedTextEncoder(dim=64, max_length=16, seed=4).fingerprint() != a.fingerprint()
    assert EmbeddedTextEncoder(dim=32, max_length=16, seed=3).fingerprint() != a.fingerprint()


def test_embedded_text_pads_with_zeros_after_the_prompt():
    enc = EmbeddedTextEncoder(dim=32, max_length=12, seed=0)
    x = enc.encode(["abc", ""])
    assert x[0, :3].abs().sum(-1).min() > 0  # 3 bytes -> 3 non-zero rows
    assert not x[0, 3:].any() and not x[1].any()


# -- embedded VAE -------------------------------------------------------------------------------------------


def test_embedded_vae_round_trip_within_tolerance(trained_vae):
    vae, frames = trained_vae
    enc = EmbeddedVideoEncoder(vae)
    z = enc.encode(frames[None])  # (1, C, T, h, w)
    assert z.shape == (1, 16, len(frames), 4, 4)
    back = enc.decode(z)
    assert back.dtype == torch.uint8 and back.shape == (1, *frames.shape)
    err = np.abs(back[0].numpy().astype(np.float32) - frames).mean()
    # an untrained VAE of the same shape, and a per-frame mean colour, are far worse
    untrained = EmbeddedVideoEncoder(_with_stats(EmbeddedVAE()))
    err0 = np.abs(untrained.decode(untrained.encode(frames[None]))[0].numpy().astype(np.float32) - frames).mean()
    mean_img = frames.astype(np.float32).mean(axis=(1, 2), keepdims=True)
    err_mean = np.abs(frames - mean_img).mean()
    assert err < 10.0, err  # grey levels out of 255
    assert err < 0.6 * err_mean and err < 0.2 * err0, (err, err_mean, err0)


def _with_stats(vae):
    vae.config.latents_mean = [0.0] * vae.config.latent_channels
    vae.config.latents_std = [1.0] * vae.config.latent_channels
    return vae


def test_embedded_latents_are_normalised_with_their_measured_stats(trained_vae):
    vae, frames = trained_vae
    z = EmbeddedVideoEncoder(vae).encode(frames[None])[0]  # (C, T, h, w)
    flat = z.transpose(0, 1).reshape(len(frames), 16, -1).transpose(0, 1).reshape(16, -1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(16), atol=1e-3, rtol=0)
    torch.testing.assert_close(flat.std(1), torch.ones(16), atol=1e-2, rtol=0)


def test_embedded_vae_save_load_gives_the_same_latents(trained_vae, tmp_path):
    vae, frames = trained_vae
    vae.save_pretrained(tmp_path / "vae")
    loaded = EmbeddedVAE.from_pretrained(tmp_path / "vae")
    a, b = EmbeddedVideoEncoder(vae), EmbeddedVideoEncoder(loaded)
    torch.testing.assert_close(a.encode(frames[None, :4]), b.encode(frames[None, :4]), rtol=0, atol=0)
    assert a.fingerprint() == b.fingerprint()
    assert (tmp_path / "vae" / "config.json").is_file() and (tmp_path / "vae" / "model.safetensors").is_file()


def test_embedded_vae_interface_values():
    enc = EmbeddedVideoEncoder(_with_stats(EmbeddedVAE(EmbeddedVAEConfig())))
    assert (enc.latent_channels, enc.spatial_stride, enc.temporal_stride) == (16, 8, 1)
    with pytest.raises(ValueError, match="uint8 frames"):
        enc.encode(np.zeros((1, 2, 16, 16, 3), np.float32))
    with pytest.raises(ValueError, match="multiple of"):
        enc.encode(np.zeros((1, 2, 12, 16, 3), np.uint8))


def test_build_video_encoder_needs_a_vae_for_embedded_and_a_path_for_wan():
    with pytest.raises(ValueError, match="embedded VAE"):
        build_video_encoder(DataConfig(encoder="embedded"))
    with pytest.raises(ValueError, match="vae_path"):
        build_video_encoder(DataConfig(encoder="wan2.2"))
    with pytest.raises(ValueError, match="text_encoder_path"):
        build_text_encoder(DataConfig(encoder="wan2.2"))
    assert isinstance(build_text_encoder(DataConfig()), EmbeddedTextEncoder)


# -- Wan2.2 VAE (tiny random config; the real one loads the same way) ---------------------------------------


@pytest.fixture(scope="module")
def tiny_wan(tmp_path_factory):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=8, z_dim=4, dim_mult=[1, 2, 2], num_res_blocks=1, attn_scales=[], temperal_downsample=[False, True],
        latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[0.5, 2.0, 1.0, 1.5],
        scale_factor_spatial=4, scale_factor_temporal=2,
    )
    path = tmp_path_factory.mktemp("wan") / "vae"
    vae.save_pretrained(path)
    return path, vae.eval()


def test_wan_encoder_normalises_the_posterior_mean_like_the_release(tiny_wan):
    path, vae = tiny_wan
    enc = build_video_encoder(DataConfig(encoder="wan2.2", vae_path=str(path)))
    assert isinstance(enc, WanVideoEncoder)
    assert (enc.latent_channels, enc.spatial_stride, enc.temporal_stride) == (4, 4, 2)
    frames = np.random.default_rng(0).integers(0, 256, size=(1, 5, 16, 16, 3), dtype=np.uint8)
    z = enc.encode(frames)
    assert z.shape == (1, 4, 3, 4, 4)  # T = 1 + 2*2 -> F = 3
    x = torch.from_numpy(frames).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
    with torch.no_grad():
        mu = vae.encode(x).latent_dist.mean
    mean = torch.tensor([0.1, -0.2, 0.3, 0.0]).view(1, 4, 1, 1, 1)
    std = torch.tensor([0.5, 2.0, 1.0, 1.5]).view(1, 4, 1, 1, 1)
    torch.testing.assert_close(z, (mu - mean) / std, rtol=1e-5, atol=1e-5)
    out = enc.decode(z)
    assert out.dtype == torch.uint8 and out.shape == (1, 5, 16, 16, 3)
    with pytest.raises(ValueError, match="1 \\+ 2k frames"):
        enc.encode(frames[:, :4])


def test_wan_fingerprint_follows_the_weights_folder(tiny_wan, tmp_path):
    from diffusers import AutoencoderKLWan

    path, _ = tiny_wan
    a = WanVideoEncoder(path).fingerprint()
    assert WanVideoEncoder(path).fingerprint() == a
    other = AutoencoderKLWan(
        base_dim=8, z_dim=4, dim_mult=[1, 2, 2], num_res_blocks=1, attn_scales=[], temperal_downsample=[False, True],
        latents_mean=[0.0] * 4, latents_std=[1.0] * 4, scale_factor_spatial=4, scale_factor_temporal=2,
    )
    other.save_pretrained(tmp_path / "vae2")
    assert WanVideoEncoder(tmp_path / "vae2").fingerprint() != a


def test_missing_wan_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        WanVideoEncoder(tmp_path)


# -- umT5 (tiny random model + a word-level tokenizer saved locally) ----------------------------------------


def test_umt5_encoder_pads_to_max_length_and_zeroes_padding(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    words = ["<pad>", "</s>", "<unk>", "pick", "the", "red", "cube", "place", "it"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>").save_pretrained(tmp_path)
    torch.manual_seed(0)
    model = UMT5EncoderModel(UMT5Config(vocab_size=len(words), d_model=16, num_layers=1, num_heads=2, d_kv=8, d_ff=32))
    model.save_pretrained(tmp_path)
    cfg = DataConfig(encoder="wan2.2", text_encoder_path=str(tmp_path), text_max_length=10)
    enc = build_text_encoder(cfg)
    assert isinstance(enc, UMT5TextEncoder) and enc.dim == 16
    out = enc.encode(["pick the red cube", "place it"])
    assert out.shape == (2, 10, 16)
    assert not out[0, 4:].any() and not out[1, 2:].any()
    ids = torch.tensor([[3, 4, 5, 6] + [0] * 6])
    mask = (ids > 0).long()
    with torch.no_grad():
        ref = model.eval()(ids, mask).last_hidden_state
    torch.testing.assert_close(out[0, :4], ref[0, :4], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("steps", [0, 1, 2, 3, 4, 5, 10, 11, 20])
def test_embedded_vae_trains_for_any_number_of_steps(steps):
    """OneCycleLR divided by zero for some short runs (10 steps: a one-step warm-up), which a quick
    `lbva prepare ... data.embedded_vae_steps=10` hit."""
    vae = train_embedded_vae(_frames(n=8, h=16, w=16), steps=steps, batch_size=4, progress=False)
    z = vae.encode(torch.zeros(1, 3, 1, 16, 16))
    assert torch.isfinite(z).all()
