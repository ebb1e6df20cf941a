"""What a robot is, as the model sees it: cameras, the unified 30-slot action space, statistics.

Axis legend: ``...`` any leading axes (time, batch), A native action (or state) dim, 30 unified slots,
h/w a camera's pixels, H/W the tiled frame.

Unified slots (docs/architecture.md#unified-action-slots; compatible with the released checkpoints):

====== ==================================================
0–6    left arm end effector: xyz + quaternion (x, y, z, w)
7–13   right arm end effector: xyz + quaternion (x, y, z, w)
14–20  left arm joints (up to 7)
21–27  right arm joints (up to 7)
28, 29 left / right gripper, canonical range [0, 1] (0 closed, 1 open)
====== ==================================================

A single-arm robot uses the left slots. A native vector is a sequence of :class:`FieldSpec` s; each
field says where its values go and how they convert (quaternion order, axis-angle/Euler → quaternion,
gripper range). Unused slots are exactly zero.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lbva.embodiment import rotations as rot
from lbva.errors import UserError

ACTION_DIM = 30
# q01/q99 beyond this magnitude (in any native unit: metres, radians, degrees, gripper widths) are not statistics of a
# real robot's actions; they turn normalised model outputs into absurd commands, so they are refused
MAX_ABS_STATISTIC = 1e6


class StatsError(UserError, ValueError):
    """Normalisation statistics that cannot be used (wrong shape, non-finite or absurd quantiles)."""


LEFT_EEF = tuple(range(0, 7))
RIGHT_EEF = tuple(range(7, 14))
LEFT_JOINTS = tuple(range(14, 21))
RIGHT_JOINTS = tuple(range(21, 28))
LEFT_GRIPPER = 28
RIGHT_GRIPPER = 29

CAMERA_LAYOUTS = ("single", "width_concat", "robotwin_tshape")
FIELD_KINDS = ("raw", "quat", "axis_angle", "euler", "gripper")
# Native width of each field kind (raw: one per slot); slot width is 4 for every rotation kind.
_ROTATION_KINDS = ("quat", "axis_angle", "euler")


@dataclass(frozen=True)
class CameraSpec:
    """One camera: its observation key and the size (h, w) its frames are resized to before tiling.

    ``aliases`` are other keys under which this camera's frames arrive in other conventions: a client's
    (openpi's ``observation/image``) or a dataset's (LeRobot's single-camera ``observation.image``). Whoever
    reads observations maps an alias onto ``key``; ``lbva serve`` also accepts any image size under an alias and
    resizes it the way openpi's examples do (keep the aspect ratio, pad with black).
    """

    key: str
    height: int
    width: int
    aliases: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.key.startswith("observation.images."):
            raise ValueError(
                f"camera key {self.key!r} must start with 'observation.images.' (lbva names every camera this way, as "
                "LeRobot does for several cameras); declare other names a dataset or client uses, such as LeRobot's "
                "one-camera 'observation.image' or openpi's 'observation/image', in CameraSpec(aliases=...)")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"camera {self.key!r} has size {self.height}x{self.width}; both must be positive")
        object.__setattr__(self, "aliases", _alias_keys(self.aliases, f"camera {self.key!r}"))

    @property
    def name(self) -> str:
        return self.key.removeprefix("observation.images.")


@dataclass(frozen=True)
class FieldSpec:
    """A run of consecutive native dims and the slots it fills.

    kind:
      * ``raw`` — copy ``len(slots)`` native values into ``slots`` as they are (positions, joints, deltas).
      * ``quat`` — 4 native values, a quaternion in ``order`` ("xyzw" or "wxyz"), into 4 slots as (x, y, z, w).
      * ``axis_angle`` — 3 native values (rotation vector) into 4 quaternion slots (x, y, z, w).
      * ``euler`` — 3 native values (angles in sequence ``euler_seq``) into 4 quaternion slots.
      * ``gripper`` — 1 native value into 1 slot, mapped linearly so ``closed`` → 0 and ``open`` → 1.
    ``names`` label the native dims (LeRobot feature names); default ``<name>.<i>``.
    """

    name: str
    kind: str
    slots: tuple[int, ...]
    order: str = "xyzw"
    euler_seq: str = "xyz"
    closed: float = 0.0
    open: float = 1.0
    names: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "slots", tuple(int(s) for s in self.slots))
        if self.kind not in FIELD_KINDS:
            raise ValueError(f"field {self.name!r}: kind {self.kind!r} is not one of {FIELD_KINDS}")
        want = {"raw": len(self.slots) or 1, "quat": 4, "axis_angle": 4, "euler": 4, "gripper": 1}[self.kind]
        if len(self.slots) != want:
            raise ValueError(f"field {self.name!r} of kind {self.kind!r} fills {want} slot(s); got slots {self.slots}")
        if any(not 0 <= s < ACTION_DIM for s in self.slots) or len(set(self.slots)) != len(self.slots):
            raise ValueError(f"field {self.name!r}: slots {self.slots} must be distinct and in 0..{ACTION_DIM - 1}")
        if self.order not in ("xyzw", "wxyz"):
            raise ValueError(f"field {self.name!r}: quaternion order {self.order!r} must be 'xyzw' or 'wxyz'")
        if self.kind == "euler":
            rot._check_seq(self.euler_seq)
        if self.kind == "gripper" and self.closed == self.open:
            raise ValueError(f"field {self.name!r}: gripper closed and open values are both {self.closed}")
        if self.names and len(self.names) != self.size:
            raise ValueError(f"field {self.name!r}: {len(self.names)} names for {self.size} native dims")

    @property
    def size(self) -> int:
        """Native dims this field takes."""
        return {"raw": len(self.slots), "quat": 4, "axis_angle": 3, "euler": 3, "gripper": 1}[self.kind]

    @property
    def dim_names(self) -> tuple[str, ...]:
        return self.names or tuple(f"{self.name}.{i}" for i in range(self.size))

    # native (..., size) float64 -> slot values (..., len(slots)) float64
    def to_slots(self, v: np.ndarray) -> np.ndarray:
        if self.kind == "raw":
            return v
        if self.kind == "quat":
            return rot.wxyz_to_xyzw(v) if self.order == "wxyz" else v
        if self.kind == "axis_angle":
            return rot.axis_angle_to_quat(v)
        if self.kind == "euler":
            return rot.euler_to_quat(v, self.euler_seq)
        return (v - self.closed) / (self.open - self.closed)  # gripper

    # slot values (..., len(slots)) float64 -> native (..., size) float64
    def from_slots(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "raw":
            return x
        if self.kind == "gripper":
            return self.closed + x * (self.open - self.closed)
        q = rot.quat_normalize(x)  # model outputs are not unit quaternions
        if self.kind == "quat":
            return rot.xyzw_to_wxyz(q) if self.order == "wxyz" else q
        if self.kind == "axis_angle":
            return rot.quat_to_axis_angle(q)
        return rot.quat_to_euler(q, self.euler_seq)


def _alias_keys(aliases: Any, owner: str) -> tuple[str, ...]:
    if isinstance(aliases, str):
        aliases = (aliases,)  # a lone string is one alias, not a sequence of characters
    out = tuple(aliases)
    for a in out:
        if not isinstance(a, str) or not a:
            raise ValueError(f"{owner}: aliases must be non-empty strings; got {a!r}")
        if a in _RESERVED_KEYS:
            raise ValueError(f"{owner}: alias {a!r} is reserved for the instruction text; pick another key")
    if len(set(out)) != len(out):
        raise ValueError(f"{owner}: aliases repeat: {list(out)}")
    return out


_RESERVED_KEYS = ("prompt", "task")


@dataclass(frozen=True)
class StateAlias:
    """How another convention sends this robot's state: one key holding it all, or several keys holding parts.

    ``name`` names the convention (``"openpi-libero"``). ``parts`` are ``(key, dims)`` pairs: a sender of this
    convention sends every key, each a float vector whose entries are the native state dims named in ``dims``
    (names from the spec's ``state_names``), in that order. ``None`` marks an entry with no counterpart in this
    robot's state (another gripper, another unit): it is checked and then dropped. When the parts name every
    state dim, :meth:`assemble` rebuilds the native state; otherwise the convention carries only part of it and
    :meth:`assemble` returns ``None`` (lbva's world model does not read the state, so a server can still act).

        StateAlias("openpi-libero", (("observation/state", spec.state_names),))      # the whole state, one key
    """

    name: str
    parts: tuple[tuple[str, tuple[str | None, ...]], ...]

    def __post_init__(self):
        if not self.name:
            raise ValueError("a state alias needs a name (the convention it belongs to, e.g. 'openpi-droid')")
        parts = []
        for part in self.parts:
            if not (isinstance(part, (tuple, list)) and len(part) == 2):
                raise ValueError(f"state alias {self.name!r}: each part is a (key, dims) pair; got {part!r}")
            key, dims = part
            if isinstance(dims, str):
                dims = (dims,)
            dims = tuple(dims)
            _alias_keys((key,), f"state alias {self.name!r}")
            if not dims:
                raise ValueError(f"state alias {self.name!r}: key {key!r} names no dims; list one entry per value it holds")
            parts.append((key, dims))
        if not parts:
            raise ValueError(f"state alias {self.name!r}: declare at least one (key, dims) part")
        keys = [k for k, _ in parts]
        if len(set(keys)) != len(keys):
            raise ValueError(f"state alias {self.name!r}: keys repeat: {keys}")
        named = [d for _, dims in parts for d in dims if d is not None]
        if len(set(named)) != len(named):
            raise ValueError(f"state alias {self.name!r}: a state dim is filled twice: {named}")
        object.__setattr__(self, "parts", tuple(parts))

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.parts)

    def sizes(self) -> dict[str, int]:
        """key -> how many values it holds."""
        return {k: len(dims) for k, dims in self.parts}

    def covers(self, state_names: Sequence[str]) -> bool:
        """Whether the parts fill every native state dim (then :meth:`assemble` rebuilds the state)."""
        return set(state_names) <= {d for _, dims in self.parts for d in dims if d is not None}

    def assemble(self, values: Mapping[str, Any], state_names: Sequence[str]) -> np.ndarray | None:
        """The native state (..., S) float32 from ``values`` (key -> (..., len(dims)) each, every key of this
        convention); ``None`` when the convention does not name every state dim."""
        missing = [k for k in self.keys if k not in values]
        if missing:
            raise ValueError(f"state convention {self.name!r} sends {list(self.keys)}; {missing} missing")
        arrays = {k: np.asarray(values[k], dtype=np.float32) for k in self.keys}
        for key, dims in self.parts:
            if arrays[key].ndim == 0 or arrays[key].shape[-1] != len(dims):
                raise ValueError(f"{key}: expected (..., {len(dims)}) values ({', '.join(map(str, dims))}); got {arrays[key].shape}")
        if not self.covers(state_names):
            return None
        where = {d: (key, i) for key, dims in self.parts for i, d in enumerate(dims) if d is not None}
        return np.stack([arrays[where[n][0]][..., where[n][1]] for n in state_names], axis=-1)


def _fields_dim(fields: Sequence[FieldSpec]) -> int:
    return sum(f.size for f in fields)


def _check_fields(fields: Sequence[FieldSpec], what: str, robot: str) -> None:
    seen: dict[int, str] = {}
    for f in fields:
        for s in f.slots:
            if s in seen:
                raise ValueError(f"{robot}: {what} fields {seen[s]!r} and {f.name!r} both fill slot {s}")
            seen[s] = f.name


def _to_slots(fields: Sequence[FieldSpec], a, what: str, robot: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    dim = _fields_dim(fields)
    if a.ndim == 0 or a.shape[-1] != dim:
        raise ValueError(
            f"{robot}: native {what} must have shape (..., {dim}); got {a.shape}. Check that the data comes from "
            f"this robot ({', '.join(n for f in fields for n in f.dim_names)})"
        )
    out = np.zeros(a.shape[:-1] + (ACTION_DIM,), dtype=np.float64)
    i = 0
    for f in fields:
        out[..., list(f.slots)] = f.to_slots(a[..., i : i + f.size])
        i += f.size
    return out.astype(np.float32)


def _from_slots(fields: Sequence[FieldSpec], x, what: str, robot: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] != ACTION_DIM:
        raise ValueError(f"{robot}: unified {what} must have shape (..., {ACTION_DIM}); got {x.shape}")
    parts = [f.from_slots(x[..., list(f.slots)]) for f in fields]
    return np.concatenate(parts, axis=-1).astype(np.float32)


@dataclass(frozen=True, eq=False)
class ActionStats:
    """Per-slot normalisation quantiles in unified-slot units, and where they come from."""

    q01: np.ndarray
    q99: np.ndarray
    source: str = "unknown"

    def __post_init__(self):
        for name in ("q01", "q99"):
            v = np.asarray(getattr(self, name), dtype=np.float32)
            if v.shape != (ACTION_DIM,):
                raise StatsError(
                    f"ActionStats.{name} must have shape ({ACTION_DIM},) (one value per unified slot); got {v.shape}"
                    f" from {self.source}. Compute statistics with `lbva prepare` or pad to {ACTION_DIM} slots."
                )
            if not np.all(np.isfinite(v)):
                raise StatsError(f"ActionStats.{name} from {self.source} has non-finite values: {v.tolist()}")
            if np.abs(v).max() > MAX_ABS_STATISTIC:
                slot = int(np.abs(v).argmax())
                raise StatsError(
                    f"ActionStats.{name}[{slot}] = {float(v[slot]):g} from {self.source} is beyond ±{MAX_ABS_STATISTIC:g}: "
                    "not a statistic of real actions. Recompute the statistics with `lbva prepare`"
                )
            object.__setattr__(self, name, v)

    @classmethod
    def load(cls, path: str | Path) -> ActionStats:
        """Read a JSON file with ``q01`` and ``q99`` lists of 30 numbers (``source`` optional)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"statistics file {path} does not exist; run `lbva prepare` or fix stats_path") from None
        except json.JSONDecodeError as e:
            raise StatsError(f"statistics file {path} is not valid JSON ({e}); it must hold q01 and q99 lists") from e
        if not isinstance(data, dict) or "q01" not in data or "q99" not in data:
            raise StatsError(f"statistics file {path} must be a JSON object with 'q01' and 'q99' lists of {ACTION_DIM} numbers")
        try:
            q01, q99 = np.asarray(data["q01"], np.float32), np.asarray(data["q99"], np.float32)
        except (TypeError, ValueError) as e:
            raise StatsError(f"statistics file {path}: q01 and q99 must be lists of {ACTION_DIM} numbers ({e})") from None
        return cls(q01=q01, q99=q99, source=str(data.get("source", path)))

    def to_dict(self) -> dict[str, Any]:
        return {"q01": self.q01.tolist(), "q99": self.q99.tolist(), "source": self.source}


def _array_module(x):
    """numpy arrays in, numpy out; torch tensors in, torch out (without importing torch otherwise)."""
    mod = type(x).__module__
    return "torch" if mod.startswith("torch") else "numpy"


def _prep(x, stats: ActionStats, used_mask):
    used = np.array(used_mask, dtype=bool)  # a writable copy (torch refuses read-only buffers)
    if used.shape != (ACTION_DIM,):
        raise ValueError(f"used_mask must be a bool array of shape ({ACTION_DIM},); got {used.shape}")
    if stats is None:
        raise ValueError("normalisation needs ActionStats (q01/q99); got None. Set embodiment.stats_path or prepare a cache")
    denom = (stats.q99 - stats.q01).astype(np.float64)
    denom = np.where(denom == 0, 1e-8, denom)  # identical quantiles: LeRobot's epsilon
    if _array_module(x) == "torch":
        import torch

        t = x if torch.is_floating_point(x) else x.float()
        as_t = lambda v: torch.as_tensor(v, dtype=t.dtype, device=t.device)  # noqa: E731
        return t, as_t(stats.q01), as_t(denom), torch.as_tensor(used, device=t.device), torch.where
    xa = np.asarray(x)
    xa = xa if np.issubdtype(xa.dtype, np.floating) else xa.astype(np.float32)
    return xa, stats.q01.astype(xa.dtype), denom.astype(xa.dtype), used, np.where


def normalize(x30, stats: ActionStats, used_mask):
    """Unified slots (..., 30) -> [−1, 1] on used channels (q01 → −1, q99 → +1), exactly 0 elsewhere.

    Works on numpy arrays and torch tensors (returns the same kind). Values outside [q01, q99] map outside
    [−1, 1]; nothing is clipped.
    """
    _check_last(x30)
    x, q01, denom, used, where = _prep(x30, stats, used_mask)
    y = 2.0 * (x - q01) / denom - 1.0
    return where(used, y, 0.0 * q01)


def denormalize(y30, stats: ActionStats, used_mask):
    """Inverse of :func:`normalize`: (..., 30) in [−1, 1] -> unified slots; unused channels exactly 0."""
    _check_last(y30)
    y, q01, denom, used, where = _prep(y30, stats, used_mask)
    x = (y + 1.0) * denom / 2.0 + q01
    return where(used, x, 0.0 * q01)


def _check_last(x) -> None:
    shape = tuple(getattr(x, "shape", np.shape(x)))
    if not shape or shape[-1] != ACTION_DIM:
        raise ValueError(f"expected unified slots of shape (..., {ACTION_DIM}); got {shape}")


@dataclass(frozen=True, eq=False)
class EmbodimentSpec:
    """A robot as lbva sees it. Built by plugins; see :mod:`lbva.embodiment.builtin` for examples.

    ``action_fields`` / ``state_fields`` describe the native vectors in order; ``used_mask`` (derived)
    marks the action slots this robot fills, which are the channels the loss and the metrics use.
    """

    name: str
    cameras: tuple[CameraSpec, ...]
    camera_layout: str
    action_fields: tuple[FieldSpec, ...]
    state_fields: tuple[FieldSpec, ...]
    control_hz: float
    actions_per_frame: int
    chunk_frames: int
    action_low: np.ndarray
    action_high: np.ndarray
    stats: ActionStats | None = None
    description: str = ""
    notes: str = ""
    state_key: str = "observation.state"
    action_key: str = "action"
    state_aliases: tuple[StateAlias, ...] = ()  # other conventions' keys for the state (see StateAlias)
    used_mask: np.ndarray = field(init=False, repr=False)
    state_used_mask: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        name = self.name
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            raise ValueError(f"embodiment name {name!r} must be non-empty and use letters, digits, '-', '_' or '.'")
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "action_fields", tuple(self.action_fields))
        object.__setattr__(self, "state_fields", tuple(self.state_fields))
        if not self.cameras:
            raise ValueError(f"{name}: declare at least one camera")
        keys = [c.key for c in self.cameras]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{name}: camera keys repeat: {keys}")
        self._check_aliases()
        if self.camera_layout not in CAMERA_LAYOUTS:
            raise ValueError(f"{name}: camera_layout {self.camera_layout!r} is not one of {CAMERA_LAYOUTS}")
        self._check_layout()
        if not self.action_fields:
            raise ValueError(f"{name}: declare at least one action field")
        _check_fields(self.action_fields, "action", name)
        _check_fields(self.state_fields, "state", name)
        if self.control_hz <= 0 or self.actions_per_frame < 1 or self.chunk_frames < 1:
            raise ValueError(
                f"{name}: control_hz ({self.control_hz}), actions_per_frame ({self.actions_per_frame}) and "
                f"chunk_frames ({self.chunk_frames}) must be positive"
            )
        for attr in ("action_low", "action_high"):
            v = np.asarray(getattr(self, attr), dtype=np.float32)
            if v.shape != (self.native_action_dim,):
                raise ValueError(f"{name}: {attr} must have shape ({self.native_action_dim},); got {v.shape}")
            v.setflags(write=False)
            object.__setattr__(self, attr, v)
        if np.any(self.action_low > self.action_high):
            raise ValueError(f"{name}: action_low exceeds action_high at dims {np.nonzero(self.action_low > self.action_high)[0].tolist()}")
        for attr, fields in (("used_mask", self.action_fields), ("state_used_mask", self.state_fields)):
            m = np.zeros(ACTION_DIM, dtype=bool)
            for f in fields:
                m[list(f.slots)] = True
            m.setflags(write=False)
            object.__setattr__(self, attr, m)
        if self.stats is not None and not isinstance(self.stats, ActionStats):
            raise TypeError(f"{name}: stats must be ActionStats or None; got {type(self.stats).__name__}")

    # -- other conventions' keys --------------------------------------------------------------------------
    def _check_aliases(self) -> None:
        object.__setattr__(self, "state_aliases", tuple(self.state_aliases))
        taken = {c.key: f"camera {c.key}" for c in self.cameras} | {self.state_key: "the state"}
        for owner, keys in [(f"camera {c.key}", c.aliases) for c in self.cameras] + \
                           [(f"state alias {a.name!r}", a.keys) for a in self.state_aliases]:
            for k in keys:
                if k in taken:
                    raise ValueError(f"{self.name}: key {k!r} of {owner} is already used by {taken[k]}; keys must be unique")
                taken[k] = owner
        if self.state_aliases and not self.state_fields:
            raise ValueError(f"{self.name}: state_aliases need state fields to map onto; this robot declares none")
        names = set(self.state_names)
        for alias in self.state_aliases:
            if not isinstance(alias, StateAlias):
                raise TypeError(f"{self.name}: state_aliases hold StateAlias objects; got {type(alias).__name__}")
            unknown = [d for _, dims in alias.parts for d in dims if d is not None and d not in names]
            if unknown:
                raise ValueError(
                    f"{self.name}: state alias {alias.name!r} names {unknown}, which are not state dims of this robot "
                    f"({', '.join(self.state_names) or 'none'}); use None for values this robot has no dim for"
                )

    def camera_for_key(self, key: str) -> CameraSpec | None:
        """The camera whose frames arrive under ``key`` (its own key or one of its aliases), else ``None``."""
        for cam in self.cameras:
            if key == cam.key or key in cam.aliases:
                return cam
        return None

    def state_alias_for_key(self, key: str) -> StateAlias | None:
        """The state convention that sends ``key``, else ``None``."""
        for alias in self.state_aliases:
            if key in alias.keys:
                return alias
        return None

    # -- dims ------------------------------------------------------------------------------------------
    @property
    def native_action_dim(self) -> int:
        return _fields_dim(self.action_fields)

    @property
    def native_state_dim(self) -> int:
        return _fields_dim(self.state_fields)

    @property
    def action_names(self) -> tuple[str, ...]:
        return tuple(n for f in self.action_fields for n in f.dim_names)

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(n for f in self.state_fields for n in f.dim_names)

    @property
    def used_slots(self) -> tuple[int, ...]:
        return tuple(int(i) for i in np.nonzero(self.used_mask)[0])

    # -- slot mapping ----------------------------------------------------------------------------------
    def action_to_slots(self, a) -> np.ndarray:
        """Native actions (..., A) -> unified slots (..., 30) float32; unused slots 0."""
        return _to_slots(self.action_fields, a, "action", self.name)

    def slots_to_action(self, x) -> np.ndarray:
        """Unified slots (..., 30) -> native actions (..., A) float32 (quaternions re-normalised)."""
        return _from_slots(self.action_fields, x, "action", self.name)

    def state_to_slots(self, s) -> np.ndarray:
        """Native states (..., S) -> unified slots (..., 30) float32."""
        if not self.state_fields:
            raise ValueError(f"{self.name} declares no state fields")
        return _to_slots(self.state_fields, s, "state", self.name)

    def slots_to_state(self, x) -> np.ndarray:
        """Unified slots (..., 30) -> native states (..., S) float32."""
        if not self.state_fields:
            raise ValueError(f"{self.name} declares no state fields")
        return _from_slots(self.state_fields, x, "state", self.name)

    def clip_action(self, a) -> np.ndarray:
        """Native actions clipped to [action_low, action_high] (what a controller may be sent)."""
        return np.clip(np.asarray(a, dtype=np.float32), self.action_low, self.action_high)

    # -- statistics ------------------------------------------------------------------------------------
    def with_stats(self, stats: ActionStats | None) -> EmbodimentSpec:
        """A copy of this spec carrying ``stats``."""
        return dataclasses.replace(self, stats=stats)

    def normalize_actions(self, x30):
        return normalize(x30, self._need_stats(), self.used_mask)

    def denormalize_actions(self, y30):
        return denormalize(y30, self._need_stats(), self.used_mask)

    def _need_stats(self) -> ActionStats:
        if self.stats is None:
            raise ValueError(
                f"{self.name} has no action statistics: set embodiment.stats_path in the recipe, or use the cache's "
                "statistics (`spec.with_stats(cache.stats())`)"
            )
        return self.stats

    # -- cameras ---------------------------------------------------------------------------------------
    def _check_layout(self) -> None:
        cams, layout = self.cameras, self.camera_layout
        if layout == "single" and len(cams) != 1:
            raise ValueError(f"{self.name}: layout 'single' takes exactly one camera; got {len(cams)}")
        if layout == "width_concat" and len({c.height for c in cams}) != 1:
            raise ValueError(f"{self.name}: layout 'width_concat' needs cameras of one height; got {[(c.key, c.height) for c in cams]}")
        if layout == "robotwin_tshape":
            if len(cams) != 3:
                raise ValueError(f"{self.name}: layout 'robotwin_tshape' takes 3 cameras (head, left wrist, right wrist)")
            head, left, right = cams
            want = (head.height // 2, head.width // 2)
            if head.height % 2 or head.width % 2 or (left.height, left.width) != want or (right.height, right.width) != want:
                raise ValueError(
                    f"{self.name}: layout 'robotwin_tshape' needs an even-sized head camera and two wrist cameras of "
                    f"half its size {want}; got {[(c.key, c.height, c.width) for c in cams]}"
                )

    @property
    def frame_size(self) -> tuple[int, int]:
        """(H, W) of the tiled frame."""
        cams = self.cameras
        if self.camera_layout == "robotwin_tshape":
            return cams[0].height + cams[1].height, cams[0].width
        return cams[0].height, sum(c.width for c in cams)

    def _placements(self) -> list[tuple[CameraSpec, int, int]]:
        """(camera, top, left) of every view in the tiled frame."""
        cams = self.cameras
        if self.camera_layout == "robotwin_tshape":
            head, left, right = cams
            # wrists side by side on top, head below (as the released RoboTwin model's latents are laid out)
            return [(left, 0, 0), (right, 0, left.width), (head, left.height, 0)]
        out, x = [], 0
        for c in cams:
            out.append((c, 0, x))
            x += c.width
        return out

    def tile(self, frames: Mapping[str, np.ndarray]) -> np.ndarray:
        """Per camera key (..., h, w, 3) -> one frame (..., H, W, 3) as ``camera_layout`` arranges them.

        Every view must already have its declared size (resize first); leading axes must agree.
        """
        missing = [c.key for c in self.cameras if c.key not in frames]
        if missing:
            raise KeyError(f"{self.name}: camera(s) {missing} missing from the frames; got keys {sorted(frames)}")
        views = {c.key: np.asarray(frames[c.key]) for c in self.cameras}
        lead = None
        for c in self.cameras:
            v = views[c.key]
            if v.shape[-3:] != (c.height, c.width, 3):
                raise ValueError(
                    f"{self.name}: camera {c.key} must be (..., {c.height}, {c.width}, 3); got {v.shape}. Resize views to "
                    "the declared size before tiling"
                )
            if lead is None:
                lead = v.shape[:-3]
            elif v.shape[:-3] != lead:
                raise ValueError(f"{self.name}: camera {c.key} has leading axes {v.shape[:-3]}, others {lead}")
        first = views[self.cameras[0].key]
        h, w = self.frame_size
        out = np.zeros(lead + (h, w, 3), dtype=first.dtype)
        for cam, top, left in self._placements():
            out[..., top : top + cam.height, left : left + cam.width, :] = views[cam.key]
        return out

    def untile(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        """Inverse of :meth:`tile`: (..., H, W, 3) -> per camera key (..., h, w, 3) (e.g. imagined video)."""
        frame = np.asarray(frame)
        if frame.shape[-3:] != (*self.frame_size, 3):
            raise ValueError(f"{self.name}: tiled frames must be (..., {self.frame_size[0]}, {self.frame_size[1]}, 3); got {frame.shape}")
        return {c.key: frame[..., t : t + c.height, l : l + c.width, :] for c, t, l in self._placements()}

    # -- description -----------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Plain-data summary (for `lbva embodiments show` and logs)."""

        def fields(fs):
            return [
                {"name": f.name, "kind": f.kind, "dims": list(f.dim_names), "slots": list(f.slots)}
                | ({"order": f.order} if f.kind == "quat" else {})
                | ({"euler_seq": f.euler_seq} if f.kind == "euler" else {})
                | ({"closed": f.closed, "open": f.open} if f.kind == "gripper" else {})
                for f in fs
            ]

        return {
            "name": self.name,
            "description": self.description,
            "cameras": [{"key": c.key, "height": c.height, "width": c.width}
                        | ({"aliases": list(c.aliases)} if c.aliases else {}) for c in self.cameras],
            "camera_layout": self.camera_layout,
            "frame_size": list(self.frame_size),
            "control_hz": self.control_hz,
            "actions_per_frame": self.actions_per_frame,
            "chunk_frames": self.chunk_frames,
            "native_action_dim": self.native_action_dim,
            "native_state_dim": self.native_state_dim,
            "action_fields": fields(self.action_fields),
            "state_fields": fields(self.state_fields),
            "state_aliases": [{"name": a.name, "parts": {k: list(d) for k, d in a.parts}} for a in self.state_aliases],
            "used_slots": list(self.used_slots),
            "action_low": self.action_low.tolist(),
            "action_high": self.action_high.tolist(),
            "stats": None if self.stats is None else self.stats.source,
            "notes": self.notes,
        }
