"""Action statistics over the unified 30 slots: q01/q99 per used channel (the release's normalisation).

Axis legend: R action rows (one per dataset frame), A = 30 slots.
"""

from __future__ import annotations

import numpy as np


def action_quantiles(slots: np.ndarray, used_mask: np.ndarray, low: float = 0.01, high: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    """q01, q99 (30,) float32 of (R, 30) slot actions; unused channels get 0 (they are never normalised)."""
    slots = np.asarray(slots, dtype=np.float64)
    used = np.asarray(used_mask, dtype=bool)
    if slots.ndim != 2 or slots.shape[1] != used.shape[0]:
        raise ValueError(f"slot actions must be (rows, {used.shape[0]}), got {slots.shape}")
    if len(slots) == 0:
        raise ValueError("no actions to compute statistics from: the dataset has no frames")
    q = np.quantile(slots, [low, high], axis=0)  # (2, 30)
    q[:, ~used] = 0.0
    return q[0].astype(np.float32), q[1].astype(np.float32)


def stats_record(q01: np.ndarray, q99: np.ndarray, used_mask: np.ndarray, source: str, rows: int) -> dict:
    return {
        "q01": [float(x) for x in q01],
        "q99": [float(x) for x in q99],
        "used_mask": [bool(x) for x in used_mask],
        "source": source,
        "rows": int(rows),
    }


def lerobot_quantiles(root, key: str = "action") -> tuple[np.ndarray, np.ndarray] | None:
    """LeRobot's own q01/q99 of ``key`` from the dataset's ``meta/stats.json`` (native units), or None when the
    dataset carries none (older datasets have only min/max/mean/std)."""
    import json
    from pathlib import Path

    path = Path(root) / "meta" / "stats.json"
    try:
        feature = json.loads(path.read_text()).get(key, {})
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(feature, dict) or "q01" not in feature or "q99" not in feature:
        return None
    q01 = np.asarray(feature["q01"], np.float64).reshape(-1)
    q99 = np.asarray(feature["q99"], np.float64).reshape(-1)
    return (q01, q99) if q01.shape == q99.shape else None


def compare_quantiles(ours: tuple[np.ndarray, np.ndarray], theirs: tuple[np.ndarray, np.ndarray],
                      names: list[str], tolerance: float = 0.1) -> list[str]:
    """Dimensions whose q01 or q99 differ by more than ``tolerance`` of our q01..q99 range (native units),
    each as ``"name: q01 ours vs LeRobot's, q99 ours vs LeRobot's"``. LeRobot estimates its quantiles from
    sampled frames, lbva takes them over every action row, so small differences are expected."""
    (a01, a99), (b01, b99) = (np.asarray(x, np.float64) for x in ours), (np.asarray(x, np.float64) for x in theirs)
    if a01.shape != b01.shape:
        return [f"LeRobot's statistics have {b01.shape[0]} dims, the actions {a01.shape[0]}"]
    span = np.maximum(a99 - a01, 1e-6)
    bad = (np.abs(a01 - b01) > tolerance * span) | (np.abs(a99 - b99) > tolerance * span)
    return [f"{names[i]}: q01 {a01[i]:.4g} vs {b01[i]:.4g}, q99 {a99[i]:.4g} vs {b99[i]:.4g}"
            for i in np.flatnonzero(bad)]
