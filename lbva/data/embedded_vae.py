"""A small video autoencoder lbva trains on the user's own frames in minutes (CPU demo, tests).

Axis legend: B batch, T video frames, F latent frames, C latent channels, H/W pixels, h/w latent pixels.

It has the interface of the Wan2.2 VAE wrapper (see :mod:`lbva.data.encoders`) at a fraction of the cost:

* per-frame 2D convolutions, **spatial stride 8, temporal stride 1** (one latent frame per video frame, so
  F = T and an embodiment's N actions per latent frame are N control steps per video frame);
* 16 latent channels; a deterministic autoencoder (no sampling), lightly regularised toward small latents;
* after training, per-channel latent mean/std are measured on the training frames and stored in the config,
  like Wan's ``latents_mean``/``latents_std``, so cached latents come out roughly unit-scaled.

Saved as ``config.json`` + ``model.safetensors``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class EmbeddedVAEConfig:
    latent_channels: int = 16
    spatial_stride: int = 8  # pixels per latent pixel along H and W
    hidden: int = 128  # width of the convolutions that run at latent resolution
    latents_mean: list[float] = field(default_factory=list)  # per channel, measured after training
    latents_std: list[float] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "EmbeddedVAEConfig":
        return cls(**json.loads(text))


class EmbeddedVAE(nn.Module):
    """Per-frame autoencoder. ``encode``/``decode`` work on pixels in [-1, 1] and raw (unnormalised) latents.

    Each s×s×3 pixel patch is folded into channels (pixel unshuffle) and mixed by convolutions that run at
    latent resolution only, so training is cheap on a CPU and converges in a few hundred steps.
    """

    def __init__(self, config: EmbeddedVAEConfig | None = None):
        super().__init__()
        self.config = config or EmbeddedVAEConfig()
        s, hid, c = self.config.spatial_stride, self.config.hidden, self.config.latent_channels
        patch = 3 * s * s
        self.encoder = nn.Sequential(
            nn.PixelUnshuffle(s),
            nn.Conv2d(patch, hid, 1),
            nn.SiLU(),
            nn.Conv2d(hid, hid, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(hid, c, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(c, hid, 1),
            nn.SiLU(),
            nn.Conv2d(hid, hid, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(hid, patch, 1),
            nn.PixelShuffle(s),
        )

    @property
    def spatial_stride(self) -> int:
        return self.config.spatial_stride

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> (B, C, T, H/8, W/8) raw latents."""
        b, _, t, h, w = x.shape
        s = self.spatial_stride
        if h % s or w % s:
            raise ValueError(f"frame size {h}x{w} is not a multiple of the embedded VAE's spatial stride {s}")
        z = self.encoder(x.transpose(1, 2).reshape(b * t, 3, h, w))  # (B*T, C, h, w)
        return z.reshape(b, t, *z.shape[1:]).transpose(1, 2)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, F, h, w) raw latents -> (B, 3, F, 8h, 8w) in about [-1, 1]."""
        b, c, f, h, w = z.shape
        x = self.decoder(z.transpose(1, 2).reshape(b * f, c, h, w))
        return x.reshape(b, f, *x.shape[1:]).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z

    # -- persistence ------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / (WEIGHTS_NAME + ".tmp")
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(tmp))
        tmp.replace(d / WEIGHTS_NAME)
        (d / (CONFIG_NAME + ".tmp")).write_text(self.config.to_json())
        (d / (CONFIG_NAME + ".tmp")).replace(d / CONFIG_NAME)
        return d

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "EmbeddedVAE":
        d = Path(directory)
        if not (d / CONFIG_NAME).is_file() or not (d / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(
                f"{d} is not an embedded VAE folder (needs {CONFIG_NAME} and {WEIGHTS_NAME}); train one with "
                "lbva.data.embedded_vae.train_embedded_vae or let `lbva prepare --encoder embedded` train it"
            )
        model = cls(EmbeddedVAEConfig.from_json((d / CONFIG_NAME).read_text()))
        model.load_state_dict(load_file(str(d / WEIGHTS_NAME)))
        return model.eval()


def frames_to_pixels(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    t = torch.as_tensor(np.asarray(frames)).float()
    return t.movedim(-1, -3) / 127.5 - 1.0


def _one_cycle(opt: torch.optim.Optimizer, lr: float, steps: int):
    """One-cycle schedule with a 10 % warm-up, or a constant rate for runs too short to have one. OneCycleLR divides
    by the length of each phase, which is zero for some short runs (10 steps: a warm-up of exactly one step)."""
    if steps < 4:
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=max(0.1, 2.0 / steps))


def train_embedded_vae(
    frames: np.ndarray,
    steps: int = 400,
    batch_size: int = 16,
    lr: float = 2e-3,
    seed: int = 0,
    config: EmbeddedVAEConfig | None = None,
    latent_penalty: float = 1e-4,
    progress: bool = True,
) -> EmbeddedVAE:
    """Train an :class:`EmbeddedVAE` on uint8 frames (N, H, W, 3); returns it in eval mode with latent stats set.

    A few hundred steps on a few hundred 64×64 frames take well under a minute on two CPU cores.
    """
    from tqdm.auto import tqdm

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}")
    gen = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # weight init
    model = EmbeddedVAE(config)
    torch.random.set_rng_state(torch_state)
    pixels = frames_to_pixels(frames)  # (N, 3, H, W)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = _one_cycle(opt, lr, steps)
    model.train()
    bar = tqdm(range(steps), desc="training embedded VAE", disable=not progress, leave=False)
    for _ in bar:
        idx = torch.randint(0, len(pixels), (min(batch_size, len(pixels)),), generator=gen)
        x = pixels[idx].unsqueeze(2)  # (B, 3, 1, H, W)
        recon, z = model(x)
        loss = F.mse_loss(recon, x) + latent_penalty * z.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    model.eval()
    with torch.no_grad():
        zs = torch.cat([model.encode(pixels[i : i + 64].unsqueeze(2)) for i in range(0, len(pixels), 64)])
        zs = zs.transpose(0, 1).reshape(model.config.latent_channels, -1)  # (C, everything)
        model.config.latents_mean = zs.mean(1).tolist()
        model.config.latents_std = zs.std(1).clamp_min(1e-4).tolist()
    logger.info("embedded VAE trained for %d steps on %d frames", steps, len(frames))
    return model
