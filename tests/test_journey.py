"""A new user's whole journey, from the built distributions, outside the repository.

Every distribution in the repository is built (sdist, then the wheel from the sdist), installed with
``lbva[metaworld]`` into a fresh virtual environment, and driven from an empty folder the way the README tells a
user: show a recipe, collect demonstrations, prepare them, train a tiny recipe (which writes a policy folder),
evaluate it in Meta-World, serve it and talk to it with the torch-free client, export it for LeRobot. Nothing may
come from the source tree: the working directory is empty, PYTHONPATH is unset, and ``lbva`` must import from the
fresh environment's site-packages.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(cmd, cwd, env, timeout=900, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "LBVA_PYTHON": sys.executable}
    _run(["bash", str(ROOT / "scripts" / "build_dists.sh"), str(dist)], ROOT, env)
    return dist


def _fresh_venv(built: Path, parent: Path, requirement: str) -> tuple[Path, dict]:
    """A new virtual environment under ``parent`` with ``requirement`` installed from the built artefacts only, and
    the process environment without anything that could point back at the checkout."""
    venv = parent / "env"
    uv = [sys.executable, "-m", "uv"]
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    _run([*uv, "venv", "-q", "-p", sys.executable, str(venv)], built, base)
    _run([*uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "--find-links", str(built),
          requirement], built, base)
    return venv, base


@pytest.fixture(scope="module")
def user_env(built, tmp_path_factory) -> dict:
    """A fresh virtual environment with ``lbva[metaworld]`` from the built artefacts, and a clean process env."""
    venv, base = _fresh_venv(built, tmp_path_factory.mktemp("venv"), "lbva[metaworld]")
    bin_dir = venv / "bin"
    env = {**base, "PATH": f"{bin_dir}{os.pathsep}{base.get('PATH', '')}", "MUJOCO_GL": base.get("MUJOCO_GL", "egl"),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return {"env": env, "bin": bin_dir, "venv": venv}


def test_the_distributions_carry_what_the_package_needs(built):
    wheel = next(built.glob("lbva-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {"lbva/recipes/demo/tiny.yaml", "lbva/recipes/demo/metaworld.yaml",
            "lbva/recipes/pretrain/lingbot_va.yaml"} <= set(names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: Apache-2.0" in meta
    assert re.search(r"Requires-Dist: lbva-metaworld==[\d.]+; extra == \"metaworld\"", meta)
    with tarfile.open(next(built.glob("lbva-*.tar.gz"))) as t:
        members = {m.split("/", 1)[1] for m in t.getnames() if "/" in m}
    assert {"LICENSE", "lbva/recipes/demo/tiny.yaml", "embodiments/lbva-metaworld/pyproject.toml",
            "scripts/setup.sh"} <= members
    plugins = {p.name.split("-")[0] for p in built.glob("*.whl")}
    assert {"lbva", "lbva_client", "lbva_metaworld", "lbva_libero", "lbva_lerobot_arms", "lbva_robotwin",
            "lerobot_policy_lbva", "lerobot_env_lbva_metaworld", "lerobot_robot_lbva_sim"} <= plugins
    for wheel in built.glob("*.whl"):  # every distribution carries the licence it declares
        with zipfile.ZipFile(wheel) as z:
            assert any(n.endswith(".dist-info/licenses/LICENSE") for n in z.namelist()), wheel.name


@pytest.fixture(scope="module")
def robot_env(built, tmp_path_factory) -> Path:
    """What a robot computer installs: lbva-client alone (numpy, msgpack, websockets; no lbva, no torch)."""
    venv, _ = _fresh_venv(built, tmp_path_factory.mktemp("robot"), "lbva-client")
    return venv / "bin" / "python"


CLIENT = r"""
import importlib.util, sys
assert importlib.util.find_spec("torch") is None and importlib.util.find_spec("lbva") is None
import numpy as np
from lbva_client import LbvaClient

with LbvaClient("127.0.0.1", int(sys.argv[1])) as client:
    meta = client.metadata
    client.reset("reach the goal")
    reply = client.infer({"observation.images.corner": np.zeros((64, 64, 3), np.uint8),
                          "observation.state": np.zeros(4, np.float32)})
    actions = reply["actions"]
    assert actions.ndim == 2 and actions.shape[1] == 4 and np.isfinite(actions).all(), actions
    print("OK", meta["embodiment"], actions.shape)
"""


def test_a_user_goes_from_install_to_a_served_policy_outside_the_repository(user_env, robot_env, tmp_path):
    env, lbva = user_env["env"], str(user_env["bin"] / "lbva")
    py = str(user_env["bin"] / "python")
    work = tmp_path / "work"
    work.mkdir()

    # the installed package, not the checkout
    where = _run([py, "-c", "import lbva, lbva_metaworld; print(lbva.__file__); print(lbva_metaworld.__file__)"],
                 work, env).stdout.split()
    assert all(str(user_env["venv"]) in w and str(ROOT) not in w for w in where), where

    show = _run([lbva, "config", "show", "demo/tiny"], work, env).stdout
    assert "size: tiny" in show

    _run([lbva, "collect", "metaworld", "--tasks", "reach-v3", "--episodes", "1", "--out", "ds"], work, env)
    _run([lbva, "prepare", "ds", "--embodiment", "metaworld-sawyer", "data.embedded_vae_steps=5"], work, env)
    _run([lbva, "train", "demo/tiny", "data.dataset=ds", "trainer.synthetic_batches=0", "trainer.max_steps=2",
          "trainer.output_dir=run"], work, env)
    assert (work / "run" / "policy" / "lbva_policy.json").is_file()

    _run([lbva, "eval", "metaworld", "--policy", "run/policy", "--tasks", "reach-v3", "--episodes", "1",
          "--max-steps", "8", "--out", "ev", "--no-progress"], work, env)
    results = json.loads((work / "ev" / "results.json").read_text())
    assert results, "the evaluation wrote no results"

    # the policy folder says which embodiment it drives: no --embodiment needed
    server = subprocess.Popen([lbva, "serve", "--checkpoint", "run/policy", "--port", "0"], cwd=work, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = None
        for line in server.stdout:  # the server logs its address once the socket is bound
            m = re.search(r"on ws://[\d.]+:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        assert port, "the server exited before listening"
        out = _run([str(robot_env), "-c", CLIENT, str(port)], work, env, timeout=300).stdout
        assert out.startswith("OK metaworld-sawyer")
    finally:
        server.terminate()
        server.wait(timeout=60)

    # LeRobot's lingbot_va runs the Wan2.2 VAE and umT5 only: the export names where they will be on that machine.
    # The tiny recipe's inference settings are not on LeRobot's grid: the export refuses, names the nearest values
    # and the flag that accepts them, and writes nothing
    export = [lbva, "export", "lerobot", "run/policy", "lerobot_policy", "--wan-path", "/models/Wan2.2-TI2V-5B"]
    refused = _run(export, work, env, check=False)
    assert refused.returncode == 2 and "--approximate" in refused.stderr, refused.stderr
    assert not (work / "lerobot_policy").exists()
    _run([*export, "--approximate"], work, env)
    cfg = json.loads((work / "lerobot_policy" / "config.json").read_text())
    assert cfg["type"] == "lingbot_va" and cfg["wan_pretrained_path"] == "/models/Wan2.2-TI2V-5B"
