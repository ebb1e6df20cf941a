"""The arm loop when the policy misbehaves: a Ctrl-C during a policy call that never returns is honoured at the next
control period (the call runs off the control thread), the arm is held and the loop ends without a traceback; failed
steps (a policy that raises, or an output the safety layer has to replace) are held one by one, and more than
``max_failed_steps`` in a row stop the run as a failure with the arm held; a policy that does not answer within
``policy_timeout`` stops it too. No test sleeps: hanging policies block on events the test releases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from robots_helpers import FakeClock, RecordingRobot, ScriptedPolicy

from lbva.embodiment import get_embodiment
from lbva.robots.loop import run_rollout
from lbva.robots.stop import EmergencyStop
from lbva_lerobot_arms.adapter import LeRobotArm

SPEC = get_embodiment("so101")
START = np.asarray([10.0, -20.0, 30.0, -40.0, 50.0, 60.0])
GOOD = np.asarray([12.0, -21.0, 31.0, -38.0, 52.0, 62.0], np.float32)


class CountingStop(EmergencyStop):
    """An emergency stop that counts the loop's polls after a stop was requested."""

    polls_after_request = 0

    def poll(self):
        reason = super().poll()
        if reason is not None:
            self.polls_after_request += 1
        return reason


class HangingPolicy(ScriptedPolicy):
    """Answers ``GOOD`` until call ``hang_at``, then signals ``entered``, runs ``on_hang`` and blocks until released."""

    def __init__(self, hang_at: int, on_hang=lambda: None):
        super().__init__([GOOD])
        self.hang_at, self.on_hang = hang_at, on_hang
        self.entered, self.release = threading.Event(), threading.Event()
        self.thread_names: list[str] = []

    def select_action(self, observation):
        self.thread_names.append(threading.current_thread().name)
        if self.calls == self.hang_at:
            self.entered.set()
            self.on_hang()
            assert self.release.wait(120), "the test never released the policy"
        return super().select_action(observation)


def _run(policy, robot=None, **kw):
    robot = robot or RecordingRobot(start=START)
    clock = FakeClock()
    kw.setdefault("max_delta", 5.0)
    summary = run_rollout(LeRobotArm(robot, SPEC), policy, "pick up the cube", kw.pop("steps", 6), fps=30.0,
                          progress=False, clock=clock, sleep=clock.sleep, **kw)
    return summary, robot


def test_ctrl_c_during_a_policy_call_that_never_returns_stops_at_the_next_period_and_holds():
    policy = HangingPolicy(hang_at=3, on_hang=lambda: os.kill(os.getpid(), signal.SIGINT))
    stop = CountingStop(keys=False)
    try:
        with stop:
            summary, robot = _run(policy, stop=stop, steps=20)
        assert not policy.release.is_set(), "the loop returned while the policy call was still hanging"
    finally:
        policy.release.set()
    assert summary.stopped and not summary.failed and "Ctrl-C" in summary.stop_reason
    assert stop.polls_after_request == 1  # the first check after the signal saw it: within one control period
    assert summary.steps == 3 and robot.calls[-2:] == ["send_action", "disconnect"]
    np.testing.assert_allclose(summary.hold_action, robot.sent_array()[-1], atol=1e-6)
    assert all(name != threading.main_thread().name for name in policy.thread_names)  # off the control thread


def test_ctrl_c_without_an_emergency_stop_still_holds_the_arm():
    """From Python without an EmergencyStop, Ctrl-C is a KeyboardInterrupt in the waiting control thread."""
    policy = HangingPolicy(hang_at=2, on_hang=lambda: os.kill(os.getpid(), signal.SIGINT))
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        summary, robot = _run(policy, steps=10)
    finally:
        signal.signal(signal.SIGINT, old)
        policy.release.set()
    assert summary.stopped and "interrupted" in summary.stop_reason and summary.steps == 2
    assert robot.calls[-2:] == ["send_action", "disconnect"]


def test_a_policy_that_does_not_answer_in_time_stops_the_run_as_a_failure():
    policy = HangingPolicy(hang_at=2)
    try:
        summary, robot = _run(policy, steps=10, policy_timeout=0.2)
    finally:
        policy.release.set()
    assert summary.stopped and summary.failed and "did not answer within 0.2 s" in summary.stop_reason
    assert summary.steps == 2 and robot.calls[-2:] == ["send_action", "disconnect"]


def _raise(message):
    def boom():
        raise RuntimeError(message)

    return boom


