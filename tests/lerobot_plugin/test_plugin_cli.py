"""docs/lerobot.md's commands, run as written through LeRobot's own console scripts (fresh processes, so the
plugins are found the way a user's LeRobot finds them): collect → ``lerobot-train --policy.type=lbva`` →
``lerobot-eval --env.type=lbva_metaworld`` → ``lbva eval`` on the same checkpoint, and ``lerobot-rollout`` on
lbva's simulated arm. CI appends only what makes them small (fewer episodes and steps, a tiny model).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_helpers import TINY, build_policy, cli_args

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "lerobot.md"
BIN = Path(sys.executable).parent
SMALL_TRAINING = ["--steps=2", "--batch_size=2", "--save_freq=2", "--log_freq=1", "--num_workers=0"]


def doc_commands() -> list[list[str]]:
    """Every shell command in the bash blocks of the doc's plugin section (continuation lines joined)."""
    section = DOC.read_text().split("## lbva inside LeRobot's tools", 1)[1]
    out = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            args = shlex.split(line, comments=True)
            if args:
                out.append(args)
    return out


def doc_command(*prefix: str) -> list[str]:
    found = [c for c in doc_commands() if c[: len(prefix)] == list(prefix)]
    assert len(found) == 1, f"docs/lerobot.md should show one `{' '.join(prefix)}` command; found {len(found)}"
    return found[0]


def run_cli(args: list[str], cwd: Path) -> str:
    """Run one of the venv's console scripts; returns stdout + stderr, failing the test with them on error."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, check=False,
                          timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{args[0]} failed ({proc.returncode}):\n{output[-6000:]}"
    return output


def in_dir(cwd: Path, fn, *args):
    before = Path.cwd()
    os.chdir(cwd)
    try:
        return fn(*args)
    finally:
        os.chdir(before)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lerobot_cli")


def option(args: list[str], name: str) -> str:
    """The value of ``--name=value`` in a LeRobot command."""
    return next(a.split("=", 1)[1] for a in args if a.startswith(name + "="))


def test_doc_commands_collect_train_evaluate_and_lbva_loads(workdir):
    """One test for the whole chain (a module fixture would run once per xdist worker): collect → lerobot-train
    writes a LeRobot checkpoint that is also an lbva folder → lerobot-eval runs it on lbva_metaworld → lbva eval
    runs the same folder."""
    from lbva.cli import main as lbva_main

    collect = doc_command("lbva", "collect")
    assert in_dir(workdir, lbva_main, [*collect[1:], "--episodes", "2", "--no-progress"]) == 0

    train = doc_command("lerobot-train")
    log = run_cli([*train, *cli_args(TINY), *SMALL_TRAINING], workdir)
    checkpoint = workdir / option(train, "--output_dir") / "checkpoints" / "last" / "pretrained_model"
    names = {p.name for p in checkpoint.iterdir()}
    assert {"config.json", "model.safetensors", "train_config.json", "policy_preprocessor.json",
            "policy_postprocessor.json", "lbva_policy.json", "transformer"} <= names
    cfg = json.loads((checkpoint / "config.json").read_text())
    assert cfg["type"] == "lbva" and cfg["model"]["layout"] == "mot" and cfg["embedded_vae"]["hidden"] == 16
    losses = [float(v) for v in re.findall(r"step:\d+ .*?loss:([0-9.]+)", log)]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), log[-3000:]
    assert re.search(r"loss_dyn:[0-9.]+ loss_inv:[0-9.]+", log)

    evaluate = doc_command("lerobot-eval")
    assert option(evaluate, "--policy.path") == str(checkpoint.relative_to(workdir))
    run_cli([*evaluate, "--eval.n_episodes=1", "--env.episode_length=12"], workdir)
    overall = json.loads((workdir / option(evaluate, "--output_dir") / "eval_info.json").read_text())["overall"]
    assert overall["n_episodes"] == 1 and 0.0 <= overall["pc_success"] <= 100.0
    assert overall["video_paths"] and all((workdir / p).is_file() for p in overall["video_paths"])  # relative to cwd

    lbva_eval = doc_command("lbva", "eval")
    assert lbva_eval[lbva_eval.index("--policy") + 1] == str(checkpoint.relative_to(workdir))
    assert in_dir(workdir, lbva_main, [*lbva_eval[1:], "--episodes", "1", "--max-steps", "12", "--workers", "1",
                                       "--no-progress"]) == 0
    results = json.loads((workdir / lbva_eval[lbva_eval.index("--out") + 1] / "results.json").read_text())
    assert len(results["episodes"]) == 1 and (results["episodes"][0]["steps"] == 12 or results["episodes"][0]["success"])


def test_lerobot_rollout_drives_the_sim_arm_and_records(workdir, tmp_path_factory):
    """A tiny policy for the sim arm's features (built on a dataset with them), deployed with the doc's command."""
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    from lbva.data.synthetic import make_synthetic_dataset
    from lbva.embodiment import CameraSpec, get_embodiment

    args = doc_command("lerobot-rollout")
    height, width = int(option(args, "--robot.height")), int(option(args, "--robot.width"))
    so101 = get_embodiment("so101")
    cams = tuple(CameraSpec(c.key, height, width) for c in so101.cameras)  # front, wrist at the rendered size
    root = make_synthetic_dataset(tmp_path_factory.mktemp("so101") / "ds", dataclasses.replace(so101, cameras=cams),
                                  episodes=2, frames=24, repo_id="local/so101")
    policy, pre, post = build_policy(LeRobotDatasetMetadata("local/so101", root=root), embodiment=None)
    folder = workdir / option(args, "--policy.path")
    for part in (policy, pre, post):
        part.save_pretrained(folder)
    run_cli([*args, "--dataset.episode_time_s=3", "--fps=5"], workdir)
    info = json.loads((workdir / option(args, "--dataset.root") / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 1 and info["total_frames"] >= 1
    assert tuple(info["features"]["action"]["shape"]) == (6,)
    assert {"observation.images.front", "observation.images.wrist", "observation.state"} <= set(info["features"])
