"""The real-arm loop: every command is safe (limits, rate, NaN/huge/wrong shape -> hold, with the reason
reported), a dry run sends nothing, and every way of stopping leaves the arm holding its measured position."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from robots_helpers import NAMES, FakeClock, RecordingRobot, ScriptedPolicy, raise_sigint, touch

from lbva.embodiment import get_embodiment
from lbva.robots.loop import run_rollout
from lbva.robots.stop import EmergencyStop
from lbva_lerobot_arms.adapter import LeRobotArm

SPEC = get_embodiment("so101")
LOW, HIGH = SPEC.action_low.astype(np.float64), SPEC.action_high.astype(np.float64)
START = np.asarray([10.0, -20.0, 30.0, -40.0, 50.0, 60.0])
MAX_DELTA = 5.0


def _run(policy, robot=None, **kw):
    robot = robot or RecordingRobot(start=START)
    arm = LeRobotArm(robot, SPEC)
    clock = FakeClock()
    kw.setdefault("max_delta", MAX_DELTA)
    summary = run_rollout(arm, policy, "pick up the cube", kw.pop("steps", 6), fps=30.0, progress=False, clock=clock,
                          sleep=clock.sleep, **kw)
    return summary, robot, clock


def _assert_safe(commands: np.ndarray, start: np.ndarray, max_delta=MAX_DELTA):
    """Independent check: every command inside the limits, each within max_delta of the one before."""
    assert np.all(np.isfinite(commands))
    assert np.all(commands >= LOW - 1e-6) and np.all(commands <= HIGH + 1e-6)
    prev = np.concatenate([np.clip(start, LOW, HIGH)[None], commands[:-1]])
    assert np.all(np.abs(commands - prev) <= max_delta + 1e-4)


def test_commands_follow_the_policy_within_limits_and_rate():
    target = np.asarray([12.0, -21.0, 31.0, -35.0, 50.0, 61.0], np.float32)
    summary, robot, clock = _run(ScriptedPolicy([target]), steps=4)
    sent = robot.sent_array()
    assert len(sent) == 4 + 1  # four policy commands, then the final hold
    np.testing.assert_allclose(sent[:4], np.repeat(target[None], 4, 0), atol=1e-5)  # small moves pass unchanged
    assert summary.steps == summary.sent == 4 and not summary.stopped and summary.safety_events == 0
    assert summary.stop_reason == "completed 4 steps"
    assert robot.calls[0] == "connect" and robot.calls[-1] == "disconnect"
    assert clock.sleeps == pytest.approx([1 / 30.0] * 4)  # paced at the control rate (fake clock)


def test_far_targets_are_rate_limited_from_the_measured_position():
    far = np.asarray([100.0, 100.0, -100.0, 100.0, -100.0, 0.0], np.float32)
    summary, robot, _ = _run(ScriptedPolicy([far]), steps=5)
    sent = robot.sent_array()[:5]
    _assert_safe(sent, START)
    # a naive reference: move each channel toward the target by at most MAX_DELTA a step
    ref, want = START.copy(), []
    for _ in range(5):
        ref = ref + np.clip(far - ref, -MAX_DELTA, MAX_DELTA)
        want.append(ref.copy())
    np.testing.assert_allclose(sent, want, atol=1e-4)
    assert summary.reasons["rate_limited"] == 5


BAD_OUTPUTS = {
    "nan": (np.asarray([1, np.nan, 0, 0, 0, 50], np.float32), "non_finite"),
    "inf": (np.asarray([np.inf] * 6, np.float32), "non_finite"),
    "huge": (np.full(6, 1e9, np.float32), "implausible"),
    "huge_one_dim": (np.asarray([12, -21, 31, -1e12, 50, 61], np.float64), "implausible"),
    "short": (np.zeros(5, np.float32), "wrong_shape"),
    "chunk": (np.zeros((2, 6), np.float32), "wrong_shape"),
    "none": (None, "wrong_shape"),
    "text": ("move left", "wrong_shape"),
}


@pytest.mark.parametrize("name", list(BAD_OUTPUTS))
def test_adversarial_outputs_hold_the_last_safe_command_and_say_why(name):
    bad, kind = BAD_OUTPUTS[name]
    good = np.asarray([12.0, -21.0, 31.0, -38.0, 52.0, 62.0], np.float32)
    summary, robot, _ = _run(ScriptedPolicy([good, bad, bad, good]), steps=4)
    sent = robot.sent_array()[:4]
    _assert_safe(sent, START)
    np.testing.assert_allclose(sent[1], sent[0], atol=1e-6)  # the broken command became a hold
    np.testing.assert_allclose(sent[2], sent[0], atol=1e-6)
    np.testing.assert_allclose(sent[3], good, atol=1e-5)  # a good command afterwards goes through
    assert summary.reasons[kind] == 2 and summary.safety_events == 2
    assert any(r.startswith("step 1: ") for r in summary.first_reasons)
    assert not summary.stopped


def test_broken_first_command_holds_the_measured_position():
    summary, robot, _ = _run(ScriptedPolicy([np.full(6, np.nan, np.float32)]), steps=2)
    np.testing.assert_allclose(robot.sent_array()[:2], np.repeat(START[None], 2, 0), atol=1e-5)
    assert summary.reasons["non_finite"] == 2


def test_huge_values_are_clamped_and_rate_limited_when_the_plausibility_check_is_off():
    summary, robot, _ = _run(ScriptedPolicy([np.full(6, 1e9, np.float32)]), steps=3, implausible_range=None)
    sent = robot.sent_array()[:3]
    _assert_safe(sent, START)
    want = np.minimum(START[None] + MAX_DELTA * np.arange(1, 4)[:, None], HIGH)
    np.testing.assert_allclose(sent, want, atol=1e-4)
    assert summary.reasons["clamped"] == 3 and summary.reasons["rate_limited"] == 3


def test_robot_clipping_is_reported_and_fed_back_to_the_policy():
    policy = ScriptedPolicy([np.asarray([14.0, -24.0, 30.0, -40.0, 50.0, 60.0], np.float32)])
    summary, robot, _ = _run(policy, robot=RecordingRobot(start=START, clip=12.0), steps=2)
    assert summary.robot_adjusted == 2
    np.testing.assert_allclose(policy.executed[0], [12.0, -12.0, 12.0, -12.0, 12.0, 60.0])  # what the robot sent


def test_dry_run_sends_nothing_and_logs_the_commands(caplog):
    policy = ScriptedPolicy([np.asarray([100.0, 0, 0, 0, 0, 0], np.float32)])
    with caplog.at_level("INFO", logger="lbva.robots.loop"):
        summary, robot, _ = _run(policy, dry_run=True, steps=3)
    assert "send_action" not in robot.calls and robot.sent == []
    assert robot.calls == ["connect", "disconnect"]
    assert summary.sent == 0 and summary.steps == 3 and summary.hold_action is None
    would = [r.getMessage() for r in caplog.records if "would send" in r.getMessage()]
    assert len(would) == 3
    # the policy hears what would have been sent: rate-limited from the measured position
    np.testing.assert_allclose(policy.executed[0][0], START[0] + MAX_DELTA)


def _position(robot):
    return np.asarray([robot.position[n] for n in NAMES])


@pytest.mark.parametrize("trigger", ["sigint", "stop_file", "key"])
def test_emergency_stop_holds_the_measured_position_then_disconnects(trigger, tmp_path):
    robot = RecordingRobot(start=START, lag=0.5)  # lags behind its targets: measured != commanded
    seen = {}
    stop_file, key_fd = tmp_path / "STOP", None
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN in a background job
    if trigger == "sigint":
        action = raise_sigint
    elif trigger == "stop_file":
        action = touch(stop_file)
    else:
        key_fd, w = os.pipe()
        action = lambda: os.write(w, b"xq")  # noqa: E731  ('x' is not a stop key)

    def at_step_3():
        seen["position"] = _position(robot)
        action()

    far = np.asarray([60.0, 20.0, 0.0, 0.0, 0.0, 20.0], np.float32)
    policy = ScriptedPolicy([far], on_step={3: at_step_3})
    stop = EmergencyStop(stop_file=stop_file if trigger == "stop_file" else None, keys=trigger == "key", key_fd=key_fd)
    with stop:
        summary, robot, _ = _run(policy, robot=robot, stop=stop, steps=10)
    assert summary.stopped and summary.stop_reason.startswith("emergency stop")
    assert {"sigint": "Ctrl-C", "stop_file": "stop file", "key": "key 'q'"}[trigger] in summary.stop_reason
    assert summary.steps == 3 and summary.sent == 3  # the command decided during the stop was not sent
    sent = robot.sent_array()
    assert len(sent) == 4
    np.testing.assert_allclose(sent[-1], seen["position"], atol=1e-5)  # the hold = measured position
    assert not np.allclose(sent[-1], sent[-2])  # ... which is not the last command (the arm lags)
    np.testing.assert_allclose(summary.hold_action, seen["position"], atol=1e-5)
    assert robot.calls[-2:] == ["send_action", "disconnect"]
    assert signal.getsignal(signal.SIGINT) is before  # the handler the loop found is back


def test_two_quick_ctrl_c_stop_and_still_hold():
    robot = RecordingRobot(start=START)
    policy = ScriptedPolicy([START.astype(np.float32)], on_step={1: lambda: (raise_sigint(), raise_sigint())})
    stop = EmergencyStop(keys=False)
    with stop:
        summary, robot, _ = _run(policy, robot=robot, stop=stop, steps=5)
    # the first Ctrl-C asks the loop to stop, the second interrupts whatever the control thread is waiting on
    assert summary.stopped and summary.stop_reason.startswith("emergency stop") and not summary.failed
    assert robot.calls[-2:] == ["send_action", "disconnect"]


def test_stop_file_that_already_exists_is_refused(tmp_path):
    (tmp_path / "STOP").touch()
    with pytest.raises(FileExistsError, match="delete it first"):
        EmergencyStop(stop_file=tmp_path / "STOP")


def test_policy_failure_stops_and_holds_when_no_failed_step_is_allowed():
    def boom():
        raise RuntimeError("CUDA out of memory (simulated)")

    summary, robot, _ = _run(ScriptedPolicy([START.astype(np.float32)], on_step={2: boom}), steps=5, max_failed_steps=0)
    assert summary.stopped and summary.failed
    assert "at step 2" in summary.stop_reason and "out of memory" in summary.stop_reason
    assert summary.sent == 2 and robot.calls[-2:] == ["send_action", "disconnect"]


def test_robot_error_is_raised_after_holding_and_disconnecting():
    robot = RecordingRobot(start=START, fail_at=2)
    with pytest.raises(RuntimeError, match="motor bus error"):
        _run(ScriptedPolicy([START.astype(np.float32)]), robot=robot, steps=5)
    assert robot.calls[-1] == "disconnect"
    np.testing.assert_allclose(robot.sent_array()[-1], _position(robot))  # the hold went out after the error


def test_summary_lines_report_reasons_and_the_hold():
    summary, _, _ = _run(ScriptedPolicy([np.full(6, np.nan, np.float32), START.astype(np.float32)]), steps=2)
    text = "\n".join(summary.lines())
    assert "non_finite 1" in text and "step 0: non-finite" in text and "hold: sent the measured position" in text
    assert summary.to_dict()["reasons"] == {"non_finite": 1}
