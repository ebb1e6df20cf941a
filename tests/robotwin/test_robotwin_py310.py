"""The RoboTwin side where RoboTwin runs: lbva-client + lbva-robotwin in a Python 3.10 / numpy 1.26 / scipy 1.10.1
environment without lbva (``.venv-robotwin``, made by scripts/setup_robotwin_client.sh), driving ``lbva serve
--fake`` in lbva's own environment over the websocket, and RoboTwin's evaluation under each protocol.

RoboTwin itself cannot be installed here (SAPIEN, CuRobo, assets): ``robotwin_fakes.FakeTaskEnv`` stands in for its
``TASK_ENV``, and a stand-in ``script/eval_policy.py`` with stable_2.0's structure records what the evaluation gets.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from robotwin_fakes import robotwin_observation
from scipy.spatial.transform import Rotation

from lbva_robotwin import convert as C

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def robotwin_python() -> str:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "setup_robotwin_client.sh")], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"setup_robotwin_client.sh failed:\n{proc.stderr}"
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def fake_server():
    """``lbva serve --fake --embodiment robotwin-aloha-agilex`` on a free port, in lbva's environment."""
    proc = subprocess.Popen([sys.executable, "-m", "lbva", "serve", "--fake", "--embodiment", "robotwin-aloha-agilex",
                             "--port", "0"], cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    port, seen = None, []
    watchdog = threading.Timer(300, proc.kill)  # a server that never says where it listens must not hang the suite
    watchdog.start()
    for line in proc.stderr:  # the server logs its address once it listens
        seen.append(line)
        found = re.search(r"serving embodiment .* on ws://127\.0\.0\.1:(\d+)", line)
        if found:
            port = int(found.group(1))
            break
    watchdog.cancel()
    assert port is not None, "lbva serve did not start:\n" + "".join(seen)
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining its log
    yield port
    proc.terminate()
    proc.wait(30)


def run_py310(python: str, script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    # -I: no current folder or PYTHONPATH on the path, so nothing of this repository leaks in but what is installed
    return subprocess.run([python, "-I", "-c", script, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


ENVIRONMENT_SCRIPT = textwrap.dedent(
    """
    import importlib, importlib.util, json, sys
    import numpy, scipy
    mods = ["lbva_client", "lbva_robotwin", "lbva_robotwin.deploy_policy", "lbva_robotwin.adapter",
            "lbva_robotwin.convert", "lbva_robotwin.install", "lbva_robotwin.checkout", "lbva_robotwin.evaluate"]
    for m in mods:
        importlib.import_module(m)
    print(json.dumps({"python": list(sys.version_info[:2]), "numpy": numpy.__version__, "scipy": scipy.__version__,
                      "lbva": importlib.util.find_spec("lbva") is not None, "torch": importlib.util.find_spec("torch") is not None,
                      "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("lbva", "torch"))}))
    """
)


def test_the_robotwin_side_installs_into_robotwins_environment(robotwin_python, tmp_path):
    proc = run_py310(robotwin_python, ENVIRONMENT_SCRIPT, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["python"] == [3, 10] and out["numpy"].startswith("1.26.") and out["scipy"] == "1.10.1"
    assert out["lbva"] is False and out["torch"] is False and out["loaded"] == []


EPISODES_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[2])  # robotwin_fakes: the stand-in TASK_ENV
    from robotwin_fakes import FakeTaskEnv, run_robotwin_episode
    from lbva_robotwin import deploy_policy

    model = deploy_policy.get_model({"policy_name": "lbva_policy", "task_name": "t", "seed": 0, "instruction_type": "seen",
                                     "port": int(sys.argv[1])})
    out = {"meta": model.client.metadata["action"], "episodes": []}
    for episode, step_lim in ((0, 48), (1, 16)):  # the same instruction twice: the second is a new episode all the same
        env = FakeTaskEnv("stack the bowls", step_lim=step_lim, episode=episode)
        run_robotwin_episode(env, model)
        out["episodes"].append([cmd.tolist() for cmd, kind in env.actions if kind == "ee"])
    model.close()
    print(json.dumps(out))
    """
)


def fake_chunk(observation: dict, prompt: str, rows: int, feedbacks: int) -> np.ndarray:
    """``lbva serve --fake``'s documented formula for the observation the adapter sends (cameras resized to the
    served sizes, the joint vector, the prompt)."""
    frames = [C.resize_bilinear(observation["observation"][cam]["rgb"], *C.CAMERA_SIZES[key]) for cam, key in C.CAMERAS.items()]
    m = np.concatenate([f.ravel() for f in frames]).astype(np.float64).mean() / 255.0
    s = np.asarray(observation["joint_action"]["vector"], np.float32).astype(np.float64).mean()
    p = (zlib.crc32(prompt.encode()) % 1000) / 1000.0
    t, j = np.arange(rows)[:, None], np.arange(16)[None, :]
    return np.sin(m + s + p + 0.1 * feedbacks + 0.01 * t + 0.001 * j).astype(np.float32)


def released_command(rel: np.ndarray, init: np.ndarray) -> np.ndarray:
    """The released LingBot-VA client's add_init_pose with scipy, grippers clipped to RoboTwin's range."""
    out = []
    for o in (0, 8):
        q = (Rotation.from_quat(init[o + 3 : o + 7]) * Rotation.from_quat(rel[o + 3 : o + 7])).as_quat()
        out += [rel[o : o + 3] + init[o : o + 3], q / np.linalg.norm(q), [np.clip(rel[o + 7], 0, 1)]]
    return np.concatenate(out)


def test_robotwin_episodes_under_python_310_against_lbva_serve(robotwin_python, fake_server, tmp_path):
    proc = run_py310(robotwin_python, EPISODES_SCRIPT, str(fake_server), str(HERE), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["meta"] == {"shape": [None, 16], "dtype": "float32", "rows_first_chunk": 16, "rows_later_chunks": 32}
    # episode 0: a first chunk of 16 from the first observation, then 32 from the observation after 16 actions, the
    # server having had one feedback; episode 1 starts over (a reset), although its instruction is the same
    plan = [[(0, 16, 0), (16, 32, 1)], [(0, 16, 0)]]
    for episode, (commands, chunks) in enumerate(zip(out["episodes"], plan)):
        init = C.end_poses(robotwin_observation(0, episode))
        want = np.concatenate([fake_chunk(robotwin_observation(t, episode), "stack the bowls", rows, n) for t, rows, n in chunks])
        assert len(commands) == len(want)
        for got, rel in zip(commands, want):
            np.testing.assert_allclose(got, released_command(rel.astype(np.float64), init), atol=1e-5)


EVAL_POLICY_STANDIN = textwrap.dedent(
    '''
    # Stand-in for RoboTwin stable_2.0's script/eval_policy.py, with its structure: path set-up at import,
    # parse_args_and_config() reading --config and --overrides, main() reading instruction_type, building the model
    # with the policy's get_model, computing st_seed = 100000 * (1 + seed) and calling eval_policy(task_name,
    # TASK_ENV, args, model, st_seed, ...). Instead of running tasks, eval_policy records what it was given.
    import argparse, importlib, json, sys
    import yaml
    sys.path.append("./")
    sys.path.append("./policy")

    def parse_args_and_config():
        parser = argparse.ArgumentParser()
        parser.add_argument("--config", required=True)
        parser.add_argument("--overrides", nargs=argparse.REMAINDER)
        args = parser.parse_args()
        with open(args.config) as f:
            config = yaml.safe_load(f)
        pairs = args.overrides or []
        for key, value in zip(pairs[::2], pairs[1::2]):
            try:
                value = eval(value)  # as RoboTwin does with override values
            except Exception:
                pass
            config[key.lstrip("-")] = value
        return config

    def main(usr_args):
        instruction_type = usr_args["instruction_type"]
        model = importlib.import_module(usr_args["policy_name"]).get_model(usr_args)
        st_seed = 100000 * (1 + usr_args["seed"])
        eval_policy(usr_args["task_name"], None, {}, model, st_seed, test_num=100, video_size=None,
                    instruction_type=instruction_type)

    def eval_policy(task_name, TASK_ENV, args, model, st_seed, test_num=100, video_size=None, instruction_type=None):
        with open("recorded.json", "w") as f:
            json.dump({"task": task_name, "st_seed": st_seed, "instruction_type": instruction_type,
                       "served": model.client.metadata["embodiment"]}, f)
    '''
)


@pytest.fixture
def robotwin_checkout(robotwin_python, fake_server, tmp_path):
    """A stand-in stable_2.0 checkout with lbva_policy installed by the Python 3.10 side's own installer."""
    root = tmp_path / "RoboTwin"
    (root / "script").mkdir(parents=True)
    (root / "script" / "eval_policy.py").write_text(EVAL_POLICY_STANDIN)
    (root / "script" / "test_render.py").write_text("def Sapien_TEST():\n    open('render_checked', 'w').write('ok')\n")
    (root / "description" / "utils").mkdir(parents=True)
    (root / "description" / "utils" / "generate_episode_instructions.py").write_text("")
    for rel in ("policy", "envs", "task_config", ".git"):
        (root / rel).mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/stable_2.0\n")
    proc = subprocess.run([robotwin_python, "-I", "-m", "lbva_robotwin", "install", str(root)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return root


def evaluate(python: str, root: Path, port: int, *extra: str) -> subprocess.CompletedProcess:
    args = ["--config", "policy/lbva_policy/deploy_policy.yml", "--overrides", "--task_name", "beat_block_hammer",
            "--task_config", "demo_clean", "--ckpt_setting", "c", "--seed", "2", "--policy_name", "lbva_policy",
            "--port", str(port), *extra]
    return subprocess.run([python, "-m", "lbva_robotwin.evaluate", *args], cwd=root, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("extra, st_seed, instruction_type", [
    ((), 10000 * (1 + 2), "seen"),  # the default: the released LingBot-VA client's protocol
    (("--protocol", "robotwin"), 100000 * (1 + 2), "unseen"),  # RoboTwin's own
    (("--protocol", "robotwin", "--instruction_type", "seen"), 100000 * (1 + 2), "seen"),
])
def test_evaluation_protocols(robotwin_python, robotwin_checkout, fake_server, extra, st_seed, instruction_type):
    proc = evaluate(robotwin_python, robotwin_checkout, fake_server, *extra)
    assert proc.returncode == 0, proc.stderr
    recorded = json.loads((robotwin_checkout / "recorded.json").read_text())
    assert recorded == {"task": "beat_block_hammer", "st_seed": st_seed, "instruction_type": instruction_type,
                        "served": "robotwin-aloha-agilex"}
    assert (robotwin_checkout / "render_checked").exists()  # RoboTwin's renderer check ran first, as in its script


@pytest.mark.parametrize("extra, words", [
    (("--instruction_type", "unseen"), "instruction_type 'unseen' contradicts protocol 'lingbot-va'"),
    (("--protocol", "paper"), "protocol 'paper' is not one of"),
])
def test_evaluation_protocol_mistakes_are_named(robotwin_python, robotwin_checkout, fake_server, extra, words):
    proc = evaluate(robotwin_python, robotwin_checkout, fake_server, *extra)
    assert proc.returncode == 2 and words in proc.stderr
    assert not (robotwin_checkout / "recorded.json").exists()
