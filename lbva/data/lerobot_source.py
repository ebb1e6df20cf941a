"""Read a local LeRobot dataset through ``lerobot``'s ``LeRobotDataset`` and map it through an embodiment.

Axis legend: T frames, h/w a camera's pixels, H/W the tiled frame, A native action dim.

Only local folders are read: the dataset's ``meta/info.json`` must exist, so ``lerobot`` never reaches for the
Hub. Segments come from each episode's ``action_config`` (a column of the episodes metadata, or a v2.1-style
``meta/episodes.jsonl`` beside it, which is where the LingBot-VA release keeps it); an episode without one is
a single segment carrying its task text.
"""

from __future__ import annotations

import json
import logging
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from lbva.data.errors import DataError, MissingCameraError, VideoDecodeError
from lbva.data.segments import Segment, parse_action_config, read_jsonl_action_configs

logger = logging.getLogger(__name__)

SUPPORTED_VERSIONS = ("v3.",)
LEROBOT_SINGLE_CAMERA = "observation.image"  # LeRobot's OBS_IMAGE: the key of its one-camera datasets (PushT, Meta-World)


def check_dataset_root(root: str | Path) -> Path:
    root = Path(root).expanduser()
    info = root / "meta" / "info.json"
    if not info.is_file():
        raise DataError(
            f"{root} is not a local LeRobot dataset (no meta/info.json). Pass the dataset's root folder; "
            "datasets are never downloaded here — fetch one first (e.g. `huggingface-cli download --repo-type "
            "dataset ORG/NAME --local-dir DIR`)."
        )
    version = json.loads(info.read_text()).get("codebase_version", "?")
    if not str(version).startswith(SUPPORTED_VERSIONS):
        raise DataError(
            f"{root} is a LeRobot {version} dataset; the installed lerobot reads {', '.join(SUPPORTED_VERSIONS)}x. "
            "Convert it with `python -m lerobot.scripts.convert_dataset_v21_to_v30 --repo-id NAME --root DIR`."
        )
    return root


