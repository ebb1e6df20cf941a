"""The rollout loop, baselines and reports on real Meta-World episodes; the `lbva eval` CLI."""

import json

import imageio.v3 as iio
import numpy as np
import pytest

from lbva.cli import main
from lbva.eval.report import summarize, write_report
from lbva.eval.rollout import EpisodeResult, PolicyFactory, episode_seed, rollout


def as_rows(results):
    return [(r.task, r.episode, r.seed, r.success, r.progress, r.steps, r.reward) for r in results]


def test_scripted_policy_solves_reach_and_zero_policy_does_not():
    scripted = rollout("metaworld", PolicyFactory("scripted", "metaworld"), ["reach-v3"], 2, seed=0, progress=False)
    zero = rollout("metaworld", PolicyFactory("zero", "metaworld"), ["reach-v3"], 2, seed=0, max_steps=40,
                   progress=False, env_kwargs={"render": False})
    s, z = summarize(scripted)["reach-v3"], summarize(zero)["reach-v3"]
    assert s["success_rate"] == 1.0 and s["progress"] == 1.0
    assert z["success_rate"] == 0.0 and z["progress"] < 0.2 and all(r.steps == 40 for r in zero)
    # the same seeds: both policies saw the same two scenes
    assert [r.seed for r in scripted] == [r.seed for r in zero] == [episode_seed(0, "reach-v3", e) for e in (0, 1)]


def test_same_seed_same_results_other_seed_differs():
    kw = dict(max_steps=15, progress=False, env_kwargs={"render": False})
    policy = PolicyFactory("random", "metaworld")
    a = rollout("metaworld", policy, ["reach-v3", "push-v3"], 2, seed=7, **kw)
    b = rollout("metaworld", policy, ["reach-v3", "push-v3"], 2, seed=7, **kw)
    c = rollout("metaworld", policy, ["reach-v3", "push-v3"], 2, seed=8, **kw)
    assert as_rows(a) == as_rows(b)
    assert as_rows(a) != as_rows(c)
    # a task's episodes do not depend on which other tasks run
    alone = rollout("metaworld", policy, ["push-v3"], 2, seed=7, **kw)
    assert as_rows(alone) == as_rows(a[2:])


def test_worker_processes_give_the_same_results():
    kw = dict(max_steps=10, progress=False, env_kwargs={"render": False})
    policy = PolicyFactory("random", "metaworld")
    serial = rollout("metaworld", policy, ["reach-v3"], 3, seed=3, workers=1, **kw)
    parallel = rollout("metaworld", policy, ["reach-v3"], 3, seed=3, workers=2, **kw)
    assert as_rows(serial) == as_rows(parallel)