def test_a_failing_step_is_held_and_the_run_goes_on():
    policy = ScriptedPolicy([GOOD], on_step={2: _raise("server hiccup")})
    summary, robot = _run(policy, steps=5)
    assert not summary.stopped and summary.steps == 5 and summary.failed_steps == 1
    sent = robot.sent_array()
    np.testing.assert_allclose(sent[2], sent[1], atol=1e-6)  # the failed step held the last safe command
    assert summary.reasons["policy_error"] == 1 and any("server hiccup" in r for r in summary.first_reasons)
    assert len(policy.executed) == 4  # the failed step is not reported to the policy as executed


@pytest.mark.parametrize("failure", ["raises", "nan", "wrong_shape"])
def test_more_failed_steps_in_a_row_than_allowed_stop_the_run_with_the_arm_held(failure):
    bad = {"raises": GOOD, "nan": np.full(6, np.nan, np.float32), "wrong_shape": np.zeros(3, np.float32)}[failure]
    on_step = {i: _raise("the server is down") for i in range(1, 50)} if failure == "raises" else {}
    policy = ScriptedPolicy([GOOD, bad], on_step=on_step)
    summary, robot = _run(policy, steps=30, max_failed_steps=3)
    assert summary.stopped and summary.failed
    assert "4 failed steps in a row" in summary.stop_reason and "max_failed_steps=3" in summary.stop_reason
    assert summary.steps == 1 + 3  # one good step, then three failed ones were held; the fourth stopped the run
    sent = robot.sent_array()
    np.testing.assert_allclose(sent[-1], summary.hold_action, atol=1e-6)
    assert robot.calls[-2:] == ["send_action", "disconnect"]


def test_a_good_step_resets_the_count():
    outputs = [GOOD, np.full(6, np.nan, np.float32), np.full(6, np.nan, np.float32)] * 4
    summary, _ = _run(ScriptedPolicy(outputs), steps=12, max_failed_steps=2)
    assert not summary.stopped and summary.failed_steps == 8 and summary.steps == 12


def test_max_failed_steps_zero_stops_at_the_first_failure():
    summary, _ = _run(ScriptedPolicy([GOOD], on_step={1: _raise("boom")}), steps=5, max_failed_steps=0)
    assert summary.stopped and summary.failed and summary.steps == 1 and "boom" in summary.stop_reason


# ------------------------------------------------------------------------------------------------ the command line
def test_rollout_cli_exits_non_zero_when_the_policy_keeps_failing(tmp_path, capsys):
    from lbva.cli import main
    from lbva.serving.server import PolicyServer

    class Broken:
        def reset(self, prompt):
            pass

        def predict_action_chunk(self, observation):
            raise RuntimeError("CUDA error: an illegal memory access (simulated)")

        def observe(self, frames, executed_actions):
            pass

    summary_path = tmp_path / "summary.json"
    with PolicyServer(Broken, SPEC, port=0).start() as server:
        rc = main(["rollout", "--robot", "sim-so101", "--robot-arg", "height=16", "--robot-arg", "width=16",
                   "--robot-arg", "render=false", "--server", f"ws://127.0.0.1:{server.port}", "--prompt", "wave",
                   "--steps", "20", "--fps", "1000", "--no-progress", "--no-keys", "--max-failed-steps", "2",
                   "--summary", str(summary_path)])
    assert rc == 1
    summary = json.loads(summary_path.read_text())
    assert summary["failed"] and summary["steps"] == 2 and "3 failed steps in a row" in summary["stop_reason"]
    assert summary["hold_action"] is not None
    assert "illegal memory access" in capsys.readouterr().out


def test_rollout_cli_ctrl_c_during_a_hung_server_call_exits_cleanly(tmp_path):
    """The real command in its own process: SIGINT arrives while the server holds the infer call."""
    from lbva.serving.fake_policy import FakePolicy
    from lbva.serving.server import PolicyServer

    entered, release = threading.Event(), threading.Event()

    class Hung(FakePolicy):
        def predict_action_chunk(self, observation):
            entered.set()
            assert release.wait(120), "the test never released the server"
            return super().predict_action_chunk(observation)

    summary_path = tmp_path / "summary.json"
    with PolicyServer(lambda: Hung.from_embodiment(SPEC), SPEC, port=0).start() as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lbva", "rollout", "--robot", "sim-so101", "--robot-arg", "height=16",
             "--robot-arg", "width=16", "--robot-arg", "render=false", "--server", f"ws://127.0.0.1:{server.port}",
             "--prompt", "wave", "--steps", "50", "--fps", "30", "--no-progress", "--no-keys",
             "--summary", str(summary_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background job would ignore it
        )
        try:
            assert entered.wait(120), "the rollout never asked the server for a chunk"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=120)
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert "emergency stop: Ctrl-C" in out
    summary = json.loads(summary_path.read_text())
    assert summary["stopped"] and not summary["failed"] and summary["hold_action"] is not None
