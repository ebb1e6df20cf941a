"""Camera views to latents: what the policy's history holds of the real frames.

Axis legend: C latent channels, F latent frames, h/w latent pixels, T video frames.

Real frames go through the video encoder's stream (``encoder.stream()``): a per-frame encoder takes one frame per
latent frame, the Wan2.2 VAE (temporal stride 4) takes four and carries its causal convolution caches from chunk to
chunk, so the history holds exactly the latents training computed for the same frames.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from lbva.inference.errors import PolicyError


class ObservationEncoder:
    """One episode's camera frames -> latents, through the video encoder's streaming state."""

    def __init__(self, spec, video_encoder, device: torch.device, *, tile_space: str = "pixels",
                 video_context: str = "full"):
        self.spec = spec
        self.video_encoder = video_encoder
        self.device = device
        self.video_context = video_context
        self.stride = int(getattr(video_encoder, "temporal_stride", 1))  # video frames per latent frame
        self._tile_map = None  # per-camera encoding placed in latent space (data.tile_space=latents), as LeRobot does
        if tile_space == "latents":
            from lbva.data.prepare import latent_tile_map

            self._tile_map = latent_tile_map(spec, int(video_encoder.spatial_stride))
        self._streams = None

    def start(self) -> None:
        """Fresh encoder streams for a new episode (causal VAEs carry caches between chunks)."""
        from lbva.data.encoders import FrameStream

        stream = getattr(self.video_encoder, "stream", None)
        keys = [None] if self._tile_map is None else [c.key for c in self.spec.cameras]
        self._streams = {k: stream() if stream is not None else FrameStream(self.video_encoder) for k in keys}

    def views(self, observation: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The camera views (camera key -> (h, w, 3) uint8) of an observation dict."""
        missing = [c.key for c in self.spec.cameras if c.key not in observation]
        if missing:
            raise PolicyError(
                f"observation lacks camera(s) {missing} of embodiment {self.spec.name!r}; got keys {sorted(observation)}"
            )
        views = {c.key: np.asarray(observation[c.key]) for c in self.spec.cameras}
        bad = {k: str(v.dtype) for k, v in views.items() if v.dtype != np.uint8}
        if bad:
            raise PolicyError(f"camera frames must be uint8 (h, w, 3) images; got {bad}: convert them before the policy")
        return views

    def stack(self, keyframes: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Views one per keyframe -> camera key -> (k, h, w, 3)."""
        return {c.key: np.stack([kf[c.key] for kf in keyframes]) for c in self.spec.cameras}

    def clip(self, frames) -> tuple[Mapping[str, np.ndarray] | np.ndarray, int]:
        """Fed-back frames as uint8 clips (tiled (k, H, W, 3), or camera key -> (k, h, w, 3)) and their count k."""
        if isinstance(frames, Mapping):
            missing = [cam.key for cam in self.spec.cameras if cam.key not in frames]
            if missing:
                raise PolicyError(f"observe() frames lack camera(s) {missing}; got keys {sorted(frames)}")
            frames = {cam.key: np.asarray(frames[cam.key], dtype=np.uint8) for cam in self.spec.cameras}
            frames = {key: v[None] if v.ndim == 3 else v for key, v in frames.items()}
            counts = {v.shape[0] for v in frames.values()}
            n = counts.pop() if len(counts) == 1 else None
            if n is None:
                raise PolicyError(f"observe() frames: every camera needs the same number of frames; got "
                                  f"{ {key: v.shape[0] for key, v in frames.items()} }")
            return frames, n
        frames = np.asarray(frames, dtype=np.uint8)
        if frames.ndim == 3:
            frames = frames[None]
        return frames, frames.shape[0]

    def encode(self, frames: Mapping[str, np.ndarray] | np.ndarray, commit: bool = True) -> torch.Tensor:
        """Real frames in episode order -> latents (1, C, F, h, w), F = T / stride (1 for the first frame).

        ``frames``: camera key -> (T, h, w, 3), or tiled frames (T, H, W, 3). Pixel tiling (the default) encodes
        the tiled frame; latent tiling encodes each camera with its own stream and places the latents as
        ``lbva prepare`` did. ``commit=False`` leaves a causal encoder's state as it was (a look ahead)."""
        if self._tile_map is None:
            if isinstance(frames, Mapping):
                frames = self.spec.tile({c.key: np.asarray(frames[c.key]) for c in self.spec.cameras})
            frames = np.asarray(frames, dtype=np.uint8)
            latents = self._streams[None].encode(frames[None] if frames.ndim == 3 else frames, commit=commit)
        else:
            from lbva.data.prepare import place_latent_views

            if not isinstance(frames, Mapping) and len(self.spec.cameras) == 1:
                frames = {self.spec.cameras[0].key: frames}  # one view: the tiled frame is the view
            if not isinstance(frames, Mapping):
                raise PolicyError(
                    "this policy encodes each camera on its own (data.tile_space=latents): pass frames as a dict "
                    f"camera key -> (k, h, w, 3) for {[c.key for c in self.spec.cameras]}, not tiled frames"
                )
            parts = []
            for cam in self.spec.cameras:
                v = np.asarray(frames[cam.key], dtype=np.uint8)
                parts.append(self._streams[cam.key].encode(v[None] if v.ndim == 3 else v, commit=commit))
            latents = place_latent_views(parts, self._tile_map)
        latents = latents.to(self.device).float()
        if self.video_context == "none":  # ablation: the model never sees the camera
            latents = torch.zeros_like(latents)
        return latents