def test_report_files(tmp_path):
    yy, xx = np.mgrid[0:64, 0:64]
    frames = np.zeros((6, 64, 64, 3), np.uint8)  # smooth pictures that change over time (video codecs keep them)
    for t in range(6):
        frames[t, ..., 0] = 4 * yy
        frames[t, ..., 1] = 4 * xx
        frames[t, 8 * t : 8 * t + 16, 20:40, 2] = 250
    results = [
        EpisodeResult("reach-v3", 0, 11, True, 1.0, 40, 5.0, frames=frames),
        EpisodeResult("reach-v3", 1, 12, False, 0.5, 100, 1.0, safety_events=2, safety_reasons=["clamped dims [0]"]),
        EpisodeResult("push-v3", 0, 13, False, 0.25, 100, 0.5),
    ]
    rep = write_report(results, tmp_path, title="t", settings={"seed": 0}, fps=10)
    md = (tmp_path / "report.md").read_text()
    # success with its 95 % Wilson interval: 1 of 2 -> [9, 91], 0 of 1 -> [0, 79]
    assert "| reach-v3 | 2 | 50 % [9, 91] | 0.750 | 70.0 | 2 |" in md
    assert "| push-v3 | 1 | 0 % [0, 79] | 0.250 | 100.0 | 0 |" in md
    assert "| **mean** | 3 | 25 % [" in md and "| 0.500 | 80.0 | 2 |" in md  # tasks weigh equally: (0.5 + 0) / 2
    assert "clamped dims [0]" in md
    assert (tmp_path / "success.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    video = iio.imread(tmp_path / "videos" / "reach-v3_ep0.mp4", plugin="pyav")
    assert video.shape == (6, 256, 256, 3)  # a 64x64 camera enlarged 4x, each pixel a 4x4 block
    enlarged = frames.repeat(4, axis=1).repeat(4, axis=2)
    assert np.abs(video.astype(int) - enlarged.astype(int)).mean() < 6  # lossy, but the same pictures
    data = json.loads((tmp_path / "results.json").read_text())
    assert [e["seed"] for e in data["episodes"]] == [11, 12, 13]
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert rep["summary"]["mean"]["success_rate"] == pytest.approx(0.25)


def test_eval_cli_writes_a_report(tmp_path, caplog):
    out = tmp_path / "ev"
    code = main(["eval", "metaworld", "--policy", "zero", "--tasks", "reach-v3", "--episodes", "1",
                 "--max-steps", "5", "--videos", "1", "--out", str(out), "--no-progress"])
    assert code == 0
    # 0 of 1 episodes: Wilson's 95 % interval is [0, 1/(1 + 1.96^2)] = [0, 0.793]
    assert "| reach-v3 | 1 | 0 % [0, 79] | 0.000 |" in (out / "report.md").read_text()
    # reset + 5 steps, the 64x64 camera enlarged 4x
    assert iio.imread(out / "videos" / "reach-v3_ep0.mp4", plugin="pyav").shape == (6, 256, 256, 3)


@pytest.mark.parametrize("argv,message", [
    (["eval", "nosuchsim", "--tasks", "a"], "unknown env 'nosuchsim'; valid names: metaworld"),
    (["eval", "metaworld", "--tasks", "reach-v2", "--episodes", "1"], "unknown Meta-World task 'reach-v2'"),
    (["eval", "metaworld", "--policy", "nonsense", "--tasks", "reach-v3"], "neither a baseline"),
    (["eval", "metaworld", "--tasks", "reach-v3", "--episodes", "0"], "--episodes=0 must be >= 1"),
])
def test_eval_cli_user_errors(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err


class _TimedZero:
    """A zero policy that reports chunk timings like lbva.inference.Policy (a fixed 0.3 s modelled idle)."""

    def __init__(self, spec):
        self.dim = int(spec.native_action_dim)
        self.stats = self

    def reset(self, instruction):
        pass

    def select_action(self, obs):
        return np.zeros(self.dim, np.float32)

    def summary(self, control_hz=None):
        self.hz = control_hz
        return {"chunks": 3, "latency_p50_s": 0.05, "modelled_idle_s": 0.3}


def test_episodes_carry_policy_timings_and_robot_time(tmp_path):
    """robot time = steps at the embodiment's control rate + the modelled idle; time to finish counts successes only."""
    from lbva.embodiment import get_embodiment

    spec = get_embodiment("metaworld-sawyer")
    kw = dict(max_steps=12, progress=False, env_kwargs={"render": False})
    timed = rollout("metaworld", lambda task: _TimedZero(spec), ["reach-v3"], 2, seed=1, **kw)
    zero = rollout("metaworld", PolicyFactory("zero", "metaworld"), ["reach-v3"], 1, seed=1, **kw)
    assert spec.control_hz == 80.0
    for r in timed:
        assert r.steps == 12 and r.policy_stats["modelled_idle_s"] == 0.3
        assert r.robot_time_s == pytest.approx(12 / 80.0 + 0.3)
    assert zero[0].policy_stats is None and zero[0].robot_time_s == pytest.approx(12 / 80.0)
    # two made-up episodes: only the successful one's robot time counts towards time to finish
    ok = EpisodeResult("reach-v3", 0, 1, True, 1.0, 40, 0.0, policy_stats={"latency_p50_s": 0.1}, robot_time_s=2.0)
    bad = EpisodeResult("reach-v3", 1, 2, False, 0.2, 150, 0.0, policy_stats={"latency_p50_s": 0.3}, robot_time_s=9.0)
    row = summarize([ok, bad])["reach-v3"]
    assert row["time_to_finish_s"] == 2.0 and row["chunk_latency_s"] == pytest.approx(0.2)
    rep = write_report([ok, bad], tmp_path / "r", tensorboard=False)
    text = rep["files"]["markdown"].read_text()
    assert "time to finish (s)" in text and "| 2.00 | 200 |" in text
    # a task without a successful episode has no time to finish: the table says so with "–", never "nan"
    rep = write_report([bad], tmp_path / "r2", tensorboard=False)
    text = rep["files"]["markdown"].read_text()
    assert "| – | 300 |" in text and "nan" not in text
