"""Helpers for the serving tests: a toy embodiment spec (two cameras, a 5-dim state, 4-dim actions), observations,
a recording policy factory and the fake policy's formula written out independently."""

from __future__ import annotations

import math
import threading
import zlib
import weakref
from dataclasses import dataclass, field

import numpy as np
from lbva.serving.fake_policy import FakePolicy


@dataclass(frozen=True)
class ToyCamera:
    key: str
    height: int
    width: int


@dataclass(frozen=True)
class ToySpec:
    """Duck-types the attributes of lbva.embodiment.EmbodimentSpec that serving reads."""

    name: str = "toy-arm"
    cameras: tuple[ToyCamera, ...] = field(
        default=(ToyCamera("observation.images.front", 6, 8), ToyCamera("observation.images.wrist", 4, 4))
    )
    state_key: str = "observation.state"
    native_state_dim: int = 5
    native_action_dim: int = 4
    chunk_frames: int = 2
    actions_per_frame: int = 3


FRONT, WRIST, STATE = "observation.images.front", "observation.images.wrist", "observation.state"


def make_obs(seed: int = 0, prompt: str | None = "pick the cube") -> dict:
    rng = np.random.default_rng(seed)
    obs = {
        FRONT: rng.integers(0, 256, (6, 8, 3), dtype=np.uint8),
        WRIST: rng.integers(0, 256, (4, 4, 3), dtype=np.uint8),
        STATE: rng.standard_normal(5).astype(np.float32),
    }
    if prompt is not None:
        obs["prompt"] = prompt
    return obs


class RecordingFactory:
    """A policy factory that keeps weak references to every policy it made (to check they are freed)."""

    def __init__(self, spec: ToySpec) -> None:
        self.spec = spec
        self.made: list[weakref.ref] = []
        self.lock = threading.Lock()

    def __call__(self) -> FakePolicy:
        policy = FakePolicy.from_embodiment(self.spec)
        with self.lock:
            self.made.append(weakref.ref(policy))
        return policy




FIRST_ROWS, LATER_ROWS = 3, 6  # ToySpec: (2 - 1) * 3 actions in an episode's first chunk, then 2 * 3


def expected_actions(obs: dict, prompt: str, feedbacks: int, *, first: bool = True, dim: int = 4) -> np.ndarray:
    """FakePolicy's documented formula, computed here with plain loops (the reference for round trips); ``first``:
    the first chunk of an episode, which has one latent frame (3 actions) fewer."""
    horizon = FIRST_ROWS if first else LATER_ROWS
    pixels = [int(v) for k in (FRONT, WRIST) for v in np.asarray(obs[k]).ravel()]
    m = sum(pixels) / len(pixels) / 255.0
    s = sum(float(v) for v in np.asarray(obs[STATE], dtype=np.float64)) / len(obs[STATE])
    p = (zlib.crc32(prompt.encode()) % 1000) / 1000.0
    out = np.empty((horizon, dim), np.float32)
    for t in range(horizon):
        for j in range(dim):
            out[t, j] = math.sin(m + s + p + 0.1 * feedbacks + 0.01 * t + 0.001 * j)
    return out


def fake_policy_actions(images: list, state, prompt: str, rows: int, dim: int, feedbacks: int = 0) -> np.ndarray:
    """FakePolicy's documented formula for any embodiment, with plain loops: ``images`` the camera frames the policy
    receives, ``state`` its state vector or None."""
    pixels = [int(v) for img in images for v in np.asarray(img).ravel()]
    m = sum(pixels) / len(pixels) / 255.0
    s = 0.0 if state is None else sum(float(v) for v in np.asarray(state, dtype=np.float64)) / len(state)
    p = (zlib.crc32(prompt.encode()) % 1000) / 1000.0
    out = np.empty((rows, dim), np.float32)
    for t in range(rows):
        for j in range(dim):
            out[t, j] = math.sin(m + s + p + 0.1 * feedbacks + 0.01 * t + 0.001 * j)
    return out
