"""What a served embodiment's requests must look like, and the checks that enforce it.

:class:`ObservationSchema` is built from an embodiment spec (``lbva.embodiment.EmbodimentSpec``, read by
attribute only, so this module needs neither torch nor the embodiment registry):

* each camera ``spec.cameras[i].key`` -> uint8 ``(height, width, 3)`` — exactly uint8, no conversion;
* ``spec.state_key`` -> float32 ``(native_state_dim,)`` — any float dtype is accepted and cast to float32;
* optional text keys ``"prompt"`` / ``"task"`` (str);
* the action chunk returned: float32 ``(T, native_action_dim)``, where T is ``(chunk_frames - 1) *
  actions_per_frame`` for the first reply of an episode (the world model's first latent frame is the
  observation it starts from, so it has no actions) and ``chunk_frames * actions_per_frame`` after.

Other conventions' keys declared on the spec are accepted too and mapped onto these: a camera's ``aliases``
(any frame size: resized as openpi does, :func:`lbva.serving.images.resize_with_pad`) and the spec's
``state_aliases`` (one key with the whole state, or several keys with parts of it). The policy always receives
the embodiment's own keys. Feedback messages use the embodiment's own keys.

Every check raises :class:`~lbva.serving.protocol.RequestError` naming the field, what was expected and what
arrived. Float values must be finite (NaN/inf refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lbva.serving.images import resize_with_pad
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
    """The observation keys (shape, dtype) an embodiment expects and the action chunks it returns."""

    embodiment: str
    arrays: Mapping[str, ArraySpec]
    action_shape: tuple[int, int]  # (T, A) of a full chunk: every reply after the first of an episode
    state_key: str | None = None  # the entry of ``arrays`` holding the robot state (optional in feedback)
    text_keys: tuple[str, ...] = field(default=TEXT_KEYS)
    first_chunk_rows: int | None = None  # rows of an episode's first reply; None: a full chunk like the rest
    camera_aliases: Mapping[str, str] = field(default_factory=dict)  # another convention's key -> camera key
    state_aliases: tuple[Any, ...] = ()  # the spec's StateAlias declarations
    state_names: tuple[str, ...] = ()
    max_text_chars: int = MAX_TEXT_CHARS

    @property
    def action_dim(self) -> int:
        return self.action_shape[1]

    @property
    def image_keys(self) -> tuple[str, ...]:
        return tuple(k for k in self.arrays if k != self.state_key)

    def reply_rows(self, first_of_episode: bool) -> int:
        """How many actions a reply holds: fewer for the first chunk of an episode (see the module docstring)."""
        if first_of_episode and self.first_chunk_rows is not None:
            return self.first_chunk_rows
        return self.action_shape[0]

    @classmethod
    def from_embodiment(cls, spec: Any) -> ObservationSchema:
        """Read an ``EmbodimentSpec`` (cameras and their aliases, state key/dim/aliases, action dim, chunk length)."""
        arrays: dict[str, ArraySpec] = {}
        camera_aliases: dict[str, str] = {}
        for cam in spec.cameras:
            arrays[cam.key] = ArraySpec((int(cam.height), int(cam.width), 3), "uint8")
            camera_aliases.update({alias: cam.key for alias in getattr(cam, "aliases", ())})
        state_key = getattr(spec, "state_key", "observation.state")
        state_dim = int(spec.native_state_dim)
        if state_dim > 0:
            arrays[state_key] = ArraySpec((state_dim,), "float32")
            state_aliases = tuple(getattr(spec, "state_aliases", ()))
        else:
            state_key, state_aliases = None, ()
        per_frame, frames = int(spec.actions_per_frame), int(spec.chunk_frames)
        return cls(spec.name, arrays, (frames * per_frame, int(spec.native_action_dim)), state_key,
                   first_chunk_rows=(frames - 1) * per_frame, camera_aliases=camera_aliases,
                   state_aliases=state_aliases, state_names=tuple(getattr(spec, "state_names", ())))

    def describe(self) -> dict[str, dict[str, Any]]:
        """``{key: {"shape": [...], "dtype": ...}}`` for the metadata message."""
        return {k: v.describe() for k, v in self.arrays.items()}

    def describe_aliases(self) -> dict[str, dict[str, Any]]:
        """Other conventions' keys the server maps onto the embodiment's (the metadata's ``observation_aliases``)."""
        out: dict[str, dict[str, Any]] = {}
        for alias, key in self.camera_aliases.items():
            h, w, _ = self.arrays[key].shape
            out[alias] = {"for": key, "shape": [None, None, 3], "dtype": "uint8", "resized_to": [h, w],
                          "resize": "resize_with_pad (aspect ratio kept, black padding), as openpi's clients do"}
        for convention in self.state_aliases:
            fills = bool(convention.covers(self.state_names))
            for key, dims in convention.parts:
                out[key] = {"for": self.state_key, "convention": convention.name, "shape": [len(dims)],
                            "dtype": "float32", "dims": list(dims), "fills_state": fills}
        return out

    def _unexpected(self, key: Any, where: str, allowed: set[str]) -> RequestError:
        return RequestError(key if isinstance(key, str) else repr(key), f"unexpected key in the {where}; allowed: {sorted(allowed)}")

    def _check_keys(self, obs: Mapping[str, Any], name: str, required: set[str], allowed: set[str]) -> None:
        for key in self.arrays:
            if key in required and key not in obs:
                raise RequestError(
                    key, f"missing from the {name}; it needs {sorted(required)} (see the server's metadata message)"
                )
        for key in obs:
            if key not in allowed:
                raise self._unexpected(key, name, allowed)

    def check_observation(self, obs: Any) -> dict[str, Any]:
        """An infer request: every camera (under its key or an alias), the state (under its key or through one
        declared convention), optional text keys, nothing else. Returns the checked dict in the embodiment's keys."""
        if not isinstance(obs, Mapping):
            raise RequestError(None, f"an observation must be a map, got {type(obs).__name__}")
        alias_parts = {key: conv for conv in self.state_aliases for key in conv.keys}
        allowed = set(self.arrays) | set(self.text_keys) | set(self.camera_aliases) | set(alias_parts)
        out: dict[str, Any] = {}
        came_as: dict[str, str] = {}  # embodiment key -> the key it arrived under
        state_parts: dict[str, np.ndarray] = {}
        for key, value in obs.items():
            if not isinstance(key, str) or key not in allowed:
                raise self._unexpected(key, "observation", allowed)
            if key in self.text_keys:
                out[key] = check_text(value, key, self.max_text_chars)
                continue
            if key in alias_parts:
                size = dict(alias_parts[key].parts)[key]
                state_parts[key] = ArraySpec((len(size),), "float32").check(value, key)
                continue
            target = self.camera_aliases.get(key, key)
            if target in came_as:
                raise RequestError(key, f"{target} arrived twice, as {came_as[target]!r} and as {key!r}; send it once")
            came_as[target] = key
            if key == target:
                out[key] = self.arrays[key].check(value, key)
            else:
                out[target] = self._check_aliased_image(value, key, target)
        for key in self.image_keys:
            if key not in out:
                names = [key] + [a for a, k in self.camera_aliases.items() if k == key]
                raise RequestError(key, f"missing from the observation (send it as {' or '.join(map(repr, names))}); "
                                        "see the server's metadata message")
        if self.state_key is not None:
            self._resolve_state(out, state_parts, alias_parts)
        return out

    def _check_aliased_image(self, value: Any, key: str, target: str) -> np.ndarray:
        h, w, _ = self.arrays[target].shape
        if not isinstance(value, np.ndarray) or value.ndim != 3 or value.shape[2] != 3 or 0 in value.shape:
            got = f"shape {tuple(value.shape)}" if isinstance(value, np.ndarray) else type(value).__name__
            raise RequestError(key, f"expected a uint8 image (h, w, 3) of any size (resized with padding to {h}x{w} "
                                    f"for {target}), got {got}")
        if value.dtype != np.uint8:
            raise RequestError(key, f"expected a uint8 image, got dtype {value.dtype}; convert with "
                                    "openpi_client.image_tools.convert_to_uint8 or .astype(np.uint8)")
        return resize_with_pad(value, h, w)

    def _resolve_state(self, out: dict[str, Any], parts: dict[str, np.ndarray], owner: Mapping[str, Any]) -> None:
        conventions = {owner[k].name: owner[k] for k in parts}
        sent = sorted(conventions) + (["the embodiment's own key"] if self.state_key in out else [])
        if not sent:
            ways = [repr(self.state_key)] + [f"{c.name} ({', '.join(map(repr, c.keys))})" for c in self.state_aliases]
            raise RequestError(self.state_key, f"missing from the observation; send the state as {' or '.join(ways)}")
        if len(sent) > 1:
            raise RequestError(self.state_key, f"the state arrived in more than one convention ({sent}); send it one way")
        if not conventions:
            return
        (convention,) = conventions.values()
        missing = [k for k in convention.keys if k not in parts]
        if missing:
            raise RequestError(missing[0], f"missing: convention {convention.name!r} sends {list(convention.keys)}")
        state = convention.assemble(parts, self.state_names)
        if state is not None:  # a convention that carries only part of the state leaves it out (policies do not read it)
            out[self.state_key] = self.arrays[self.state_key].check(state, self.state_key)

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
