"""A deterministic stand-in for ``lbva.inference.Policy``: for smoke tests and client development.

``lbva serve --fake --embodiment NAME`` serves it. Its actions are a fixed function of the observation and of
the session's own history (prompt, number of feedback calls since the last reset), so two sessions that
leaked state into each other would get different numbers than each gets alone::

    a[t, j] = sin(m + s + p + 0.1 * n + 0.01 * t + 0.001 * j)     t < T, j < A

where m is the mean of all camera pixels / 255 (0 without cameras), s the mean of the state (0 without one),
p = (crc32(prompt) mod 1000) / 1000 and n the number of ``observe`` calls since the last ``reset``. Like the real
policy, the first chunk after a reset is shorter: T = (chunk_frames - 1) * actions_per_frame, then
chunk_frames * actions_per_frame. It records every reset and feedback call. Needs numpy only.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from lbva.serving.schema import ObservationSchema


class FakePolicy:
    """Implements the PolicyLike protocol (``reset``, ``select_action``, ``predict_action_chunk``, ``observe``)."""

    def __init__(self, schema: ObservationSchema) -> None:
        self.schema = schema
        self.prompt: str | None = None
        self.resets: list[str] = []
        self.feedback: list[tuple[dict[str, np.ndarray], np.ndarray]] = []
        self.inferences = 0
        self._since_reset = 0
        self._chunks_since_reset = 0
        self._queue: deque[np.ndarray] = deque()

    @classmethod
    def from_embodiment(cls, spec: Any) -> FakePolicy:
        return cls(ObservationSchema.from_embodiment(spec))

    def reset(self, prompt: str) -> None:
        self.prompt = prompt
        self.resets.append(prompt)
        self._since_reset = 0
        self._chunks_since_reset = 0
        self._queue.clear()

    def predict_action_chunk(self, observation: Mapping[str, Any]) -> np.ndarray:
        self.inferences += 1
        images = [np.asarray(observation[k], dtype=np.float64) for k in self.schema.image_keys if k in observation]
        m = float(np.mean(np.concatenate([i.ravel() for i in images]))) / 255.0 if images else 0.0
        key = self.schema.state_key
        s = float(np.mean(np.asarray(observation[key], dtype=np.float64))) if key and key in observation else 0.0
        prompt = observation.get("prompt", observation.get("task", self.prompt)) or ""
        p = (zlib.crc32(prompt.encode()) % 1000) / 1000.0
        horizon = self.schema.reply_rows(first_of_episode=self._chunks_since_reset == 0)
        dim = self.schema.action_dim
        self._chunks_since_reset += 1
        t = np.arange(horizon, dtype=np.float64)[:, None]
        j = np.arange(dim, dtype=np.float64)[None, :]
        return np.sin(m + s + p + 0.1 * self._since_reset + 0.01 * t + 0.001 * j).astype(np.float32)  # (T, A)

    def select_action(self, observation: Mapping[str, Any]) -> np.ndarray:
        if not self._queue:
            self._queue.extend(self.predict_action_chunk(observation))
        return self._queue.popleft()

    def observe(self, frames: Mapping[str, np.ndarray], executed_actions: np.ndarray) -> None:
        self.feedback.append(({k: np.array(v) for k, v in frames.items()}, np.array(executed_actions)))
        self._since_reset += 1
