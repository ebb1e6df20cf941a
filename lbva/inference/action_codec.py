"""The robot's native actions <-> the model's normalised unified slots, chunk by chunk.

Axis legend: K latent frames per chunk, N actions per latent frame, A = 30 unified slots, D native action width,
T actions in a chunk (K·N, or (K−1)·N for chunk 0, whose first latent frame is the conditioning observation).
"""

from __future__ import annotations

import numpy as np
import torch

from lbva.inference.errors import PolicyError


class ActionCodec:
    """Converts a chunk's actions between the model's (1, K, N, A) and the robot's (T, D)."""

    def __init__(self, spec, chunk_frames: int, actions_per_frame: int, action_dim: int, device: torch.device):
        self.spec = spec
        self.K, self.N, self.A = chunk_frames, actions_per_frame, action_dim
        self.device = device
        self.used = torch.as_tensor(np.array(spec.used_mask, dtype=np.float32), device=device)  # (A,)

    def to_native(self, c: int, actions: torch.Tensor) -> np.ndarray:
        """(1, K, N, A) normalised -> (T, D) native; chunk 0 drops its conditioning frame."""
        a = actions[0, 1:] if c == 0 else actions[0]
        slots = self.spec.denormalize_actions(a.reshape(-1, self.A).cpu().numpy())
        return self.spec.slots_to_action(slots).astype(np.float32)

    def to_model(self, c: int, executed: np.ndarray) -> torch.Tensor:
        """(T, D) native actions as sent to the robot -> (1, K, N, A) normalised, unused slots 0."""
        executed = np.asarray(executed, dtype=np.float32)
        T = (self.K - 1) * self.N if c == 0 else self.K * self.N
        if executed.shape != (T, self.spec.native_action_dim):
            raise PolicyError(
                f"executed_actions for chunk {c} must have shape ({T}, {self.spec.native_action_dim}) "
                f"(the chunk's actions as sent to the robot); got {executed.shape}"
            )
        slots = self.spec.normalize_actions(self.spec.action_to_slots(executed))
        a = torch.as_tensor(np.asarray(slots), dtype=torch.float32, device=self.device).reshape(-1, self.N, self.A)
        if c == 0:
            a = torch.cat([torch.zeros(1, self.N, self.A, device=self.device), a], 0)
        return a[None] * self.used.view(1, 1, 1, -1)
