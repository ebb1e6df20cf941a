"""A policy folder: everything a closed-loop session needs, in one directory.

Layout (``lbva_policy.json`` marks it)::

    lbva_policy.json        format, version, embodiment name, action statistics, the full LbvaConfig
    transformer/            the world model (``config.json`` + ``model.safetensors``)
    video_encoder/          embedded VAE weights (absent for the Wan2.2 VAE, which is named by path in the config)
    text_encoder.safetensors  embedded text encoder weights (absent for umT5, named by path in the config)
    prompts.safetensors     optional: text embeddings the model was trained with, keyed by prompt hash

Writing is atomic per folder: everything goes to a temporary sibling that replaces ``out`` at the end, so an
interrupted export never leaves a half-written policy where a good one was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from lbva.errors import UserError

MARKER = "lbva_policy.json"
FORMAT = "lbva-policy"
VERSION = 1


class PolicyFolderError(UserError, ValueError):
    """A folder that is not a loadable lbva policy, with what is wrong and what to do."""


def prompt_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class PolicyBundle:
    model: Any  # lbva.models.LingBotVA
    config: Any  # lbva.config.LbvaConfig
    embodiment: str
    stats: Any  # lbva.embodiment.ActionStats
    video_encoder: Any  # lbva.data.encoders.VideoEncoder
    text_encoder: Any  # lbva.data.encoders.TextEncoder
    prompts: dict[str, torch.Tensor]


def is_policy_folder(path: str | Path) -> bool:
    return (Path(path) / MARKER).is_file()


def swap_in(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` at ``out``: the old ``out`` is moved aside first and removed only once the
    new one is in place, so at every moment one complete folder stands at ``out`` or beside it."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_policy(out: str | Path, model, config, embodiment: str, stats, video_encoder=None, text_encoder=None,
                prompts: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a policy folder at ``out`` (replacing it atomically)."""
    from lbva.config import to_dict

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp / "transformer")
        encoders: dict[str, Any] = {}
        vae = getattr(video_encoder, "vae", None)
        if vae is not None and hasattr(vae, "save_pretrained"):
            vae.save_pretrained(tmp / "video_encoder")
            encoders["video"] = "embedded"
        net = getattr(text_encoder, "net", None)
        if net is not None:
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp / "text_encoder.safetensors"))
            encoders["text"] = {"kind": "embedded", "dim": text_encoder.dim, "max_length": text_encoder.max_length,
                                "seed": text_encoder.seed, "heads": text_encoder.heads}
        if prompts:
            save_file({k: v.contiguous().float() for k, v in prompts.items()}, str(tmp / "prompts.safetensors"))
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "embodiment": embodiment,
            "stats": stats.to_dict() if stats is not None else None,
            "encoders": encoders,
            "config": to_dict(config),
        }
        (tmp / MARKER).write_text(json.dumps(meta, indent=2))
        swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_policy(path: str | Path, embodiment: str | None = None, device: str = "cpu",
                wan_path: str | Path | None = None) -> PolicyBundle:
    """Read a policy folder; ``embodiment`` (if given) must match the one the policy was trained for.
    ``wan_path`` (LeRobot folders only): a local Wan2.2 folder replacing the folder's ``wan_pretrained_path``."""
    from lbva.config import from_dict
    from lbva.data.encoders import EmbeddedTextEncoder, EmbeddedVideoEncoder, build_text_encoder, build_video_encoder
    from lbva.embodiment import ActionStats
    from lbva.models import LingBotVA

    path = Path(path)
    marker = path / MARKER
    from lbva.interop.lerobot import is_lerobot_folder, load_lerobot_policy

    if not marker.is_file() and is_lerobot_folder(path):  # LeRobot's lingbot_va policy folder
        return load_lerobot_policy(path, embodiment=embodiment, device=device, wan_path=wan_path)
    if not marker.is_file():
        raise PolicyFolderError(
            f"{path} is not an lbva policy folder (no {MARKER}). Train one with `lbva train RECIPE` "
            "(it writes <output_dir>/policy), or pass a LeRobot lingbot_va policy folder."
        )
    try:
        meta = json.loads(marker.read_text())
    except json.JSONDecodeError as e:
        raise PolicyFolderError(f"{marker} is not valid JSON ({e}); the folder is damaged — export it again") from e
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise PolicyFolderError(
            f"{marker}: format {meta.get('format')!r} version {meta.get('version')!r} is not {FORMAT!r} version {VERSION}"
        )
    for key in ("embodiment", "config", "encoders"):
        if key not in meta:
            raise PolicyFolderError(f"{marker} lacks the field {key!r}; the folder is damaged — export it again")
    if embodiment is not None and embodiment != meta["embodiment"]:
        raise PolicyFolderError(
            f"the policy at {path} was trained for embodiment {meta['embodiment']!r}, not {embodiment!r}; "
            f"pass --embodiment {meta['embodiment']} (or fine-tune it on {embodiment!r} data)"
        )
    config = from_dict(meta["config"])
    model = LingBotVA.from_pretrained(path / "transformer").to(device).eval()
    stats = ActionStats(**{k: v for k, v in meta["stats"].items()}) if meta.get("stats") else None

    enc = meta["encoders"]
    if enc.get("video") == "embedded":
        video_encoder = EmbeddedVideoEncoder(str(path / "video_encoder"), device=device)
    else:
        video_encoder = build_video_encoder(config.data)
    text_cfg = enc.get("text")
    if isinstance(text_cfg, dict) and text_cfg.get("kind") == "embedded":
        text_encoder = EmbeddedTextEncoder(text_cfg["dim"], text_cfg["max_length"], text_cfg["seed"], text_cfg["heads"])
        text_encoder.net.load_state_dict(load_file(str(path / "text_encoder.safetensors")))
    else:
        text_encoder = build_text_encoder(config.data)
    prompts_file = path / "prompts.safetensors"
    prompts = load_file(str(prompts_file)) if prompts_file.is_file() else {}
    return PolicyBundle(model, config, meta["embodiment"], stats, video_encoder, text_encoder, prompts)
