"""What a served embodiment's requests must look like, and the checks that enforce it.

:class:`ObservationSchema` is built from an embodiment spec (``lbva.embodiment.EmbodimentSpec``, read by
attribute only, so this module needs neither torch nor the embodiment registry):

* each camera ``spec.cameras[i].key`` -> uint8 ``(height, width, 3)`` — exactly uint8, no conversion;
* ``spec.state_key`` -> float32 ``(native_state_dim,)`` — any float dtype is accepted and cast to float32;
* optional text keys ``"prompt"`` / ``"task"`` (str);
* the action chunk returned: float32 ``(chunk_frames * actions_per_frame, native_action_dim)``.

Every check raises :class:`~lbva.serving.protocol.RequestError` naming the field, what was expected and what
arrived. Float values must be finite (NaN/inf refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lbva.serving.protocol import RequestError

TEXT_KEYS = ("prompt", "task")
MAX_TEXT_CHARS = 4096  # characters in a prompt, by default (a server may raise it: ``max_text_chars``)


@dataclass(frozen=True)
class ArraySpec:
    """One array entry: exact shape and dtype (``uint8`` must match; ``float32`` accepts any float, cast)."""

    shape: tuple[int, ...]
    dtype: str

    def describe(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype}

    def check(self, value: Any, name: str, *, time_axis: bool = False) -> np.ndarray:
        """Validate ``value``; with ``time_axis`` a leading axis of length >= 1 is also allowed."""
        want = f"{self.dtype} array of shape {self.shape}" + (f" or (T, *{self.shape})" if time_axis else "")
        if not isinstance(value, np.ndarray):
            raise RequestError(name, f"expected a numpy {want}, got {type(value).__name__}; send np.asarray(...)")
        shape = tuple(value.shape)
        ok = shape == self.shape or (time_axis and len(shape) == len(self.shape) + 1 and shape[0] >= 1 and shape[1:] == self.shape)
        if not ok:
            raise RequestError(name, f"expected a {want}, got shape {shape}")
        target = np.dtype(self.dtype)
        if target.kind == "f":
            if value.dtype.kind != "f":
                raise RequestError(name, f"expected a {want} (float16/float64 are cast), got dtype {value.dtype}")
            with np.errstate(over="ignore"):
                value = value.astype(target, copy=False)
            if not np.isfinite(value).all():
                raise RequestError(name, "contains NaN or infinite values; send finite numbers")
        elif value.dtype != target:
            raise RequestError(name, f"expected a {want}, got dtype {value.dtype}; convert with .astype(np.{self.dtype})")
        return value


def check_text(value: Any, name: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    if not isinstance(value, str):
        raise RequestError(name, f"expected a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise RequestError(name, f"is {len(value)} characters long; at most {max_chars} are accepted (a server started "
                                 "with a larger --max-prompt-chars takes more)")
    return value


@dataclass(frozen=True)
class ObservationSchema:
    """The observation keys (shape, dtype) an embodiment expects and the action chunk shape it returns."""

    embodiment: str
    arrays: Mapping[str, ArraySpec]
    action_shape: tuple[int, int]  # (T, A) of one predicted chunk
    state_key: str | None = None  # the entry of ``arrays`` holding the robot state (optional in feedback)
    text_keys: tuple[str, ...] = field(default=TEXT_KEYS)
    max_text_chars: int = MAX_TEXT_CHARS

    @property
    def action_dim(self) -> int:
        return self.action_shape[1]

    @property
    def image_keys(self) -> tuple[str, ...]:
        return tuple(k for k in self.arrays if k != self.state_key)

    @classmethod
    def from_embodiment(cls, spec: Any) -> ObservationSchema:
        """Read an ``EmbodimentSpec`` (cameras, state key/dim, action dim, chunk length)."""
        arrays: dict[str, ArraySpec] = {}
        for cam in spec.cameras:
            arrays[cam.key] = ArraySpec((int(cam.height), int(cam.width), 3), "uint8")
        state_key = getattr(spec, "state_key", "observation.state")
        state_dim = int(spec.native_state_dim)
        if state_dim > 0:
            arrays[state_key] = ArraySpec((state_dim,), "float32")
        else:
            state_key = None
        horizon = int(spec.chunk_frames) * int(spec.actions_per_frame)
        return cls(spec.name, arrays, (horizon, int(spec.native_action_dim)), state_key)

    def describe(self) -> dict[str, dict[str, Any]]:
        """``{key: {"shape": [...], "dtype": ...}}`` for the metadata message."""
        return {k: v.describe() for k, v in self.arrays.items()}

    def _check_keys(self, obs: Mapping[str, Any], name: str, required: set[str], allowed: set[str]) -> None:
        for key in self.arrays:
            if key in required and key not in obs:
                raise RequestError(
                    key, f"missing from the {name}; it needs {sorted(required)} (see the server's metadata message)"
                )
        for key in obs:
            if key not in allowed:
                raise RequestError(key if isinstance(key, str) else repr(key), f"unexpected key in the {name}; allowed: {sorted(allowed)}")

    def check_observation(self, obs: Any) -> dict[str, Any]:
        """An infer request: every array key, optional text keys, nothing else. Returns the checked dict."""
        if not isinstance(obs, Mapping):
            raise RequestError(None, f"an observation must be a map, got {type(obs).__name__}")
        self._check_keys(obs, "observation", set(self.arrays), set(self.arrays) | set(self.text_keys))
        out: dict[str, Any] = {}
        for key, value in obs.items():
            out[key] = (check_text(value, key, self.max_text_chars) if key in self.text_keys
                        else self.arrays[key].check(value, key))
        return out

    def check_frames(self, frames: Any, name: str = "observation") -> dict[str, np.ndarray]:
        """Feedback frames: every camera key (the state optional), each with an optional shared time axis."""
        if not isinstance(frames, Mapping):
            raise RequestError(name, f"expected a map of camera key -> uint8 frames, got {type(frames).__name__}")
        self._check_keys(frames, name, set(self.image_keys), set(self.arrays))
        out = {k: self.arrays[k].check(v, k, time_axis=True) for k, v in frames.items()}
        lengths = {k: v.shape[0] for k, v in out.items() if v.ndim == len(self.arrays[k].shape) + 1}
        if lengths and (len(lengths) != len(out) or len(set(lengths.values())) > 1):
            raise RequestError(name, f"all entries need the same leading time axis or none; got {lengths} of {sorted(out)}")
        return out

    def check_actions(self, value: Any, name: str) -> np.ndarray:
        """A (T, A) action array: floats, finite, A = the embodiment's native action dim, T >= 1."""
        if not isinstance(value, np.ndarray) or value.ndim != 2 or value.shape[0] < 1 or value.shape[1] != self.action_dim:
            got = f"shape {tuple(value.shape)}" if isinstance(value, np.ndarray) else type(value).__name__
            raise RequestError(name, f"expected a float array of shape (T, {self.action_dim}) with T >= 1, got {got}")
        return ArraySpec((value.shape[0], self.action_dim), "float32").check(value, name)

    def check_feedback(self, payload: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        allowed = {"executed_actions", "observation"}
        for key in allowed:
            if key not in payload:
                raise RequestError(key, f"missing from the feedback message; it needs {sorted(allowed)}")
        for key in payload:
            if key not in allowed:
                raise RequestError(key, f"unexpected key in the feedback message; allowed: {sorted(allowed)}")
        actions = self.check_actions(payload["executed_actions"], "executed_actions")
        frames = self.check_frames(payload["observation"])
        return frames, actions