class LeRobotSource:
    """A LeRobot dataset seen through an embodiment: tiled camera frames, native actions, segments.

    ``spec`` (an ``EmbodimentSpec``) may be None for metadata only (``lbva dataset info``).

    Each of the embodiment's keys (cameras, state, action) is found in the dataset under, in this order: a
    ``key_map`` entry (``{dataset_key: embodiment_key}``, a recipe's ``data.key_map``), the key itself, one of the
    camera's declared ``aliases``, or — for a one-camera embodiment — LeRobot's own single-camera key
    ``observation.image``. :attr:`keys` holds the result (embodiment key -> dataset key).
    """

    def __init__(self, root: str | Path, spec: Any | None = None, video_backend: str | None = None,
                 key_map: dict[str, str] | None = None):
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        from lerobot.datasets.video_utils import get_safe_default_video_backend

        self.root = check_dataset_root(root)
        self.spec = spec
        self.video_backend = video_backend or get_safe_default_video_backend()
        try:
            self.dataset = LeRobotDataset(
                repo_id=f"local/{self.root.name}", root=self.root, video_backend=self.video_backend
            )
        except Exception as e:  # lerobot raises many kinds; keep its message
            raise DataError(f"lerobot could not open the dataset at {self.root}: {type(e).__name__}: {e}") from e
        self.meta = self.dataset.meta
        self.key_map = dict(key_map or {})
        self.keys: dict[str, str] = {}
        if spec is not None:
            self.keys = self._resolve_keys()
            self._check_features()

    # -- metadata ---------------------------------------------------------------------------------------------
    @property
    def fps(self) -> float:
        return float(self.meta.fps)

    @property
    def num_episodes(self) -> int:
        return int(self.meta.total_episodes)

    @property
    def num_frames(self) -> int:
        return int(self.meta.total_frames)

    @property
    def camera_keys(self) -> list[str]:
        return list(self.meta.camera_keys)

    def _resolve_keys(self) -> dict[str, str]:
        """Embodiment key -> dataset key, for every camera and the state/action vectors."""
        feats = set(self.meta.features)
        unknown = sorted(set(self.key_map) - feats)
        if unknown:
            raise DataError(
                f"data.key_map names {unknown}, which the dataset at {self.root} does not have; its features are "
                f"{sorted(feats)}"
            )
        wanted = [c.key for c in self.spec.cameras] + [self.spec.state_key, self.spec.action_key]
        targets = sorted(set(self.key_map.values()) - set(wanted))
        if targets:
            raise DataError(
                f"data.key_map maps onto {targets}, which embodiment {self.spec.name!r} does not read; its keys are "
                f"{wanted}"
            )
        mapped = {v: k for k, v in self.key_map.items()}
        keys = {}
        for key in wanted:
            cam = next((c for c in self.spec.cameras if c.key == key), None)
            candidates = [mapped.get(key), key, *(getattr(cam, "aliases", ()) if cam is not None else ())]
            if cam is not None and len(self.spec.cameras) == 1:
                candidates.append(LEROBOT_SINGLE_CAMERA)
            found = next((k for k in candidates if k is not None and k in feats), None)
            if found is not None:
                keys[key] = found
                if found != key:
                    logger.info("%s: reading the embodiment's %r from the dataset's %r", self.root.name, key, found)
        return keys

    def _check_features(self) -> None:
        feats = self.meta.features
        have = self.camera_keys
        for cam in self.spec.cameras:
            if cam.key not in self.keys or self.keys[cam.key] not in have:
                raise MissingCameraError(
                    f"embodiment {self.spec.name!r} needs camera {cam.key!r}, but the dataset at {self.root} has "
                    f"cameras {have or 'none'}. Map one onto it with data.key_map (e.g. "
                    f"`data.key_map='{{{(have or ['observation.images.front'])[0]}: {cam.key}}}'`), record that camera, or "
                    "use/register an embodiment whose cameras match the dataset (see `lbva embodiments`)."
                )
        for name, want, what in (
            (self.spec.action_key, self.spec.native_action_dim, "native_action_dim"),
            (self.spec.state_key, self.spec.native_state_dim, "native_state_dim"),
        ):
            key = self.keys.get(name)
            if key is None:
                if name == self.spec.state_key:
                    continue  # state is optional for training
                raise DataError(
                    f"the dataset at {self.root} has no {name!r} feature; it has {sorted(feats)}. Map the one that "
                    f"holds the actions with data.key_map"
                )
            shape = tuple(feats[key]["shape"])
            if shape != (want,):
                raise DataError(
                    f"dataset feature {key!r} has shape {shape}, but embodiment {self.spec.name!r} declares "
                    f"{what}={want}: pick the embodiment that matches this robot"
                )

    @cached_property
    def _episodes(self) -> list[dict]:
        eps = self.meta.episodes
        return [eps[i] for i in range(len(eps))] if eps is not None else []

    @cached_property
    def _by_index(self) -> dict[int, dict]:
        return {int(ep["episode_index"]): ep for ep in self._episodes}

    def episode(self, episode_index: int) -> dict:
        try:
            return self._by_index[int(episode_index)]
        except KeyError:
            raise DataError(
                f"episode {episode_index} is not in the dataset at {self.root} ({self.num_episodes} episodes)"
            ) from None

    def episode_indices(self) -> list[int]:
        return [int(ep["episode_index"]) for ep in self._episodes]

    def episode_length(self, episode_index: int) -> int:
        return int(self.episode(episode_index)["length"])

    def episode_task(self, episode_index: int) -> str:
        tasks = self.episode(episode_index).get("tasks") or []
        return str(tasks[0]) if len(tasks) else ""

    def segments(self) -> list[Segment]:
        """Every segment of every episode, in episode order."""
        sidecar = read_jsonl_action_configs(self.root)
        out: list[Segment] = []
        for ep in self._episodes:
            idx = int(ep["episode_index"])
            raw = ep.get("action_config", sidecar.get(idx))
            if raw is None:
                raw = sidecar.get(idx)
            out += parse_action_config(raw, idx, int(ep["length"]), self.episode_task(idx))
        return out

    # -- actions ----------------------------------------------------------------------------------------------
    def _rows(self, key: str, start: int, stop: int) -> np.ndarray:
        hf = self.dataset.hf_dataset.with_format("numpy", columns=[key])
        return np.asarray(hf[start:stop][key], dtype=np.float32)

    def episode_actions(self, episode_index: int) -> np.ndarray:
        """Native actions of one episode, (L, A) float32."""
        ep = self.episode(episode_index)
        return self._rows(self.keys[self.spec.action_key], int(ep["dataset_from_index"]), int(ep["dataset_to_index"]))

    def episode_states(self, episode_index: int) -> np.ndarray:
        """Native states of one episode, (L, S) float32."""
        ep = self.episode(episode_index)
        return self._rows(self.keys[self.spec.state_key], int(ep["dataset_from_index"]), int(ep["dataset_to_index"]))

    def all_actions(self) -> np.ndarray:
        """Native actions of every frame of the dataset, (total_frames, A) float32."""
        return self._rows(self.keys[self.spec.action_key], 0, len(self.dataset.hf_dataset))

    # -- frames -----------------------------------------------------------------------------------------------
    def read_camera(self, episode_index: int, key: str, rows: list[int]) -> np.ndarray:
        """uint8 (T, h, w, 3) frames of one camera (the embodiment's ``key``, read from the dataset key it maps to)
        at episode-local ``rows``, resized to the spec's camera size."""
        import torch
        from lerobot.datasets.video_utils import decode_video_frames

        cam = next((c for c in self.spec.cameras if c.key == key), None) if self.spec is not None else None
        key = self.keys.get(key, key)
        ep = self.episode(episode_index)
        if key in self.meta.video_keys:
            path = self.root / self.meta.get_video_file_path(episode_index, key)
            if not path.is_file():
                raise VideoDecodeError(
                    f"video for episode {episode_index}, camera {key!r} is missing: {path}. Restore the file, or "
                    "drop the episode from the dataset."
                )
            t0 = float(ep[f"videos/{key}/from_timestamp"])
            stamps = [t0 + r / self.fps for r in rows]
            try:
                frames = decode_video_frames(
                    path, stamps, tolerance_s=0.5 / self.fps, backend=self.video_backend, return_uint8=True
                )  # (T, 3, h, w)
            except Exception as e:
                raise VideoDecodeError(
                    f"cannot decode episode {episode_index}, camera {key!r} from {path} "
                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). The file may be truncated "
                    "or in a codec this machine cannot decode; re-encode it or drop the episode."
                ) from e
            frames = frames.permute(0, 2, 3, 1)
        else:  # image feature: decoded by the hf dataset row by row
            base = int(ep["dataset_from_index"])
            hf = self.dataset.hf_dataset
            frames = torch.stack([torch.as_tensor(np.asarray(hf[base + r][key])) for r in rows])
            if frames.dtype != torch.uint8:  # lerobot's torch transform gives float CHW in [0, 1]
                frames = (frames.float() * 255).round().clamp(0, 255).to(torch.uint8)
            if frames.shape[-1] != 3:
                frames = frames.permute(0, 2, 3, 1)
        if cam is not None and tuple(frames.shape[1:3]) != (cam.height, cam.width):
            x = frames.permute(0, 3, 1, 2).float()
            x = torch.nn.functional.interpolate(x, size=(cam.height, cam.width), mode="bilinear", antialias=True)
            frames = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return frames.contiguous().numpy()

    def read_tiled(self, episode_index: int, rows: list[int]) -> np.ndarray:
        """uint8 (T, H, W, 3): every camera at ``rows``, tiled as the embodiment declares."""
        views = {cam.key: self.read_camera(episode_index, cam.key, rows) for cam in self.spec.cameras}
        return np.asarray(self.spec.tile(views))

    def check_videos(self, progress: bool = False) -> int:
        """Decode the first and last frame of every episode and camera; raise VideoDecodeError on the first failure."""
        from tqdm.auto import tqdm

        keys = [c.key for c in self.spec.cameras] if self.spec is not None else list(self.meta.video_keys)
        checked = 0
        for ep in tqdm(self.episode_indices(), desc="checking videos", disable=not progress):
            last = self.episode_length(ep) - 1
            for key in keys:
                self.read_camera(ep, key, sorted({0, last}))
                checked += 1
        return checked

    # -- summary ----------------------------------------------------------------------------------------------
    def info(self) -> dict:
        segs = self.segments()
        return {
            "root": str(self.root),
            "episodes": self.num_episodes,
            "frames": self.num_frames,
            "fps": self.fps,
            "cameras": {
                k: list(self.meta.features[k]["shape"]) for k in self.camera_keys
            },
            "segments": len(segs),
            "instructions": len({s.text for s in segs}),
            "features": {k: v["dtype"] for k, v in self.meta.features.items()},
        }
