"""`lbva embodiments` and `lbva embodiments show NAME` (in process), and resolve_embodiment from a config."""

import json
import subprocess
import sys

import numpy as np
import pytest

from lbva.cli import main
from lbva.config import load_config
from lbva.config.embodiment import EmbodimentConfig, resolve_embodiment
from lbva.embodiment import UnknownEmbodimentError, get_embodiment

BUILTIN = ["aloha", "franka", "koch", "libero-franka", "metaworld-sawyer", "robotwin-aloha-agilex", "so101"]


def test_table_lists_every_robot_with_its_package(capsys):
    assert main(["embodiments"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "package", "cameras", "action", "dim", "used", "slots"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert sorted(rows) == BUILTIN
    assert rows["metaworld-sawyer"][1:] == ["lbva", "corner", "4", "0-2,28"]
    assert rows["robotwin-aloha-agilex"][1:] == ["lbva", "cam_high,cam_left_wrist,cam_right_wrist", "16", "0-13,28,29"]


def test_json_listing(capsys):
    assert main(["embodiments", "--json"]) == 0
    data = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert data["libero-franka"]["used_slots"] == [0, 1, 2, 3, 4, 5, 28]
    assert data["aloha"]["cameras"] == ["observation.images.top"] and data["aloha"]["native_action_dim"] == 14


def test_show_gives_full_detail(capsys):
    assert main(["embodiments", "show", "libero-franka"]) == 0
    out = capsys.readouterr().out
    for text in ("libero-franka  (from lbva)", "observation.images.image2  256x256", "width_concat, tiled 256x512",
                 "20 Hz", "used action slots: 0-5,28", "gripper        raw        gripper -> slots 28", "axis_angle"):
        assert text in out, text
    assert main(["embodiments", "show", "metaworld-sawyer"]) == 0
    assert "gripper_effort -> slots 28 closed=1 open=-1" in capsys.readouterr().out  # a gripper field's convention
    assert main(["embodiments", "show", "aloha", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["package"] == "lbva" and info["frame_size"] == [256, 320] and info["native_state_dim"] == 14


def test_unknown_name_exits_2_with_valid_names(capsys):
    assert main(["embodiments", "show", "sawyer"]) == 2
    err = capsys.readouterr().err
    assert "unknown embodiment 'sawyer'" in err and all(n in err for n in BUILTIN)


def test_cli_module_imports_nothing_heavy():
    code = "import sys, lbva.embodiment.cli; print(sorted(m for m in ('numpy', 'torch', 'pluggy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_resolve_embodiment_loads_stats(tmp_path):
    q01, q99 = np.linspace(-1, 0, 30), np.linspace(1, 2, 30)
    path = tmp_path / "stats.json"
    path.write_text(json.dumps({"q01": q01.tolist(), "q99": q99.tolist(), "source": "my dataset"}))
    cfg = load_config(None, ["embodiment.name=so101", f"embodiment.stats_path={path}"])
    spec = resolve_embodiment(cfg.embodiment)
    assert spec.name == "so101" and spec.stats.source == "my dataset"
    np.testing.assert_allclose(spec.stats.q01, q01, rtol=1e-6)
    np.testing.assert_allclose(spec.stats.q99, q99, rtol=1e-6)
    assert get_embodiment("so101").stats is None  # the registered spec is untouched


def test_resolve_embodiment_errors(tmp_path):
    with pytest.raises(UnknownEmbodimentError, match="valid names: aloha"):
        resolve_embodiment(EmbodimentConfig(name="nope"))
    bad = tmp_path / "short.json"
    bad.write_text(json.dumps({"q01": [0] * 7, "q99": [1] * 7}))
    with pytest.raises(ValueError, match=r"shape \(30,\)"):
        resolve_embodiment(EmbodimentConfig(name="aloha", stats_path=str(bad)))
    assert resolve_embodiment(EmbodimentConfig(name="robotwin-aloha-agilex")).stats is not None  # the spec's own stats


def test_show_prints_each_limit_rounded_beside_its_dimension(capsys):
    assert main(["embodiments", "show", "franka"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if " .. " in line}
    spec = get_embodiment("franka")
    assert list(rows) == [n for f in spec.action_fields for n in f.dim_names]
    assert rows["eef_x"] == ["-0.9", "..", "0.9"] and rows["gripper_width"] == ["0", "..", "0.08"]
    assert "0.8999999" not in out
