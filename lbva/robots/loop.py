"""The real-arm control loop behind ``lbva rollout``: :func:`run_rollout`.

Axis legend: A native action dim, S native state dim.

An *arm* is anything with the :class:`Arm` interface — ``lbva_lerobot_arms.LeRobotArm`` wraps LeRobot's
robots in it. Each step, at ``fps``:

1. read the observation (cameras + state, the embodiment's keys);
2. check the emergency stop; ask the policy for one native action; check the stop again. The policy call runs on a
   worker thread while the control thread checks the stop once per control period, so a stop (Ctrl-C, a key, a stop
   file) is honoured within one period even when the call hangs (a policy server that never answers); a call
   longer than ``policy_timeout`` ends the run;
3. make the command safe — a *plausibility* check first (a value more than ``implausible_range`` full
   ranges beyond the limits means the policy is broken: hold the last safe command rather than drive to a
   limit), then :class:`lbva.eval.safety.SafetyFilter` (wrong shape or NaN/inf → hold; clamp to the
   embodiment's limits; at most ``max_delta`` change per step). Every change is logged with its reason;
4. send it (``arm.send_action`` returns what the robot really commanded) — or, in a dry run, only log it;
5. tell the policy what was executed (``report_executed``), record the frame.

The safety filter starts from the arm's *measured* position, so the first command can move at most
``max_delta`` from where the arm is, and a broken first output holds the arm where it stands.

A *failed step* is one where the policy raised or its output had to be replaced (wrong shape, NaN/inf,
implausible): the last safe command is held for it. Up to ``max_failed_steps`` of them in a row are ridden out (a
transient server error); one more stops the run as a failure (``RolloutSummary.failed``, a non-zero exit code of
``lbva rollout``).

However the loop ends — all steps done, an emergency stop (Ctrl-C, a key, a stop file), failed steps, a policy
that does not answer, or a robot error — the arm is left holding still: its measured position is sent once (clipped
to the limits) and then it is disconnected. A dry run never calls ``send_action`` at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

logger = logging.getLogger(__name__)

# reason kinds, from the first words of the safety filter's messages (and the loop's own check)
REASON_KINDS = {
    "wrong shape": "wrong_shape",
    "non-finite": "non_finite",
    "implausible": "implausible",
    "clamped": "clamped",
    "rate-limited": "rate_limited",
    "policy failed": "policy_error",
}
# reason kinds that make a step a failed step (the policy gave nothing usable); clamping and rate limits do not
FAILURE_KINDS = frozenset({"wrong_shape", "non_finite", "implausible", "policy_error"})
DEFAULT_MAX_FAILED_STEPS = 3


@runtime_checkable
class Arm(Protocol):
    """What the loop drives (``lbva_lerobot_arms.LeRobotArm`` implements it for LeRobot robots)."""

    spec: Any
    is_connected: bool

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def get_observation(self) -> dict: ...  # observation.images.<cam> uint8 (h, w, 3), observation.state (S,)

    def send_action(self, action: np.ndarray) -> np.ndarray: ...  # native (A,) -> native (A,) actually sent

    def hold_action(self, observation: dict) -> np.ndarray | None: ...  # the measured position as an action


@dataclass
class RolloutSummary:
    """What happened: steps, safety interventions and why, how it ended."""

    prompt: str
    dry_run: bool
    steps_planned: int
    steps: int = 0  # commands decided (sent, or logged in a dry run)
    sent: int = 0  # send_action calls for policy commands (0 in a dry run)
    safety_events: int = 0  # steps whose command the safety layer changed
    reasons: Counter = field(default_factory=Counter)  # reason kind -> steps
    first_reasons: list[str] = field(default_factory=list)  # the first few messages, with their step
    robot_adjusted: int = 0  # steps where the robot reported sending something else (its own clipping)
    stopped: bool = False  # ended early (emergency stop, failed steps, a policy that did not answer, robot error)
    failed: bool = False  # ended early because something failed (not an emergency stop): a non-zero exit code
    stop_reason: str = ""
    failed_steps: int = 0  # steps whose policy call raised or whose output had to be replaced
    hold_action: np.ndarray | None = None  # the measured position sent at the end (None: dry run / failed)
    recorded_frames: int = 0
    overruns: int = 0  # steps that took longer than 1 / fps
    duration_s: float = 0.0

    def lines(self) -> list[str]:
        """A human-readable report."""
        mode = "dry run (nothing sent)" if self.dry_run else f"{self.sent} commands sent"
        out = [f"rollout: {self.steps}/{self.steps_planned} steps, {mode}, {self.duration_s:.1f} s"]
        out.append(f"ended: {self.stop_reason}" + (" (stopped early)" if self.stopped else ""))
        if self.failed_steps:
            out.append(f"failed steps: {self.failed_steps} (the last safe command was held for each)")
        if self.safety_events:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.reasons.items()))
            out.append(f"safety: {self.safety_events} steps changed ({kinds})")
            out += [f"  {r}" for r in self.first_reasons]
        else:
            out.append("safety: every command passed unchanged")
        if self.robot_adjusted:
            out.append(f"robot: adjusted {self.robot_adjusted} commands itself (e.g. max_relative_target)")
        if self.hold_action is not None:
            out.append(f"hold: sent the measured position {np.round(self.hold_action, 3).tolist()} and disconnected")
        if self.overruns:
            out.append(f"timing: {self.overruns} steps overran the control period")
        if self.recorded_frames:
            out.append(f"recorded: {self.recorded_frames} frames")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt, "dry_run": self.dry_run, "steps_planned": self.steps_planned, "steps": self.steps,
            "sent": self.sent, "safety_events": self.safety_events, "reasons": dict(self.reasons),
            "first_reasons": list(self.first_reasons), "robot_adjusted": self.robot_adjusted, "stopped": self.stopped,
            "failed": self.failed, "stop_reason": self.stop_reason, "failed_steps": self.failed_steps,
            "hold_action": None if self.hold_action is None else self.hold_action.tolist(),
            "recorded_frames": self.recorded_frames, "overruns": self.overruns, "duration_s": self.duration_s,
        }


def reason_kind(message: str) -> str:
    for prefix, kind in REASON_KINDS.items():
        if message.startswith(prefix):
            return kind
    return "other"


class CommandGuard:
    """The plausibility check in front of a :class:`~lbva.eval.safety.SafetyFilter` (see the module docstring).

    ``implausible_range``: how many full ranges (high − low, per channel) beyond a limit a value may be
    before the whole command is treated as broken; None turns the check off (then the filter clamps it).
    """

    def __init__(self, safety: Any, implausible_range: float | None = 1.0):
        self.safety = safety
        if implausible_range is not None and not implausible_range > 0:
            raise ValueError(f"implausible_range must be positive or None; got {implausible_range}")
        span = np.asarray(safety.high, np.float64) - np.asarray(safety.low, np.float64)
        self.implausible_range = implausible_range
        self._lo = None if implausible_range is None else safety.low - implausible_range * span
        self._hi = None if implausible_range is None else safety.high + implausible_range * span

    def __call__(self, action: Any) -> tuple[np.ndarray, list[str]]:
        if self._lo is not None:
            try:
                a = np.asarray(action, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                a = None
            if a is not None and a.shape == (self.safety.dim,):
                with np.errstate(invalid="ignore"):
                    wild = np.isfinite(a) & ((a < self._lo) | (a > self._hi))
                if wild.any():
                    hold = self.safety.fallback()
                    safe, _ = self.safety.filter(hold)  # the fallback passes unchanged; the filter records it
                    self.safety.events += 1
                    why = (f"implausible values at dims {np.nonzero(wild)[0].tolist()} ({a[wild].tolist()}), more than "
                           f"{self.implausible_range} ranges beyond the limits: holding the last safe command")
                    return safe, [why]
        return self.safety.filter(action)


class PolicyCaller:
    """Runs each policy call on a worker thread, so the control thread can keep checking the emergency stop while a
    call takes long or never returns. Calls never overlap: the next starts only after the last finished, and a call
    abandoned when the loop stops (a hung server) is left to end on its own (its thread is a daemon)."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._result: tuple[bool, Any] = (True, None)

    def start(self, fn: Callable[..., Any], *args: Any) -> None:
        self._done.clear()

        def work() -> None:
            try:
                self._result = (True, fn(*args))
            except BaseException as e:  # handed to the control thread, which decides what it means
                self._result = (False, e)
            finally:
                self._done.set()

        threading.Thread(target=work, name="lbva-rollout-policy", daemon=True).start()

    def wait(self, timeout: float) -> bool:
        """True once the call has finished (waits at most ``timeout`` seconds)."""
        return self._done.wait(timeout)

    def result(self) -> Any:
        ok, value = self._result
        if not ok:
            raise value
        return value


