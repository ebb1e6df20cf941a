"""A policy folder: everything a closed-loop session needs, in one directory.

Layout (``lbva_policy.json`` marks it)::

    lbva_policy.json        format, version, embodiment name, action statistics, the full LbvaConfig
    transformer/            the world model (``config.json`` + ``model.safetensors``)
    video_encoder/          embedded VAE weights (absent for the Wan2.2 VAE, which is named by path in the config)
    text_encoder.safetensors  embedded text encoder weights (absent for umT5, named by path in the config)
    prompts.safetensors     optional: text embeddings the model was trained with, keyed by prompt hash

Writing is atomic per folder (:func:`lbva.atomic_io.atomic_folder`): everything goes to a temporary sibling that
replaces ``out`` at the end, so an interrupted write — even ``kill -9`` — leaves the previous policy or the new one,
never a half-written one; the next write or load puts the previous one back if the kill came between the two renames
of the swap, and removes the temporaries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from lbva.atomic_io import atomic_folder, recover
from lbva.errors import UserError

MARKER = "lbva_policy.json"
FORMAT = "lbva-policy"
VERSION = 1
# the embedded text encoder is a small byte-level network; sizes beyond this in a folder are damage, not a model
MAX_EMBEDDED_TEXT_SIZE = 65536


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


def save_policy(out: str | Path, model, config, embodiment: str, stats, video_encoder=None, text_encoder=None,
                prompts: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a policy folder at ``out`` (replacing it atomically)."""
    from lbva.config import to_dict

    out = Path(out)
    with atomic_folder(out, marker=MARKER) as tmp:
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
    return out


def load_policy(path: str | Path, embodiment: str | None = None, device: str = "cpu",
                wan_path: str | Path | None = None) -> PolicyBundle:
    """Read a policy folder; ``embodiment`` (if given) must match the one the policy was trained for.
    ``wan_path`` (LeRobot folders only): a local Wan2.2 folder replacing the folder's ``wan_pretrained_path``.

    A folder that cannot be read — a missing, truncated or foreign file, a config this version cannot build — raises
    :class:`PolicyFolderError` naming the folder; no file in it is ever unpickled."""
    from lbva.interop.lerobot import is_lerobot_folder, load_lerobot_policy

    path = Path(path)
    recover(path)  # a write killed between its two renames left the previous version beside the folder
    marker = path / MARKER
    if not marker.is_file() and is_lerobot_folder(path):  # LeRobot's lingbot_va policy folder
        with reading_folder(path):
            return load_lerobot_policy(path, embodiment=embodiment, device=device, wan_path=wan_path)
    if not marker.is_file():
        raise PolicyFolderError(
            f"{path} is not an lbva policy folder (no {MARKER}). Train one with `lbva train RECIPE` "
            "(it writes <output_dir>/policy), or pass a LeRobot lingbot_va policy folder."
        )
    try:
        meta = json.loads(marker.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise PolicyFolderError(f"{marker} is not valid JSON ({e}); the folder is damaged — export it again") from e
    if not isinstance(meta, dict):
        raise PolicyFolderError(f"{marker} holds a {type(meta).__name__}, not a JSON object; the folder is damaged")
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
    with reading_folder(path):
        bundle = _read_policy(path, meta, device)
    bundle.model.to(device)
    return bundle


@contextlib.contextmanager
def reading_folder(path: Path) -> Iterator[None]:
    """Turn what a damaged or foreign folder makes the readers raise (a truncated safetensors file, a pickle where
    none belongs, a config with unknown keys, weights of another shape) into a :class:`PolicyFolderError` naming it.
    Running out of memory is not the folder's fault and passes through."""
    from pickle import UnpicklingError

    from safetensors import SafetensorError

    try:
        yield
    except PolicyFolderError:
        raise
    except UserError as e:  # a config, statistics or weights this version refuses: say which folder
        raise PolicyFolderError(f"{path}: {e}") from e
    except (OSError, SafetensorError, UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError,
            RuntimeError) as e:
        if isinstance(e, torch.OutOfMemoryError):
            raise
        raise PolicyFolderError(
            f"{path} cannot be loaded ({type(e).__name__}: {' '.join(str(e).split())[:300]}); the folder is damaged "
            "or was written by another version — write it again (lbva train, lbva model init, lbva export)"
        ) from e


def _read_policy(path: Path, meta: dict, device: str) -> PolicyBundle:
    from lbva.config import from_dict
    from lbva.data.encoders import EmbeddedTextEncoder, EmbeddedVideoEncoder, build_text_encoder, build_video_encoder
    from lbva.embodiment import ActionStats
    from lbva.models import LingBotVA

    config = from_dict(meta["config"])
    model = LingBotVA.from_pretrained(path / "transformer").eval()
    stats = ActionStats(**dict(meta["stats"])) if meta.get("stats") else None

    enc = meta["encoders"]
    if enc.get("video") == "embedded":
        video_encoder = EmbeddedVideoEncoder(str(path / "video_encoder"), device=device)
    else:
        video_encoder = build_video_encoder(config.data)
    text_cfg = enc.get("text")
    if isinstance(text_cfg, dict) and text_cfg.get("kind") == "embedded":
        sizes = [text_cfg[k] for k in ("dim", "max_length", "heads")]
        if not all(isinstance(v, int) and 1 <= v <= MAX_EMBEDDED_TEXT_SIZE for v in sizes):
            raise PolicyFolderError(f"{path / MARKER}: embedded text encoder sizes {sizes} (dim, max_length, heads) are "
                                    f"outside 1..{MAX_EMBEDDED_TEXT_SIZE}; the folder is damaged — export it again")
        text_encoder = EmbeddedTextEncoder(text_cfg["dim"], text_cfg["max_length"], text_cfg["seed"], text_cfg["heads"])
        text_encoder.net.load_state_dict(_tensors(path / "text_encoder.safetensors"))
    else:
        text_encoder = build_text_encoder(config.data)
    prompts_file = path / "prompts.safetensors"
    prompts = _tensors(prompts_file) if prompts_file.is_file() else {}
    return PolicyBundle(model, config, meta["embodiment"], stats, video_encoder, text_encoder, prompts)


def _tensors(file: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError

    try:
        return load_file(str(file))
    except (OSError, SafetensorError) as e:
        raise PolicyFolderError(f"{file} cannot be read ({e}); the folder is damaged — export it again") from e
