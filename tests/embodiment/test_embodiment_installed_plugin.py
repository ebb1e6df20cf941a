"""A real third-party plugin: install examples/add_a_robot into this venv, find it with `lbva embodiments`."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "add_a_robot"
DIST = "lbva-my-arm"


def installer() -> list[str]:
    """uv (fast, offline with --no-build-isolation: the test environment's own, from lbva's dev extra, or one on
    PATH) when present, else pip."""
    for cmd in [[sys.executable, "-m", "uv"]] + ([shutil.which("uv")] if shutil.which("uv") else []):
        base = cmd if isinstance(cmd, list) else [cmd]
        if subprocess.run([*base, "--version"], capture_output=True).returncode == 0:
            return [*base, "pip"]
    return [sys.executable, "-m", "pip"]


def lbva(*args: str, plugins: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LBVA_PLUGINS"}
    if plugins is not None:
        env["LBVA_PLUGINS"] = plugins
    return subprocess.run([sys.executable, "-m", "lbva", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    src = tmp_path_factory.mktemp("plugin") / "add_a_robot"
    shutil.copytree(EXAMPLE, src)  # build in a copy: the example folder stays clean
    pip = installer()
    is_uv = pip[-2:] != ["-m", "pip"]
    target = ["--python", sys.executable] if is_uv else []
    flags = ["--no-deps", "--no-build-isolation"] if is_uv else ["--no-deps", "--no-build-isolation", "-q"]
    done = subprocess.run([*pip, "install", *target, *flags, str(src)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    yield
    undo = [*pip, "uninstall", *target, DIST] if is_uv else [*pip, "uninstall", "-y", DIST]
    subprocess.run(undo, capture_output=True, text=True, timeout=300, check=True)


def test_installed_plugin_is_found_with_its_package(installed):
    out = lbva("embodiments", plugins=None)
    assert out.returncode == 0, out.stderr
    row = next(line.split() for line in out.stdout.splitlines() if line.startswith("my-arm "))
    assert row == ["my-arm", DIST, "wrist", "7", "14-19,28"]
    assert "metaworld-sawyer" in out.stdout


@pytest.mark.parametrize("plugins,visible", [("my_arm", True), (DIST, True), ("", False), ("someone_else", False)])
def test_lbva_plugins_filters_the_installed_plugin(installed, plugins, visible):
    out = lbva("embodiments", plugins=plugins)
    assert out.returncode == 0, out.stderr
    names = [line.split()[0] for line in out.stdout.splitlines()[2:]]
    assert ("my-arm" in names) is visible and "aloha" in names


def test_show_lists_the_plugins_robot_factory(installed):
    out = lbva("embodiments", "show", "my-arm", plugins="my_arm")
    assert out.returncode == 0, out.stderr
    assert "my-arm  (from lbva-my-arm)" in out.stdout and "robots: my-arm-real" in out.stdout
    assert "joints         raw        base.pos" in out.stdout
