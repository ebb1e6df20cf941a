"""Data section: the dataset, the encoders that turn it into cached latents, how training chunks are sampled."""

from __future__ import annotations

from dataclasses import dataclass

from lbva.config.base import bounded, choice, documented


@dataclass
class MixtureEntry:
    """One prepared cache of a mixture (``data.mixture``)."""

    path: str = documented("", doc="latent cache written by `lbva prepare`")
    weight: float = documented(1.0, doc="share of the draws: weight / sum of the mixture's weights (> 0)")
    embodiment: str | None = documented(
        None, doc="embodiment the cache was built for (checked against it); default: embodiment.name"
    )


@dataclass
class DataConfig:
    # -- where things are ------------------------------------------------------------------------------------
    dataset: str | None = documented(None, doc="local LeRobot dataset root (meta/info.json inside)")
    cache_dir: str | None = documented(None, doc="latent cache written by `lbva prepare` (default DATASET/lbva_cache)")
    mixture: list[MixtureEntry] = documented(
        factory=list, doc="several caches trained together instead of cache_dir/dataset, each drawn by its weight: "
                          "[{path: CACHE, weight: W, embodiment: NAME}, ...]"
    )
    key_map: dict[str, str] = documented(
        factory=dict, doc="dataset key -> embodiment key, for datasets that name a camera/state/action otherwise "
                          "(LeRobot's single-camera observation.image is found without it)"
    )

    # -- encoders ----------------------------------------------------------------------------------------------
    encoder: str = choice("embedded", "embedded", "wan2.2", doc="video encoder: small built-in VAE or the Wan2.2 VAE")
    text_encoder: str = choice(
        "auto", "auto", "embedded", "umt5", doc="text encoder; auto = embedded for the embedded VAE, umt5 for wan2.2"
    )
    vae_path: str | None = documented(
        None, doc="wan2.2: local AutoencoderKLWan folder; embedded: a trained embedded VAE (default: train one)"
    )
    text_encoder_path: str | None = documented(None, doc="umt5: local UMT5EncoderModel folder")
    tokenizer_path: str | None = documented(None, doc="umt5: tokenizer folder (default: text_encoder_path)")
    text_max_length: int = bounded(512, 1, None, doc="umt5 tokens, padded (the release uses 512)")
    device: str = documented("cpu", doc="device the encoders run on during `lbva prepare`")
    encoder_dtype: str = choice("float32", "float32", "bfloat16", "float16", doc="encoder weights dtype")
    cache_dtype: str = choice("float32", "float32", "bfloat16", "float16", doc="dtype latents are stored in")
    encode_batch_frames: int = bounded(64, 1, None, doc="video frames encoded per call (memory bound)")
    tile_space: str = choice(
        "pixels", "pixels", "latents",
        doc="tile camera views before encoding (pixels) or encode each view and tile its latents like the release",
    )

    # embedded encoders (CPU demo, tests): no downloads
    embedded_vae_steps: int = bounded(400, 0, None, doc="training steps when `lbva prepare` trains the embedded VAE")
    embedded_vae_frames: int = bounded(512, 1, None, doc="frames sampled from the dataset to train the embedded VAE")
    embedded_vae_batch: int = bounded(16, 1, None)
    embedded_text_dim: int = bounded(64, 1, None, doc="width of the embedded text encoder")
    embedded_text_max_length: int = bounded(32, 1, None, doc="byte tokens kept by the embedded text encoder")
    embedded_text_seed: int = 0

    # -- segments --------------------------------------------------------------------------------------------
    min_latent_frames: int = bounded(2, 2, None, doc="segments shorter than this (in latent frames) are skipped")

    # -- sampling training batches -----------------------------------------------------------------------------
    window_frames: int = bounded(8, 2, None, doc="latent frames per training sample (at most)")
    chunk_sizes: list[int] = documented(factory=lambda: [1, 2, 3, 4], doc="chunk sizes sampled per batch")
    token_budget: int | None = documented(
        None, doc="tokens per batch (clean+noisy video and action tokens); None = batch_size samples"
    )
    pack_tokens: int | None = bounded(
        None, 2, None, doc="pack each batch into one sequence of up to this many tokens: windows of one instruction "
                           "concatenated, each masked and positioned as if alone (replaces token_budget/batch_size)"
    )
    patch_size: int = bounded(2, 1, None, doc="spatial patch of the model (tokens per latent frame = h*w/p^2)")
    batch_size: int = bounded(1, 1, None, doc="samples per batch when token_budget is unset")
    num_workers: int = bounded(0, 0, None)
    even_batches: bool = documented(True, doc="pad the batch list so every rank gets the same number of batches")
