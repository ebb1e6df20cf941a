"""The robot as the plugin's lbva model sees it, and LeRobot images turned into the frames lbva encodes.

Axis legend: B batch, T video frames, C = 3 colour channels, H/W pixels as LeRobot gives them, h/w the camera size
the model uses, D native action dims, 30 unified slots.

LeRobot's processors normalise the actions (``normalization_mapping``), so inside the policy an action is already
in [−1, 1]. The plugin therefore drives lbva with a *model-space* embodiment: the same cameras, tiling, slots and
chunking as the robot, but with every action dim copied as it is into its slot and identity statistics
(q01 = −1, q99 = +1). For the field kinds LeRobot can normalise per dim (raw values, grippers, quaternions) this
gives exactly the numbers lbva computes with the robot's own embodiment and slot-unit statistics, since each such
field maps a native dim to its slot by an affine function and normalisation commutes with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

SPEC_NAME = "lerobot-model-space"


@dataclass(frozen=True)
class PluginRobot:
    """``camera_keys``: LeRobot image features in tiling order; ``spec``: the model-space lbva embodiment, whose
    cameras are the same views under lbva's key convention (``observation.images.<name>``)."""

    camera_keys: tuple[str, ...]
    spec: object  # lbva.embodiment.EmbodimentSpec

    @classmethod
    def from_config(cls, config) -> PluginRobot:
        from lbva.embodiment import (
            ACTION_DIM,
            ActionStats,
            CameraSpec,
            EmbodimentSpec,
            FieldSpec,
        )

        keys = tuple(config.camera_keys)
        names = [k.split(".")[-1] for k in keys]  # observation.image -> image, observation.images.top -> top
        if len(set(names)) != len(names):
            raise ValueError(f"--policy.camera_keys {list(keys)} end in the same name; rename them with --rename_map")
        h, w = (int(v) for v in config.image_size)
        sizes = [(h, w)] * len(keys)
        if config.camera_layout == "robotwin_tshape":  # head at full size, the two wrists at half
            sizes = [(h, w), (h // 2, w // 2), (h // 2, w // 2)][: len(keys)]
        cameras = tuple(CameraSpec(f"observation.images.{n}", ch, cw) for n, (ch, cw) in zip(names, sizes))
        dim = len(config.action_slots)
        try:
            spec = EmbodimentSpec(
                name=SPEC_NAME,
                cameras=cameras,
                camera_layout=config.camera_layout,
                action_fields=(FieldSpec("action", "raw", tuple(int(s) for s in config.action_slots)),),
                state_fields=(),
                control_hz=1.0,  # not used by the session: LeRobot's loop keeps the time
                actions_per_frame=int(config.actions_per_frame),
                chunk_frames=int(config.chunk_frames),
                action_low=np.full(dim, -np.inf, np.float32),
                action_high=np.full(dim, np.inf, np.float32),
                stats=ActionStats(np.full(ACTION_DIM, -1.0, np.float32), np.full(ACTION_DIM, 1.0, np.float32),
                                  source="identity: LeRobot's processors normalise the actions"),
            )
        except ValueError as e:
            raise ValueError(f"the lbva policy's robot fields do not fit together: {e}") from None
        return cls(keys, spec)

    @property
    def slots(self) -> tuple[int, ...]:
        return self.spec.action_fields[0].slots

    def views(self, batch, frames: bool = False) -> dict[str, torch.Tensor]:
        """uint8 views (..., h, w, 3) keyed like the model-space spec, from a LeRobot batch: images (B, C, H, W), or
        (B, T, C, H, W) clips with ``frames``."""
        out = {}
        for key, cam in zip(self.camera_keys, self.spec.cameras):
            if key not in batch:
                raise KeyError(f"the batch lacks camera {key!r} (policy camera_keys {list(self.camera_keys)}); got "
                               f"{sorted(k for k in batch if not k.endswith('_is_pad'))}")
            img = batch[key]
            want = 5 if frames else 4
            if not torch.is_tensor(img) or img.ndim != want:
                raise ValueError(
                    f"{key}: expected a float image tensor of {want} dims ({'B, T, ' if frames else 'B, '}C, H, W) in "
                    f"[0, 1]; got {type(img).__name__} {tuple(getattr(img, 'shape', ()))}"
                )
            out[cam.key] = to_uint8_frames(img, cam.height, cam.width)
        return out

    def tile(self, views: dict[str, torch.Tensor]) -> np.ndarray:
        """The model-space views tiled into one frame (..., H, W, 3) uint8, as lbva's encoders take it."""
        return self.spec.tile({k: v.cpu().numpy() for k, v in views.items()})


def to_uint8_frames(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """LeRobot images (..., C, H, W) float in [0, 1] -> uint8 (..., height, width, 3).

    Frames that came from uint8 (environments, decoded videos) come back exactly; other sizes are resized
    (bilinear, antialiased) first. Training and inference both go through here, so the model sees one mapping."""
    lead, (c, h, w) = images.shape[:-3], images.shape[-3:]
    if c != 3:
        raise ValueError(f"expected RGB images with 3 channels first (..., 3, H, W); got shape {tuple(images.shape)}")
    x = images.reshape(-1, c, h, w).float()
    if (h, w) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    x = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).reshape(*lead, height, width, 3)
