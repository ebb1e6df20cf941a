"""The examples a user copies run as written."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_finetune_on_my_robot_runs_end_to_end_on_the_tiny_config(tmp_path):
    from lbva.inference import is_policy_folder

    r = subprocess.run([sys.executable, str(ROOT / "examples" / "finetune_on_my_robot.py"), "--out", str(tmp_path),
                        "--steps", "4"], capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert is_policy_folder(tmp_path / "train" / "policy")
    assert (tmp_path / "released" / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    assert "first action chunk (4, 4)" in r.stdout
