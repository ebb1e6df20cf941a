"""``lbva prepare``: encode a LeRobot dataset into the latent cache (resumable, shardable).

Axis legend: T resampled video frames, H/W tiled frame pixels, C latent channels, F latent frames,
h/w latent pixels, N actions per latent frame, A = 30 slots.

Steps: open the dataset through the embodiment; build the encoders (training the embedded VAE on the
dataset's own frames when no trained one is given); plan every segment (resampled frame rows, latent frame
count; the plan is deterministic, so every shard writes the same ``index.json``); compute action statistics;
encode each distinct instruction once; encode this shard's segments, skipping those already on disk.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lbva.data.cache import (
    CACHE_FORMAT,
    INDEX_NAME,
    STATS_NAME,
    CacheIndex,
    SegmentEntry,
    atomic_save_tensors,
    atomic_write_bytes,
    check_fingerprint,
    fingerprint_of,
    text_key,
)
from lbva.data.encoders import build_text_encoder, build_video_encoder, text_encoder_kind
from lbva.data.errors import DataError
from lbva.data.lerobot_source import LeRobotSource
from lbva.data.segments import frame_stride, latent_frame_count, sample_frame_ids, segment_actions
from lbva.data.stats import action_quantiles, compare_quantiles, lerobot_quantiles, stats_record

logger = logging.getLogger(__name__)

EMBEDDED_VAE_DIR = "embedded_vae"
_CACHE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class PrepareReport:
    out: Path
    planned: int = 0  # segments in the whole plan
    mine: int = 0  # segments owned by this shard
    encoded: int = 0
    already_done: int = 0
    too_short: int = 0
    texts_encoded: int = 0
    trained_vae: bool = False
    skipped: list[dict] = field(default_factory=list)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise DataError(f"--shard {text!r} must look like i/n, e.g. 0/4 (shard 0 of 4)") from None
    if n < 1 or not 0 <= i < n:
        raise DataError(f"--shard {text!r}: need 0 <= i < n, e.g. 0/4 … 3/4")
    return i, n


def shard_of(position: int, num_shards: int) -> int:
    """The shard that owns the segment at ``position`` in the plan (round robin: balanced and deterministic)."""
    return position % num_shards


def settings_parts(data_cfg, spec) -> dict[str, Any]:
    """Fingerprint parts known from the config and the embodiment alone (checked when training opens a cache)."""
    return {
        "format": CACHE_FORMAT,
        "video_encoder_kind": data_cfg.encoder,
        "text_encoder_kind": text_encoder_kind(data_cfg),
        "embodiment": spec.name,
        "frame_size": list(spec.frame_size),
        "actions_per_frame": int(spec.actions_per_frame),
    }


def _resolve_spec(embodiment):
    if isinstance(embodiment, str):
        from lbva.embodiment import get_embodiment

        return get_embodiment(embodiment)
    return embodiment


def _training_frames(source: LeRobotSource, segments, tau: int, limit: int) -> np.ndarray:
    """Up to ``limit`` tiled frames spread evenly over the segments (resampled rows), uint8 (n, H, W, 3)."""
    pairs = [(s.episode_index, r) for s in segments for r in range(s.start, s.end, tau)]
    if not pairs:
        raise DataError("the dataset has no frames to train the embedded VAE on")
    pick = sorted({int(i) for i in np.linspace(0, len(pairs) - 1, num=min(limit, len(pairs)))})
    by_episode: dict[int, list[int]] = defaultdict(list)
    for i in pick:
        ep, row = pairs[i]
        by_episode[ep].append(row)
    return np.concatenate([source.read_tiled(ep, sorted(set(rows))) for ep, rows in by_episode.items()])


def _embedded_vae(source, segments, tau, out: Path, data_cfg, shard, progress, report):
    from lbva.data.embedded_vae import EmbeddedVAE, train_embedded_vae

    if data_cfg.vae_path:
        return EmbeddedVAE.from_pretrained(data_cfg.vae_path)
    folder = out / EMBEDDED_VAE_DIR
    if (folder / "model.safetensors").is_file():
        return EmbeddedVAE.from_pretrained(folder)
    if shard[1] > 1 and shard[0] != 0:
        raise DataError(
            f"the embedded VAE is not trained yet ({folder} is missing) and shard {shard[0]}/{shard[1]} must not "
            f"train its own copy: run shard 0/{shard[1]} first (it trains and saves the VAE before encoding), or "
            "`lbva prepare ... --vae-only`, or set data.vae_path to a trained one."
        )
    frames = _training_frames(source, segments, tau, data_cfg.embedded_vae_frames)
    logger.info("training the embedded VAE on %d frames of %s", len(frames), source.root)
    vae = train_embedded_vae(frames, steps=data_cfg.embedded_vae_steps, batch_size=data_cfg.embedded_vae_batch, progress=progress)
    vae.save_pretrained(folder)
    report.trained_vae = True
    return vae


def latent_tile_map(spec, stride: int) -> np.ndarray:
    """Where each latent pixel of the tiled frame comes from: int (H/s, W/s, 3) of (camera index or -1, y, x).

    Found by tiling probe images (camera id, y//s, x//s in the three channels) with the embodiment's own
    ``tile``, so any layout a robot declares works, as long as every view lands on multiples of the stride.
    """
    probes = {}
    for i, cam in enumerate(spec.cameras):
        if cam.height % stride or cam.width % stride or cam.height // stride > 255 or cam.width // stride > 255:
            raise DataError(
                f"camera {cam.key} is {cam.height}x{cam.width}: tiling in latent space needs view sizes that are "
                f"multiples of the encoder's spatial stride {stride} (and at most {255 * stride}); "
                "use data.tile_space=pixels"
            )
        yy, xx = np.mgrid[0 : cam.height, 0 : cam.width]
        probes[cam.key] = np.stack([np.full_like(yy, i + 1), yy // stride, xx // stride], -1).astype(np.uint8)
    tiled = np.asarray(spec.tile(probes)).astype(np.int64)  # (H, W, 3)
    h, w = tiled.shape[0] // stride, tiled.shape[1] // stride
    top_left = tiled[::stride, ::stride][:h, :w]
    blocks = tiled[: h * stride, : w * stride].reshape(h, stride, w, stride, 3)
    if tiled.shape[0] % stride or tiled.shape[1] % stride or not (blocks == top_left[:, None, :, None]).all():
        raise DataError(
            f"{spec.name}'s layout {spec.camera_layout!r} does not place its views on multiples of the encoder's "
            f"spatial stride {stride} (or resizes them), so views cannot be tiled in latent space; "
            "use data.tile_space=pixels"
        )
    out = top_left.copy()
    out[..., 0] -= 1  # -1: blank area of the layout
    placed = out[out[..., 0] >= 0]
    expected = sum((c.height // stride) * (c.width // stride) for c in spec.cameras)
    if len(placed) != expected or len(np.unique(placed, axis=0)) != expected:
        raise DataError(
            f"{spec.name}'s layout {spec.camera_layout!r} does not show every view once at its own size, so views "
            "cannot be tiled in latent space; use data.tile_space=pixels"
        )
    return out


def _encode_views_tiled(encoder, source, spec, episode, rows, tile_map, batch_frames) -> torch.Tensor:
    """Encode each camera on its own, then place its latents where the layout puts the view: (C, F, h, w)."""
    parts = [_encode_clip(encoder, source.read_camera(episode, cam.key, rows), batch_frames) for cam in spec.cameras]
    return place_latent_views(parts, tile_map)


def place_latent_views(parts: list[torch.Tensor], tile_map: np.ndarray) -> torch.Tensor:
    """Per-camera latents (..., F, h_i, w_i), in the embodiment's camera order, placed where the layout puts each
    view (``latent_tile_map``): (..., F, H/s, W/s); blank areas of the layout are zero."""
    out = parts[0].new_zeros(*parts[0].shape[:-2], tile_map.shape[0], tile_map.shape[1])
    for i, lat in enumerate(parts):
        where = np.nonzero(tile_map[..., 0] == i)
        ys, xs = tile_map[where][:, 1], tile_map[where][:, 2]
        out[..., torch.from_numpy(where[0]), torch.from_numpy(where[1])] = lat[..., torch.from_numpy(ys), torch.from_numpy(xs)]
    return out


def _encode_clip(encoder, frames: np.ndarray, batch_frames: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (C, F, h, w). Per-frame encoders go in pieces; causal ones see the whole clip."""
    if encoder.temporal_stride == 1 and len(frames) > batch_frames:
        parts = [encoder.encode(frames[None, i : i + batch_frames]) for i in range(0, len(frames), batch_frames)]
        return torch.cat(parts, dim=2)[0]
    return encoder.encode(frames[None])[0]


def compare_with_lerobot_stats(root: Path, native: np.ndarray, spec) -> dict:
    """lbva normalises with its own q01/q99 (over every action row, in slot space); LeRobot's ``meta/stats.json``
    is compared with them in native units and a large difference is logged, since it means the two tools would
    scale this robot's actions differently (a re-recorded or edited dataset whose stats.json was not refreshed)."""
    theirs = lerobot_quantiles(root)
    if theirs is None:
        return {"compared": False, "reason": "meta/stats.json has no action q01/q99"}
    ours = tuple(np.quantile(np.asarray(native, np.float64), [0.01, 0.99], axis=0))
    names = [n for f in spec.action_fields for n in f.dim_names]
    differ = compare_quantiles(ours, theirs, names)
    if differ:
        logger.warning(
            "%s: lbva's action quantiles differ from LeRobot's meta/stats.json by more than 10%% of the range on %d "
            "dims (lbva uses its own, computed over every action row): %s", root, len(differ), "; ".join(differ))
    return {"compared": True, "differ": differ}


def prepare_dataset(
    dataset: str | Path,
    embodiment,
    out: str | Path | None = None,
    data_cfg=None,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    vae_only: bool = False,
    video_encoder=None,
    text_encoder=None,
    progress: bool = True,
) -> PrepareReport:
    """Encode ``dataset`` for ``embodiment`` into the cache at ``out`` (default ``DATASET/lbva_cache``).

    ``video_encoder``/``text_encoder`` override the ones ``data_cfg`` describes (tests count their calls).
    Run it again after an interruption: finished segments are skipped. With ``shard=(i, n)`` this process
    encodes only the segments at plan positions ``p % n == i``; all shards together cover every segment.
    """
    from lbva.config.data import DataConfig

    data_cfg = data_cfg or DataConfig()
    spec = _resolve_spec(embodiment)
    source = LeRobotSource(dataset, spec, key_map=dict(data_cfg.key_map))
    out = Path(out) if out is not None else source.root / "lbva_cache"
    _open_output(out, shard, overwrite)
    report = PrepareReport(out=out)
    segments = source.segments()
    if abs(source.fps - float(spec.control_hz)) > 1e-6:
        logger.warning(
            "dataset fps %.3g differs from %s's control rate %.3g Hz; one dataset row is taken as one action step",
            source.fps, spec.name, spec.control_hz,
        )

    if video_encoder is None:
        video_encoder = _build_video_encoder(source, spec, segments, out, data_cfg, shard, progress, report)
    if vae_only:
        return report
    text_encoder = text_encoder or build_text_encoder(data_cfg)
    tau = frame_stride(int(spec.actions_per_frame), int(video_encoder.temporal_stride))
    _check_frame_size(spec, video_encoder)
    parts = _fingerprint_parts(data_cfg, spec, source, video_encoder, text_encoder, tau)
    tile_map = latent_tile_map(spec, video_encoder.spatial_stride) if data_cfg.tile_space == "latents" else None

    entries, skipped = _plan_segments(segments, tau, int(video_encoder.temporal_stride), data_cfg, source, spec)
    report.planned, report.too_short, report.skipped = len(entries), len(skipped), skipped
    index = _write_index(out, parts, source, spec, video_encoder, text_encoder, tau, entries, skipped)
    _write_stats(out, source, spec)

    mine = [e for p, e in enumerate(entries) if shard_of(p, shard[1]) == shard[0]]
    report.mine = len(mine)
    todo = [e for e in mine if not (out / e.file).is_file()]
    report.already_done = len(mine) - len(todo)
    report.texts_encoded = _encode_texts(out, text_encoder, todo, with_empty=shard[0] == 0)
    report.encoded = _encode_segments(out, todo, index, source, spec, video_encoder, tile_map, data_cfg, shard, progress)
    logger.info(
        "prepared %s: %d segments planned, shard %d/%d encoded %d (%d already done), %d too short",
        out, report.planned, shard[0], shard[1], report.encoded, report.already_done, report.too_short,
    )
    return report


def _open_output(out: Path, shard: tuple[int, int], overwrite: bool) -> None:
    """Create the cache folder; with ``overwrite`` first delete what an earlier run wrote (shard 0 only)."""
    if overwrite and shard[0] != 0:
        raise DataError(
            f"--overwrite with --shard {shard[0]}/{shard[1]} would delete other shards' work: overwrite from "
            f"shard 0/{shard[1]} (before starting the others) or without --shard"
        )
    if overwrite and out.exists():
        for name in ("latents", "text", INDEX_NAME, STATS_NAME, EMBEDDED_VAE_DIR):
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _build_video_encoder(source, spec, segments, out: Path, data_cfg, shard, progress, report):
    """The encoder ``data_cfg`` describes; the embedded one is loaded or trained on this dataset's frames."""
    vae = None
    if data_cfg.encoder == "embedded":
        tau1 = frame_stride(spec.actions_per_frame, 1)
        vae = _embedded_vae(source, segments, tau1, out, data_cfg, shard, progress, report)
    return build_video_encoder(data_cfg, vae=vae)


def _check_frame_size(spec, video_encoder) -> None:
    h_frame, w_frame = spec.frame_size
    if h_frame % video_encoder.spatial_stride or w_frame % video_encoder.spatial_stride:
        raise DataError(
            f"{spec.name}'s tiled frame is {h_frame}x{w_frame}, not a multiple of the video encoder's spatial stride "
            f"{video_encoder.spatial_stride}: declare camera sizes that tile to a multiple of it"
        )


def _fingerprint_parts(data_cfg, spec, source, video_encoder, text_encoder, tau: int) -> dict[str, Any]:
    """Everything that changes the cache's bytes: a cache built with other parts is stale."""
    return settings_parts(data_cfg, spec) | {
        "video_encoder": video_encoder.fingerprint(),
        "text_encoder": text_encoder.fingerprint(),
        # the dataset keys the cameras were read from (a changed data.key_map reads other frames)
        "cameras": [source.keys[c.key] if source.keys[c.key] != c.key else c.key for c in spec.cameras],
        "camera_layout": spec.camera_layout,
        "tau": tau,
        "cache_dtype": data_cfg.cache_dtype,
        "min_latent_frames": data_cfg.min_latent_frames,
        "tile_space": data_cfg.tile_space,
    }


def _plan_segments(segments, tau: int, s: int, data_cfg, source, spec) -> tuple[list[SegmentEntry], list[dict]]:
    """One entry per segment long enough to train on (deterministic: every shard plans the same), and the rest."""
    entries: list[SegmentEntry] = []
    skipped: list[dict] = []
    for seg in segments:
        ids = sample_frame_ids(seg.start, seg.end, tau, s)
        f = latent_frame_count(len(ids), s)
        if f < data_cfg.min_latent_frames:
            skipped.append({"segment": seg.name, "reason": f"{f} latent frames < min_latent_frames={data_cfg.min_latent_frames}"})
            continue
        entries.append(
            SegmentEntry(seg.episode_index, seg.start, seg.end, seg.text, text_key(seg.text), len(ids), f,
                         f"latents/{seg.name}.safetensors")
        )
    if not entries:
        n_act = int(spec.actions_per_frame)
        raise DataError(
            f"no segment of {source.root} is long enough: each needs at least {data_cfg.min_latent_frames} latent "
            f"frames, i.e. {1 + (data_cfg.min_latent_frames - 1) * n_act} dataset frames at N={n_act}"
        )
    return entries, skipped


def _write_index(out: Path, parts, source, spec, video_encoder, text_encoder, tau, entries, skipped) -> CacheIndex:
    """Write ``index.json`` after checking that an existing one was built with the same parts."""
    h_frame, w_frame = spec.frame_size
    stride = video_encoder.spatial_stride
    index = CacheIndex(
        fingerprint=fingerprint_of(parts),
        fingerprint_parts=parts,
        dataset=str(source.root),
        embodiment=spec.name,
        fps=source.fps,
        tau=tau,
        temporal_stride=int(video_encoder.temporal_stride),
        actions_per_frame=int(spec.actions_per_frame),
        latent_shape=[video_encoder.latent_channels, h_frame // stride, w_frame // stride],
        text_shape=list(text_encoder.encode([""]).shape[1:]),  # (Lt, Dt)
        empty_text_key=text_key(""),
        segments=entries,
        skipped=skipped,
    )
    index_path = out / INDEX_NAME
    if index_path.is_file():
        old = CacheIndex.from_json(index_path.read_text())
        check_fingerprint(old, out, parts)
    atomic_write_bytes(index_path, index.to_json().encode())
    return index


def _write_stats(out: Path, source, spec) -> None:
    """q01/q99 of the actions in slot space (cheap: the action column only; every shard computes the same)."""
    stats_path = out / STATS_NAME
    if stats_path.is_file():
        return
    native = source.all_actions()
    slots = np.asarray(spec.action_to_slots(native), np.float32)
    q01, q99 = action_quantiles(slots, spec.used_mask)
    rec = stats_record(q01, q99, spec.used_mask, f"{source.root} (lbva prepare, {len(slots)} rows)", len(slots))
    rec["lerobot_stats"] = compare_with_lerobot_stats(source.root, native, spec)
    atomic_write_bytes(stats_path, json.dumps(rec, indent=1).encode())


def _encode_texts(out: Path, text_encoder, todo: list[SegmentEntry], with_empty: bool) -> int:
    """Encode the instructions of ``todo`` (and the empty one) not on disk yet; returns how many were encoded."""
    texts = sorted({e.text for e in todo} | ({""} if with_empty else set()))
    missing = [t for t in texts if not (out / "text" / f"{text_key(t)}.safetensors").is_file()]
    if missing:
        emb = text_encoder.encode(missing).float()  # (B, Lt, Dt)
        for t, e in zip(missing, emb):
            atomic_save_tensors(out / "text" / f"{text_key(t)}.safetensors", {"embedding": e.clone()}, {"text": t})
    return len(missing)


def _encode_segments(out: Path, todo, index: CacheIndex, source, spec, video_encoder, tile_map, data_cfg, shard,
                     progress: bool) -> int:
    """Encode and write each segment of ``todo``; returns how many were written."""
    from tqdm.auto import tqdm

    episode_slots: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}  # (actions, states) in slots
    has_state = spec.state_key in source.keys
    bar = tqdm(todo, desc=f"encoding segments (shard {shard[0]}/{shard[1]})", disable=not progress, unit="seg")
    for e in bar:
        if e.episode_index not in episode_slots:
            episode_slots.clear()  # segments come in episode order: keep one episode in memory
            episode_slots[e.episode_index] = (
                np.asarray(spec.action_to_slots(source.episode_actions(e.episode_index)), np.float32),
                np.asarray(spec.state_to_slots(source.episode_states(e.episode_index)), np.float32) if has_state else None,
            )
        tensors = _segment_tensors(e, index, source, spec, video_encoder, tile_map, data_cfg, *episode_slots[e.episode_index])
        atomic_save_tensors(
            out / e.file,
            tensors,
            {"fingerprint": index.fingerprint, "text_key": e.text_key, "episode_index": str(e.episode_index),
             "start": str(e.start), "end": str(e.end)},
        )
    return len(todo)


def _segment_tensors(e: SegmentEntry, index: CacheIndex, source, spec, video_encoder, tile_map, data_cfg,
                     action_slots: np.ndarray, state_slots: np.ndarray | None) -> dict[str, torch.Tensor]:
    """One segment's cache file: its latents, slot actions (+ validity), frame rows and states."""
    s, n_act = index.temporal_stride, index.actions_per_frame
    ids = sample_frame_ids(e.start, e.end, index.tau, s)
    if tile_map is None:
        frames = source.read_tiled(e.episode_index, ids)  # (T, H, W, 3)
        latents = _encode_clip(video_encoder, frames, data_cfg.encode_batch_frames)  # (C, F, h, w)
    else:
        latents = _encode_views_tiled(
            video_encoder, source, spec, e.episode_index, ids, tile_map, data_cfg.encode_batch_frames
        )
    if latents.shape[1] != e.num_latent_frames:
        raise DataError(
            f"{e.name}: the encoder returned {latents.shape[1]} latent frames for {len(ids)} video frames, "
            f"expected {e.num_latent_frames} (temporal stride {s})"
        )
    acts, valid = segment_actions(action_slots, e.start, e.num_latent_frames, n_act)
    tensors = {
        "latents": latents.to(_CACHE_DTYPES[data_cfg.cache_dtype]),
        "actions": torch.from_numpy(acts),
        "action_valid": torch.from_numpy(valid),
        "frame_ids": torch.tensor(ids, dtype=torch.int64),
    }
    if state_slots is not None:  # the state at the last video frame of each latent frame, (F, 30)
        tensors["states"] = torch.from_numpy(state_slots[[ids[f * s] for f in range(e.num_latent_frames)]])
    return tensors
