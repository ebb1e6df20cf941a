"""Action statistics between LeRobot's native action dims and lbva's unified slots.

Axis legend: A = 30 unified action slots, U used channels (``used_action_channel_ids``), D native action dims.

LeRobot's native action dim i is model slot ``used_action_channel_ids[i]``, (un)normalised with q01[i]/q99[i].
lbva maps native dims to slots through the embodiment's fields; a folder maps onto an embodiment whose fields are
linear one-dim-per-slot maps (``raw``, ``gripper``, ``quat`` as a permutation) in the same order. Statistics
convert exactly through those affine maps, so both sides compute the same normalised model inputs and outputs.
"""

from __future__ import annotations

import numpy as np

from lbva.interop.lerobot_folder import LeRobotFolderError


def native_slot_map(spec) -> list[tuple[int, float, float]]:
    """Per native action dim: (slot, a, b) with slot value = a·native + b.

    Raises for fields that are not one-dim-per-slot linear maps (axis-angle / Euler → quaternion), which
    LeRobot's ``used_action_channel_ids`` cannot express."""
    out: list[tuple[int, float, float]] = []
    for f in spec.action_fields:
        if f.kind == "raw":
            out += [(s, 1.0, 0.0) for s in f.slots]
        elif f.kind == "gripper":
            span = f.open - f.closed
            out.append((f.slots[0], 1.0 / span, -f.closed / span))
        elif f.kind == "quat":  # slots hold (x, y, z, w): a permutation of the native order
            x, y, z, w = f.slots
            out += [(s, 1.0, 0.0) for s in ((x, y, z, w) if f.order == "xyzw" else (w, x, y, z))]
        else:
            raise LeRobotFolderError(
                f"embodiment {spec.name!r}: action field {f.name!r} ({f.kind}) turns {f.size} native values into a "
                "quaternion nonlinearly; LeRobot's lingbot_va maps each native action dim to one slot "
                "(used_action_channel_ids), so this embodiment has no LeRobot equivalent"
            )
    return out


def stats_to_slots(spec, q01: np.ndarray, q99: np.ndarray, source: str):
    """LeRobot's native q01/q99 (U,) -> lbva ActionStats (30,) in slot units (order kept, so a gripper whose open
    value is below its closed value gets q01 > q99 on its slot: the normalised values stay LeRobot's)."""
    from lbva.embodiment import ACTION_DIM, ActionStats

    lo, hi = np.zeros(ACTION_DIM, np.float64), np.zeros(ACTION_DIM, np.float64)
    for i, (slot, a, b) in enumerate(native_slot_map(spec)):
        lo[slot], hi[slot] = a * float(q01[i]) + b, a * float(q99[i]) + b
    return ActionStats(lo.astype(np.float32), hi.astype(np.float32), source=source)


def stats_to_native(spec, stats) -> tuple[np.ndarray, np.ndarray]:
    """lbva ActionStats (30,) in slot units -> LeRobot's native q01/q99 (U,), the inverse of :func:`stats_to_slots`."""
    m = native_slot_map(spec)
    q01 = np.array([(float(stats.q01[s]) - b) / a for s, a, b in m], np.float32)
    q99 = np.array([(float(stats.q99[s]) - b) / a for s, a, b in m], np.float32)
    return q01, q99
