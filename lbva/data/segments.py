"""Episode segments and the time alignment of video frames, latent frames and actions.

Axis legend: T video frames (after resampling), F latent frames, N actions per latent frame, A = 30 slots.

Time bookkeeping (one dataset row = one control step = one action):

* τ = actions per *video* frame: the video is resampled by keeping every τ-th row, frames ``start, start+τ, …``.
* s = the video encoder's temporal stride; N = s·τ = ``spec.actions_per_frame`` actions per *latent* frame.
* A causal encoder turns T = 1 + s·k video frames into F = 1 + k latent frames: latent frame 0 is the first
  video frame alone, latent frame f ≥ 1 covers video frames (f−1)·s+1 … f·s.
* The actions of latent frame f ≥ 1 are the N rows that lead from latent frame f−1 to f, i.e. rows
  ``start + (f−1)·N … start + f·N − 1``; latent frame 0 is the conditioning frame: zero actions, not valid.

This mirrors the released LingBot-VA: its dataset pads N zero actions in front of the segment's actions and
its server fixes the first chunk's frame-0 actions to zero (so does lbva's ``ChunkPredictor.decode_actions``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lbva.data.errors import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Segment:
    """Frames ``[start, end)`` of one episode (episode-local row indices) with their instruction."""

    episode_index: int
    start: int
    end: int
    text: str

    @property
    def name(self) -> str:
        return f"episode_{self.episode_index}_{self.start}_{self.end}"


def parse_action_config(raw, episode_index: int, length: int, fallback_text: str) -> list[Segment]:
    """Segments from an episode's ``action_config`` (a list of dicts, or its JSON text), or one for the episode.

    Each entry has ``start_frame``, ``end_frame`` (episode-local, end exclusive) and ``action_text`` — the
    layout the LingBot-VA release reads from its episodes metadata. Entries without ``action_text`` use
    the episode's task.
    """
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return [Segment(episode_index, 0, length, fallback_text)]
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataError(f"episode {episode_index}: action_config is not valid JSON ({e}): {raw!r:.200}") from e
    if isinstance(raw, dict):
        raw = [raw]
    raw = list(raw)
    if not raw:
        return [Segment(episode_index, 0, length, fallback_text)]
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or "start_frame" not in entry or "end_frame" not in entry:
            raise DataError(
                f"episode {episode_index}: action_config[{i}] = {entry!r} must be a mapping with start_frame, "
                "end_frame and action_text (e.g. {'start_frame': 0, 'end_frame': 120, 'action_text': 'open the drawer'})"
            )
        start, end = int(entry["start_frame"]), int(entry["end_frame"])
        if not 0 <= start < end <= length:
            raise DataError(
                f"episode {episode_index}: action_config[{i}] spans frames [{start}, {end}) but the episode has "
                f"{length} frames; segments must satisfy 0 <= start_frame < end_frame <= length"
            )
        text = entry.get("action_text") or fallback_text
        out.append(Segment(episode_index, start, end, str(text)))
    return out


def read_jsonl_action_configs(root: Path) -> dict[int, object]:
    """``action_config`` per episode from a v2.1-style ``meta/episodes.jsonl`` (how the release stores it)."""
    path = Path(root) / "meta" / "episodes.jsonl"
    if not path.is_file():
        return {}
    out: dict[int, object] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n} is not valid JSON: {e}") from e
        if "action_config" in obj:
            out[int(obj["episode_index"])] = obj["action_config"]
    return out


def frame_stride(actions_per_frame: int, temporal_stride: int) -> int:
    """τ, the dataset rows per resampled video frame, from N = s·τ."""
    if actions_per_frame % temporal_stride:
        raise DataError(
            f"the embodiment's actions_per_frame N={actions_per_frame} is not a multiple of the video encoder's "
            f"temporal stride s={temporal_stride} (N = s·τ): pick an embodiment/encoder pair where s divides N"
        )
    return actions_per_frame // temporal_stride


def sample_frame_ids(start: int, end: int, tau: int, temporal_stride: int) -> list[int]:
    """Episode-local rows of the resampled video frames: every τ-th row, trimmed to 1 + s·k frames."""
    ids = list(range(start, end, tau))
    k = (len(ids) - 1) // temporal_stride
    return ids[: 1 + temporal_stride * k]


def latent_frame_count(num_video_frames: int, temporal_stride: int) -> int:
    return 1 + (num_video_frames - 1) // temporal_stride


def segment_actions(
    action_slots: np.ndarray, start: int, num_latent_frames: int, actions_per_frame: int
) -> tuple[np.ndarray, np.ndarray]:
    """(F, N, 30) raw slot actions of a segment and (F, N) validity.

    ``action_slots`` holds the episode's actions in slots, one row per dataset frame (episode-local).
    Frame 0 gets zeros (invalid); frame f ≥ 1 gets rows start+(f−1)·N … start+f·N−1.
    """
    n = actions_per_frame
    f = num_latent_frames
    rows = action_slots[start : start + (f - 1) * n]
    if len(rows) != (f - 1) * n:
        raise DataError(
            f"segment at row {start} needs {(f - 1) * n} actions for {f} latent frames, the episode has {len(rows)}"
        )
    out = np.zeros((f, n, action_slots.shape[-1]), dtype=np.float32)
    out[1:] = rows.reshape(f - 1, n, -1)
    valid = np.ones((f, n), dtype=bool)
    valid[0] = False
    return out, valid