class _Stop(Exception):
    """The emergency stop was requested while the control thread waited for the policy."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


class _NoAnswer(Exception):
    """The policy did not answer within ``policy_timeout``."""


def _call_policy(caller: PolicyCaller, fn: Callable[..., Any], args: tuple, period: float, poll: Callable,
                 timeout: float | None) -> Any:
    """``fn(*args)`` on the worker; the control thread checks ``poll()`` once per ``period`` meanwhile."""
    caller.start(fn, *args)
    waited = 0.0
    while not caller.wait(period):
        if (why := poll()) is not None:
            raise _Stop(why)
        waited += period
        if timeout is not None and waited >= timeout:
            raise _NoAnswer(f"the policy did not answer within {timeout:g} s")
    return caller.result()


def run_rollout(
    arm: Any,
    policy: Any,
    prompt: str,
    steps: int,
    *,
    spec: Any = None,
    fps: float | None = None,
    dry_run: bool = False,
    max_delta: float | np.ndarray | None = None,
    implausible_range: float | None = 1.0,
    max_failed_steps: int = DEFAULT_MAX_FAILED_STEPS,
    policy_timeout: float | None = None,
    stop: Any = None,
    recorder: Any = None,
    progress: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    disconnect: bool = True,
    max_logged_reasons: int = 8,
) -> RolloutSummary:
    """Drive ``arm`` with ``policy`` for up to ``steps`` steps; see the module docstring.

    ``spec``: the embodiment (default ``arm.spec``); ``fps``: the control rate (default ``spec.control_hz``);
    ``max_failed_steps``: failed steps in a row that are held before the run stops as a failure;
    ``policy_timeout``: seconds a policy call may take before the run stops as a failure (None: no limit; the
    emergency stop still works during the call); ``stop``: an :class:`~lbva.robots.stop.EmergencyStop` (entered by
    the caller) or anything with ``poll()``; ``recorder``: a :class:`~lbva.robots.record.RolloutRecorder` (finalised
    here); ``clock``/``sleep`` pace the loop (tests pass a fake clock). Connects the arm if needed and disconnects it
    at the end unless ``disconnect=False``. Returns a :class:`RolloutSummary`; a robot error is re-raised after the
    arm is held.
    """
    from tqdm.auto import tqdm

    from lbva.eval.safety import SafetyFilter

    spec = spec if spec is not None else arm.spec
    period = 1.0 / _control_rate(spec, steps, fps, max_failed_steps, policy_timeout)
    safety = SafetyFilter(spec, max_delta=max_delta)
    guard = CommandGuard(safety, implausible_range)
    summary = RolloutSummary(prompt=prompt, dry_run=dry_run, steps_planned=int(steps))
    report_executed = getattr(policy, "report_executed", None)
    poll = getattr(stop, "poll", None) or (lambda: None)
    caller = PolicyCaller()
    t_start = clock()
    bar = None
    error: BaseException | None = None
    in_a_row = 0  # consecutive failed steps

    def ask(fn: Callable[..., Any], *args: Any) -> Any:
        return _call_policy(caller, fn, args, period, poll, policy_timeout)

    try:
        obs = _connect_and_reset(arm, spec, safety, policy, prompt, ask)
        bar = tqdm(total=steps, desc="rollout" + (" (dry run)" if dry_run else ""), unit="step", disable=not progress)
        next_t = clock()
        for step in range(steps):
            if step:
                obs = arm.get_observation()
            if (why := poll()) is not None:
                summary.stopped, summary.stop_reason = True, f"emergency stop: {why}"
                break
            raised: Exception | None = None
            try:
                raw = ask(policy.select_action, obs)
            except (_Stop, _NoAnswer):
                raise
            except Exception as e:
                logger.warning("step %d: the policy failed: %s: %s", step, type(e).__name__, e)
                raised = e
            if (why := poll()) is not None:  # pressed while the policy was thinking: this command is not sent
                summary.stopped, summary.stop_reason = True, f"emergency stop: {why}"
                break
            command, reasons = guard(raw) if raised is None else _held_after_failure(safety, raised)
            failure = next((r for r in reasons if reason_kind(r) in FAILURE_KINDS), None)
            if failure is not None:
                in_a_row += 1
                summary.failed_steps += 1
                if in_a_row > max_failed_steps:
                    summary.stopped = summary.failed = True
                    summary.stop_reason = (f"{in_a_row} failed step{'s' if in_a_row > 1 else ''} in a row "
                                           f"(max_failed_steps={max_failed_steps}); the last at step {step}: {failure}")
                    break
            else:
                in_a_row = 0
            if reasons:
                _note_safety_event(summary, step, reasons, max_logged_reasons)
            sent = _send(arm, command, dry_run, summary, step)
            if callable(report_executed) and raised is None:  # a step the policy failed is not its action
                report_executed(sent)
            if recorder is not None:
                recorder.add(obs, sent, prompt)
                summary.recorded_frames += 1
            summary.steps += 1
            bar.update(1)
            if summary.safety_events:
                bar.set_postfix(safety=summary.safety_events)
            next_t = _wait_for_next_period(next_t, period, summary, clock, sleep)
        else:
            summary.stop_reason = f"completed {steps} steps"
    except _Stop as e:
        summary.stopped, summary.stop_reason = True, f"emergency stop: {e.why}"
    except _NoAnswer as e:
        summary.stopped = summary.failed = True
        summary.stop_reason = f"{e}; raise policy_timeout (--policy-timeout) if it needs longer"
    except KeyboardInterrupt:
        summary.stopped, summary.stop_reason = True, "emergency stop: interrupted (KeyboardInterrupt, e.g. a second Ctrl-C)"
    except BaseException as e:
        error = e
        summary.stopped = summary.failed = True
        summary.stop_reason = f"error: {type(e).__name__}: {e}"
    finally:
        if bar is not None:
            bar.close()
        _release_arm(arm, safety, recorder, summary, dry_run, disconnect)
        summary.duration_s = clock() - t_start
        if summary.stopped:
            logger.warning("rollout stopped: %s", summary.stop_reason)
    if error is not None:
        raise error
    return summary


def _control_rate(spec: Any, steps: int, fps: float | None, max_failed_steps: int,
                  policy_timeout: float | None) -> float:
    """The control rate (``fps``, default the embodiment's), once :func:`run_rollout`'s settings are checked."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    fps = float(fps if fps is not None else spec.control_hz)
    if not fps > 0:
        raise ValueError(f"fps must be positive; got {fps}")
    if max_failed_steps < 0:
        raise ValueError(f"max_failed_steps must be >= 0; got {max_failed_steps}")
    if policy_timeout is not None and not policy_timeout > 0:
        raise ValueError(f"policy_timeout must be positive or None; got {policy_timeout}")
    return fps


def _connect_and_reset(arm: Any, spec: Any, safety: Any, policy: Any, prompt: str, ask: Callable[..., Any]) -> dict:
    """Connect the arm, check its first observation, start the safety filter from the measured position and reset
    the policy with the prompt; returns that first observation."""
    from lbva.eval.env import check_observation

    if not arm.is_connected:
        arm.connect()
    obs = arm.get_observation()
    check_observation(obs, spec)
    start = _hold_of(arm, obs)
    if start is None:
        logger.warning("cannot read the arm's position as an action: a broken first command holds the neutral one")
    safety.reset(start)
    ask(policy.reset, prompt)
    return obs


def _held_after_failure(safety: Any, raised: Exception) -> tuple[np.ndarray, list[str]]:
    """The command held for a step whose policy call raised, and the reason."""
    command, _ = safety.filter(safety.fallback())
    why = f"policy failed: {type(raised).__name__}: {raised}: holding the {safety._fallback_name()} command"
    return command, [why]


def _note_safety_event(summary: RolloutSummary, step: int, reasons: list[str], max_logged_reasons: int) -> None:
    """Count a step the safety layer changed, by reason kind, keep its first messages and log it."""
    summary.safety_events += 1
    for r in reasons:
        summary.reasons[reason_kind(r)] += 1
        if len(summary.first_reasons) < max_logged_reasons:
            summary.first_reasons.append(f"step {step}: {r}")
    logger.warning("step %d: safety: %s", step, "; ".join(reasons))


def _send(arm: Any, command: np.ndarray, dry_run: bool, summary: RolloutSummary, step: int) -> np.ndarray:
    """Send ``command`` (a dry run only logs it); returns what the robot really commanded."""
    if dry_run:
        logger.info("dry run step %d: would send %s", step, np.round(command, 4).tolist())
        return command
    sent = np.asarray(arm.send_action(command), dtype=np.float32).reshape(-1)
    summary.sent += 1
    if sent.shape == command.shape and not np.allclose(sent, command, rtol=0, atol=1e-4):
        summary.robot_adjusted += 1
        logger.info("step %d: the robot sent %s instead of %s", step, sent.tolist(), command.tolist())
    return sent


def _wait_for_next_period(next_t: float, period: float, summary: RolloutSummary, clock: Callable[[], float],
                          sleep: Callable[[float], None]) -> float:
    """Sleep until the next control period starts and return its start; an overrun restarts the schedule now."""
    next_t += period
    delay = next_t - clock()
    if delay > 0:
        sleep(delay)
    else:
        summary.overruns += 1
        next_t = clock()  # do not try to catch up with a burst of commands
    return next_t


def _release_arm(arm: Any, safety: Any, recorder: Any, summary: RolloutSummary, dry_run: bool,
                 disconnect: bool) -> None:
    """However the loop ended: hold the arm still (not in a dry run), finalise the recording, disconnect; each step
    runs even when the one before it raised."""
    try:
        if not dry_run:
            summary.hold_action = _hold_still(arm, safety)
    finally:
        try:
            if recorder is not None:
                recorder.finalize()
        finally:
            if disconnect:
                _disconnect(arm)


def _hold_of(arm: Any, obs: dict) -> np.ndarray | None:
    """The arm's measured position as a native action, or None when it cannot be read (or is not finite)."""
    hold = getattr(arm, "hold_action", None)
    if not callable(hold):
        return None
    a = hold(obs)
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float32).reshape(-1)
    return a if np.all(np.isfinite(a)) else None


def _hold_still(arm: Any, safety: Any) -> np.ndarray | None:
    """Send the measured position once (clipped to the limits); the last safe command if it cannot be read."""
    try:
        if not arm.is_connected:
            return None
        target = _hold_of(arm, arm.get_observation())
        if target is None:
            target = safety.last
            if target is None:
                logger.error("cannot hold the arm: neither its position nor a previous command is known")
                return None
            logger.warning("holding the last safe command (the measured position is unavailable)")
        target = np.clip(np.asarray(target, np.float32), safety.low, safety.high)
        arm.send_action(target)
        logger.info("holding still at the measured position %s", np.round(target, 3).tolist())
        return target
    except Exception:
        logger.exception("could not send the hold command")
        return None


def _disconnect(arm: Any) -> None:
    try:
        if arm.is_connected:
            arm.disconnect()
    except Exception:
        logger.exception("disconnecting the arm failed")
