"""``lbva prepare`` (dataset → latent cache) and ``lbva dataset info`` (what a dataset or cache holds).

Nothing heavy is imported at module level: ``lbva --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="encode a LeRobot dataset into the latent cache used for training",
        description=(
            "Resample the videos to the model frame rate, tile the cameras as the embodiment declares, encode "
            "latents per action_config segment, encode each instruction once, compute q01/q99 action "
            "statistics. Resumable (finished segments are skipped) and shardable (--shard i/n)."
        ),
    )
    p.add_argument("dataset", help="local LeRobot dataset root")
    p.add_argument("--embodiment", required=True, help="registered embodiment name (see `lbva embodiments`)")
    p.add_argument("--encoder", choices=["embedded", "wan2.2"], default=None, help="video encoder (default: config)")
    p.add_argument("--out", default=None, help="cache folder (default: DATASET/lbva_cache)")
    p.add_argument("--shard", default="0/1", help="i/n: encode only this process's share of the segments")
    p.add_argument("--overwrite", action="store_true", help="delete an existing cache in --out first")
    p.add_argument("--vae-only", action="store_true", help="only train/save the embedded VAE (before sharded runs)")
    p.add_argument("--recipe", default=None, help="recipe whose data section to use")
    p.add_argument("overrides", nargs="*", help="config overrides right after DATASET, e.g. data.vae_path=/models/vae")
    p.add_argument("--set", dest="more_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override anywhere on the line (repeatable)")
    p.set_defaults(func=_prepare)

    d = sub.add_parser("dataset", help="inspect datasets and latent caches")
    verbs = d.add_subparsers(dest="dataset_verb", metavar="<verb>", required=True)
    info = verbs.add_parser("info", help="episodes, frames, fps, cameras, segments, statistics")
    info.add_argument("path", help="a LeRobot dataset root or a latent cache folder")
    info.add_argument(
        "--embodiment", default=None, help="check a dataset (cameras, dims) or a cache (built for it?) against this robot"
    )
    info.add_argument("--check-videos", action="store_true", help="decode the first and last frame of every episode")
    info.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="config overrides a cache is checked against, e.g. data.encoder=wan2.2")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_info)


def _prepare(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local datasets only; never reach for the Hub
    from lbva.errors import CLIError
    from lbva.config import load_config
    from lbva.data.errors import DataError
    from lbva.data.prepare import parse_shard, prepare_dataset

    overrides = list(args.overrides) + list(args.more_overrides)
    if args.encoder:
        overrides.append(f"data.encoder={args.encoder}")
    cfg = load_config(args.recipe, overrides)
    from lbva.embodiment import UnknownEmbodimentError, get_embodiment

    try:
        spec = get_embodiment(args.embodiment)
        report = prepare_dataset(
            args.dataset,
            spec,
            out=args.out,
            data_cfg=cfg.data,
            shard=parse_shard(args.shard),
            overwrite=args.overwrite,
            vae_only=args.vae_only,
        )
    except (DataError, UnknownEmbodimentError, FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from e
    if args.vae_only:
        print(f"embedded VAE ready in {report.out / 'embedded_vae'}")
        return 0
    print(
        f"cache {report.out}: {report.planned} segments planned; this shard encoded {report.encoded}, "
        f"{report.already_done} were already done, {report.too_short} segments too short to use"
    )
    return 0


def _cache_summary(path, embodiment: str | None, overrides: list[str]) -> dict:
    from lbva.data.cache import LatentCache

    expect = None
    if embodiment:
        from lbva.config import load_config
        from lbva.data.prepare import settings_parts
        from lbva.embodiment import get_embodiment

        expect = settings_parts(load_config(None, overrides).data, get_embodiment(embodiment))
    cache = LatentCache(path, expect=expect, require_complete=False)
    idx = cache.index
    done = sum((cache.root / s.file).is_file() for s in idx.segments)
    out = {
        "cache": str(cache.root),
        "dataset": idx.dataset,
        "embodiment": idx.embodiment,
        "fingerprint": idx.fingerprint,
        "encoders": {k: idx.fingerprint_parts.get(k) for k in ("video_encoder_kind", "text_encoder_kind")},
        "fps": idx.fps,
        "tau (rows per video frame)": idx.tau,
        "actions per latent frame": idx.actions_per_frame,
        "latent shape [C, h, w]": idx.latent_shape,
        "segments": len(idx.segments),
        "segments encoded": done,
        "latent frames": sum(s.num_latent_frames for s in idx.segments),
        "segments skipped (too short)": len(idx.skipped),
        "instructions": len({s.text for s in idx.segments}),
    }
    try:
        st = cache.stats_dict()
        used = [i for i, u in enumerate(st["used_mask"]) if u]
        out["statistics (used slots: q01, q99)"] = {i: [round(st["q01"][i], 4), round(st["q99"][i], 4)] for i in used}
    except Exception:  # stats not written yet
        out["statistics"] = "not computed yet"
    return out


def _dataset_summary(path, embodiment: str | None, check_videos: bool) -> dict:
    import numpy as np

    from lbva.data.lerobot_source import LeRobotSource

    spec = None
    if embodiment:
        from lbva.embodiment import get_embodiment

        spec = get_embodiment(embodiment)
    src = LeRobotSource(path, spec)
    out = src.info()
    if check_videos:
        out["videos checked (episode x camera)"] = src.check_videos(progress=True)
    key = spec.action_key if spec else "action"
    if key in src.meta.features:
        acts = src._rows(key, 0, src.num_frames)
        q = np.quantile(acts, [0.01, 0.99], axis=0)
        out["action statistics (native dims: q01, q99)"] = {
            i: [round(float(q[0, i]), 4), round(float(q[1, i]), 4)] for i in range(acts.shape[1])
        }
    segs = src.segments()
    out["segments per episode"] = {
        ep: [[s.start, s.end, s.text] for s in segs if s.episode_index == ep] for ep in src.episode_indices()[:20]
    }
    return out


def _info(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pathlib import Path

    from lbva.errors import CLIError
    from lbva.data.cache import INDEX_NAME
    from lbva.data.errors import DataError
    from lbva.embodiment import UnknownEmbodimentError

    path = Path(args.path)
    try:
        if (path / INDEX_NAME).is_file():
            summary = _cache_summary(path, args.embodiment, args.overrides)
        else:
            summary = _dataset_summary(path, args.embodiment, args.check_videos)
    except (DataError, UnknownEmbodimentError, ValueError, FileNotFoundError) as e:
        raise CLIError(str(e)) from e
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        for k, v in summary.items():
            if isinstance(v, dict) and len(v) > 4:
                print(f"{k}:")
                for kk, vv in v.items():
                    print(f"  {kk}: {vv}")
            else:
                print(f"{k}: {v}")
    return 0
