"""``lbva rollout --robot NAME (--checkpoint PATH | --server URL) --prompt TEXT``: drive a real (or simulated) arm.

Robots come from plugins (``lbva_register_robots``; ``lbva-lerobot-arms`` brings ``so101_follower``,
``so100_follower``, ``koch_follower`` and the MuJoCo ``sim-so101``). The loop is :func:`lbva.robots.loop.run_rollout`.
Nothing heavy is imported until the command runs.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
from typing import Any

from lbva import strict_json

logger = logging.getLogger(__name__)

DEFAULT_MAX_DELTA = 5.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rollout",
        help="run a policy on a real arm (or sim-so101), with limits, a rate limit, an emergency stop, recording",
        description=(
            "Drive a robot registered by a plugin with a policy checkpoint or a policy server. Every command is "
            "clamped to the embodiment's limits and rate-limited; Ctrl-C, q/space/Esc (when stdin is a terminal) or "
            "--stop-file stop the arm, which then holds its measured position. --dry-run moves nothing."
        ),
    )
    p.add_argument("--robot", required=True, help="robot name (see `lbva embodiments show so101`), e.g. so101_follower, sim-so101")
    p.add_argument("--robot-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="argument for the robot factory, repeatable (port=/dev/ttyACM0, cameras=front:0,wrist:2, id=my_arm)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="policy folder (lbva train / lbva model init --embodiment)")
    src.add_argument("--server", help="policy server URL, ws://host:port (lbva serve, or an openpi server)")
    p.add_argument("--prompt", required=True, help="the task instruction")
    p.add_argument("--embodiment", default=None, help="embodiment to drive the robot as (default: the robot's own)")
    p.add_argument("--steps", type=int, default=300, help="control steps (default 300)")
    p.add_argument("--fps", type=float, default=None, help="control rate in Hz (default: the embodiment's)")
    p.add_argument("--dry-run", action="store_true", help="read, think and log the commands, but never send one")
    p.add_argument("--max-delta", type=float, default=DEFAULT_MAX_DELTA,
                   help=f"largest change of any channel per step, in native units (default {DEFAULT_MAX_DELTA}; 0 disables)")
    p.add_argument("--stop-file", default=None, help="stop the arm as soon as this file exists")
    p.add_argument("--no-keys", action="store_true", help="do not watch stdin for q/space/Esc")
    p.add_argument("--record", default=None, metavar="DIR", help="record the rollout as a LeRobot dataset in DIR (new folder)")
    p.add_argument("--repo-id", default=None, help="dataset repo id for --record (default local/rollout-<DIR name>)")
    p.add_argument("--device", default="cpu", help="torch device for --checkpoint (cpu, cuda)")
    p.add_argument("--mode", default=None, choices=("sync", "naive_async", "fdm_async"),
                   help="inference mode for --checkpoint (default: the policy folder's); the async modes predict the "
                        "next chunk while this one executes")
    p.add_argument("--summary", default=None, metavar="JSON", help="also write the summary to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def parse_value(text: str) -> Any:
    """A ``--robot-arg`` value: JSON (numbers, true/false/null, objects, lists) where it parses, else the string."""
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_robot_args(items: list[str]) -> dict[str, Any]:
    from lbva.cli import CLIError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise CLIError(f"--robot-arg {item!r} must be KEY=VALUE (e.g. port=/dev/ttyACM0)")
        out[key] = parse_value(value)
    return out


def build_arm(robot: str, embodiment: str | None, robot_args: dict[str, Any]) -> tuple[Any, Any]:
    """``(arm, spec)`` for a registered robot: the factory is called with the robot args (and ``embodiment``
    when it accepts it)."""
    from lbva.cli import CLIError
    from lbva.embodiment import get_embodiment, get_robot_factory

    own, factory = get_robot_factory(robot)
    spec = get_embodiment(embodiment or own)
    kwargs = dict(robot_args)
    try:
        params = inspect.signature(factory).parameters
        takes = "embodiment" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):
        takes = True
    if takes:
        kwargs.setdefault("embodiment", spec)
    elif embodiment and embodiment != own:
        raise CLIError(f"robot {robot!r} is built for embodiment {own!r} and its factory takes no embodiment; drop --embodiment")
    try:
        arm = factory(**kwargs)
    except TypeError as e:
        raise CLIError(f"robot {robot!r} does not accept these arguments ({e}); check --robot-arg") from None
    except ValueError as e:
        raise CLIError(f"robot {robot!r}: {e}") from None
    missing = [m for m in ("get_observation", "send_action", "connect", "disconnect") if not callable(getattr(arm, m, None))]
    if missing or not hasattr(arm, "is_connected"):
        raise CLIError(
            f"robot {robot!r}'s factory returned {type(arm).__name__}, which lacks {missing or ['is_connected']}; a robot "
            "factory must return an lbva arm (lbva.robots.loop.Arm; wrap LeRobot robots in lbva_lerobot_arms.LeRobotArm)"
        )
    return arm, spec


def build_policy(args: argparse.Namespace, spec: Any) -> Any:
    if args.server:
        from lbva.robots.remote import ServerPolicy

        return ServerPolicy.connect(args.server, spec)
    from lbva.inference import Policy

    overrides = {"mode": args.mode} if args.mode else {}
    return Policy.from_pretrained(args.checkpoint, embodiment=spec.name, device=args.device, **overrides)


def _run(args: argparse.Namespace) -> int:
    from lbva.cli import CLIError

    if args.steps < 1:
        raise CLIError(f"--steps must be at least 1; got {args.steps}")
    if args.fps is not None and not args.fps > 0:
        raise CLIError(f"--fps must be positive; got {args.fps}")
    max_delta = args.max_delta if args.max_delta and args.max_delta > 0 else None
    if max_delta is None:
        logger.warning("--max-delta 0: no limit on the change per step (limits still clamp every command)")
    arm, spec = build_arm(args.robot, args.embodiment, parse_robot_args(args.robot_arg))

    from lbva.robots.loop import run_rollout
    from lbva.robots.stop import EmergencyStop

    try:
        stop = EmergencyStop(stop_file=args.stop_file, keys=False if args.no_keys else None)
    except FileExistsError as e:
        raise CLIError(str(e)) from None

    def robot_error(e: Exception) -> Exception:
        return CLIError(
            f"robot {args.robot!r}: {' '.join(str(e).split())} Check the cable, the port (lerobot-find-port), the "
            "cameras (lerobot-find-cameras) and the calibration id"
        )

    recorder = None
    if args.record:  # before anything connects: a bad folder fails first
        from lbva.robots.record import RolloutRecorder

        try:
            recorder = RolloutRecorder(args.record, spec, fps=args.fps or spec.control_hz, repo_id=args.repo_id)
        except FileExistsError as e:
            raise CLIError(str(e)) from None
    policy = None
    try:
        try:  # connect before loading the policy (which can take minutes): a wrong port fails fast
            arm.connect()
        except ConnectionError as e:
            raise robot_error(e) from None
        policy = build_policy(args, spec)
        with stop:
            try:
                summary = run_rollout(arm, policy, args.prompt, args.steps, spec=spec, fps=args.fps,
                                      dry_run=args.dry_run, max_delta=max_delta, stop=stop, recorder=recorder,
                                      progress=not args.no_progress)
            except ConnectionError as e:  # LeRobot's bus/camera failures mid-run (the arm was held and disconnected)
                raise robot_error(e) from None
    finally:
        if policy is not None and callable(getattr(policy, "close", None)):
            policy.close()
        if arm.is_connected:  # the rollout never started (the policy failed to load)
            arm.disconnect()
        if recorder is not None:
            recorder.finalize()  # no-op when the rollout finalised it
    for line in summary.lines():
        print(line)
    if recorder is not None:
        print(f"dataset: {recorder.root} ({recorder.episodes} episode(s))")
    if args.summary:
        from pathlib import Path

        Path(args.summary).write_text(strict_json.dumps(summary.to_dict(), indent=2))
    return 0 if not summary.stopped or summary.stop_reason.startswith("emergency stop") else 1
