"""``lbva doctor``: what this installation can do — versions, attention kernels, devices, rendering, extras."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import json
import os
import platform
import sys

# extra -> (distributions it installs, what is disabled without it)
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "sim": (("metaworld", "mujoco"), "Meta-World collection/evaluation (`lbva collect metaworld`, `lbva eval metaworld`, the demo)"),
    "libero": (("hf-libero", "robosuite"), "LIBERO evaluation"),
    "aloha": (("gym-aloha", "dm-control"), "ALOHA simulation"),
    "arms": (("feetech-servo-sdk", "dynamixel-sdk"), "real SO-100/101 (Feetech) and Koch (Dynamixel) arms"),
    "serve": (("websockets", "msgpack"), "`lbva serve` and the policy client"),
    "gpu": (("flash-attn",), "the flash-attn kernel (SDPA and flex attention still work)"),
    "dev": (("pytest", "hypothesis"), "running the test suite"),
}
CORE = ("torch", "lightning", "torchmetrics", "omegaconf", "diffusers", "transformers", "pluggy", "tensorboard",
        "safetensors", "lerobot", "numpy")


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _attention_kernels() -> dict[str, str]:
    import torch

    out = {"sdpa": "available (default; CPU and GPU)"}
    try:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401

        out["flex"] = "available" + ("" if torch.cuda.is_available() else " (compiled kernels need a GPU; CPU runs the eager path)")
    except Exception as e:  # pragma: no cover - depends on the torch build
        out["flex"] = f"unavailable: {e}"
    try:
        importlib.import_module("flash_attn")
        out["flash"] = "available" if torch.cuda.is_available() else "installed, but needs a CUDA GPU"
    except Exception:
        out["flash"] = "not installed (pip install 'lbva[gpu]' on a CUDA machine)"
    return out


def _devices() -> dict[str, str]:
    import torch

    info = {"torch": torch.__version__, "cuda_build": str(torch.version.cuda)}
    if torch.cuda.is_available():
        info["cuda"] = f"{torch.cuda.device_count()} device(s): {torch.cuda.get_device_name(0)}"
        info["bf16"] = "supported" if torch.cuda.is_bf16_supported() else "not supported"
    else:
        info["cuda"] = "no CUDA device (CPU only)"
        cap = torch.backends.cpu.get_cpu_capability()
        info["cpu_capability"] = cap
        try:
            x = torch.ones(4, 4, dtype=torch.bfloat16)
            (x @ x).float().sum().item()
            info["bf16"] = f"supported on CPU (capability {cap})"
        except Exception as e:  # pragma: no cover
            info["bf16"] = f"not supported: {e}"
    return info


def _rendering() -> dict[str, str]:
    backend = os.environ.get("MUJOCO_GL", "")
    if _version("mujoco") is None:
        return {"mujoco": "not installed (extra `sim`)"}
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import mujoco

        model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='.1'/></worldbody></mujoco>")
        with mujoco.Renderer(model, 16, 16) as r:
            data = mujoco.MjData(model)
            r.update_scene(data)
            r.render()
        return {"mujoco": mujoco.__version__, "MUJOCO_GL": os.environ["MUJOCO_GL"], "offscreen_render": "works"}
    except Exception as e:
        return {"mujoco": _version("mujoco") or "?", "MUJOCO_GL": os.environ.get("MUJOCO_GL", backend),
                "offscreen_render": f"FAILS: {type(e).__name__}: {e} (try MUJOCO_GL=egl, or apt-get install libegl1 / libosmesa6 with MUJOCO_GL=osmesa)"}


def collect() -> dict:
    from lbva import __version__

    report: dict = {
        "lbva": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {d: _version(d) or "MISSING" for d in CORE},
        "devices": _devices(),
        "attention_kernels": _attention_kernels(),
        "rendering": _rendering(),
        "extras": {},
    }
    for extra, (dists, disables) in EXTRAS.items():
        missing = [d for d in dists if _version(d) is None]
        report["extras"][extra] = "installed" if not missing else f"missing {', '.join(missing)}: disables {disables}"
    try:
        from lbva.embodiment import list_embodiments

        report["embodiments"] = [s.name for s in list_embodiments()]
    except Exception as e:  # the registry reports its own errors; doctor must not die on them
        report["embodiments"] = f"registry failed: {e}"
    return report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="report versions, kernels, devices, rendering and extras")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    report = collect()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"lbva {report['lbva']}  python {report['python']}  {report['platform']}")
    for section in ("packages", "devices", "attention_kernels", "rendering", "extras"):
        print(f"\n{section.replace('_', ' ')}:")
        for k, v in report[section].items():
            print(f"  {k:<16} {v}")
    emb = report["embodiments"]
    print("\nembodiments:", ", ".join(emb) if isinstance(emb, list) else emb)
    return 0
