"""``lbva eval`` and ``lbva collect``: evaluate a policy in a simulator, record expert demonstrations.

Both find the simulator through the plugin registry (``lbva.embodiment.get_env_factory``), so they work for
any installed simulator plugin (``lbva_register_envs``); ``collect`` also needs the plugin's scripted expert.
Nothing heavy is imported until a handler runs.
"""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)

BASELINES = ("zero", "random", "scripted")


def _tasks(raw: str) -> list[str]:
    return [t.strip() for t in raw.split(",") if t.strip()]


def register(subparsers) -> None:
    from lbva.config.eval import EvalConfig

    d = EvalConfig()
    p = subparsers.add_parser("eval", help="evaluate a policy (baseline or checkpoint) in a simulator")
    p.add_argument("env", help="simulator name (see `lbva embodiments show NAME`), e.g. metaworld")
    p.add_argument("--policy", default="scripted", help="zero | random | scripted | a checkpoint folder")
    p.add_argument("--tasks", required=True, type=_tasks, help="comma-separated task names, e.g. reach-v3,push-v3 (groups such as libero_goal:all where the simulator has them)")
    p.add_argument("--episodes", type=int, default=d.episodes, help="episodes per task")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--max-steps", type=int, default=None, help="step limit per episode (default: the env's)")
    p.add_argument("--workers", type=int, default=d.workers, help="parallel worker processes")
    p.add_argument("--videos", type=int, default=d.record_videos, help="episodes per task saved as mp4")
    p.add_argument("--max-delta", type=float, default=d.max_delta, help="safety rate limit per step (default off)")
    p.add_argument("--noise", type=float, default=d.noise_std, help="scripted policy action noise")
    p.add_argument("--out", default=d.output_dir, help="report folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_eval)

    c = subparsers.add_parser("collect", help="record scripted-expert demonstrations as a LeRobot dataset")
    c.add_argument("env", help="simulator name, e.g. metaworld")
    c.add_argument("--tasks", required=True, type=_tasks, help="comma-separated task names")
    c.add_argument("--episodes", type=int, required=True, help="successful episodes to keep per task")
    c.add_argument("--out", required=True, help="new dataset folder")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--noise", type=float, default=0.0, help="expert action noise (fraction of half the range)")
    c.add_argument("--max-tries", type=int, default=None, help="attempts per task (default 3*episodes+5)")
    c.add_argument("--repo-id", default=None, help="LeRobot repo id written into the metadata")
    c.add_argument("--codec", default="h264", help="video codec: h264 (fast) or av1 (LeRobot's default)")
    c.add_argument("--workers", type=int, default=1,
                   help="processes simulating tasks in parallel (the dataset is the same for any number)")
    c.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    c.set_defaults(func=run_collect)


def _resolve_env(name: str) -> str:
    from lbva.errors import CLIError
    from lbva.embodiment import UnknownEmbodimentError, get_env_factory

    try:
        get_env_factory(name)
    except UnknownEmbodimentError as e:
        raise CLIError(str(e)) from None
    return name


def expand_tasks(env: str, tasks: list[str]) -> list[str]:
    """Task names with the simulator's own group names expanded (LIBERO: ``libero_goal:all``).

    A plugin offers this by attaching ``expand_tasks(names) -> list[str]`` to its env factory (or defining it in
    the factory's module); names it does not know raise ``ValueError``. Without one, names pass unchanged."""
    import sys

    from lbva.errors import CLIError
    from lbva.embodiment import get_env_factory

    factory = get_env_factory(env)[1]
    expand = getattr(factory, "expand_tasks", None)
    if expand is None:
        expand = getattr(sys.modules.get(getattr(factory, "__module__", ""), None), "expand_tasks", None)
    if not callable(expand):
        return tasks
    try:
        out = list(expand(list(tasks)))
    except ValueError as e:
        raise CLIError(str(e)) from None
    if not out:
        raise CLIError(f"--tasks {','.join(tasks)} names no task of {env}")
    return out


def _check_counts(args: argparse.Namespace) -> None:
    from lbva.cli_args import output_dir
    from lbva.errors import CLIError

    for flag, value, lo in (("--episodes", args.episodes, 1), ("--workers", getattr(args, "workers", 1), 1)):
        if value < lo:
            raise CLIError(f"{flag}={value} must be >= {lo}")
    if not args.tasks:
        raise CLIError("--tasks is empty; name at least one task, e.g. --tasks reach-v3")
    output_dir(args.out, "--out")


def run_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lbva.errors import CLIError
    from lbva.eval.report import write_report
    from lbva.eval.rollout import PolicyFactory, rollout

    _check_counts(args)
    env = _resolve_env(args.env)
    args.tasks = expand_tasks(env, args.tasks)
    if args.policy in BASELINES:
        factory = PolicyFactory(args.policy, env, noise_std=args.noise)
    elif Path(args.policy).is_dir():
        factory = PolicyFactory("checkpoint", env, checkpoint=str(Path(args.policy).resolve()))
    else:
        raise CLIError(f"--policy {args.policy!r} is neither a baseline ({', '.join(BASELINES)}) nor a checkpoint folder")
    try:
        results = rollout(
            env, factory, args.tasks, args.episodes, seed=args.seed, workers=args.workers, max_steps=args.max_steps,
            record_videos=args.videos, max_delta=args.max_delta, progress=not args.no_progress,
        )
    except ValueError as e:  # unknown task, bad step limit ...
        raise CLIError(str(e)) from None
    from lbva.embodiment import get_embodiment, get_env_factory

    spec = get_embodiment(get_env_factory(env)[0])
    settings = {"env": env, "policy": args.policy, "episodes": args.episodes, "seed": args.seed,
                "max_steps": args.max_steps, "max_delta": args.max_delta}
    rep = write_report(results, args.out, title=f"lbva eval {env} — {args.policy}", settings=settings, fps=min(spec.control_hz, 30))
    mean = rep["summary"]["mean"]
    logger.info("success rate %.3f, progress %.3f over %d episodes; report: %s", mean["success_rate"], mean["progress"],
                int(mean["episodes"]), rep["files"]["markdown"])
    return 0


def run_collect(args: argparse.Namespace) -> int:
    from lbva.errors import CLIError
    from lbva.eval.collect import collect

    _check_counts(args)
    env = _resolve_env(args.env)
    args.tasks = expand_tasks(env, args.tasks)
    try:
        s = collect(env, args.tasks, args.episodes, args.out, seed=args.seed, noise_std=args.noise,
                    max_tries=args.max_tries, repo_id=args.repo_id, codec=args.codec, progress=not args.no_progress,
                    workers=args.workers)
    except (ValueError, FileExistsError, RuntimeError) as e:
        raise CLIError(str(e)) from None
    for task in s.kept:
        logger.info("%s: %d episodes kept of %d tries", task, s.kept[task], s.tries[task])
    logger.info("dataset written to %s (%d frames)", s.root, s.frames)
    return 0
