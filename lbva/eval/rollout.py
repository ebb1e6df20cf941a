"""Run a policy in a simulator for seeded episodes: :func:`rollout`.

Axis legend: T steps of an episode, H/W the tiled camera frame, A native action dim.

Every episode has its own seed, derived from ``(seed, task name, episode index)`` only, so results do not
depend on the task order or on how episodes are spread over worker processes: the same seed gives the
same episodes. Each action passes the :class:`~lbva.eval.safety.SafetyFilter` before the env sees it.

Fixed initial states: when the env's ``reset`` takes an ``episode`` keyword (LIBERO's 50 fixed init states per
task), the loop passes the episode index, so episode ``e`` starts from the same state whichever worker runs it
and whatever ran before it; other envs get ``reset(seed=...)`` only.

Policies are built from a picklable ``policy_factory(task) -> PolicyLike`` (see :class:`PolicyFactory`), once
per worker and task; before each episode the loop calls ``policy.seed(episode_seed)`` when the policy has it,
then ``policy.reset(instruction)``; after the safety filter, ``policy.report_executed(action)`` when the policy
has it, so a world-model policy feeds back what the robot actually received (``lbva.inference.Policy`` collects
keyframes and executed actions itself inside ``select_action``).
"""

from __future__ import annotations

import inspect
import logging
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def _worker_init(threads: int) -> None:
    """An evaluation worker process: its share of the machine's cores for torch's intra-op threads."""
    import torch

    torch.set_num_threads(threads)


def episode_seed(seed: int, task: str, episode: int) -> int:
    """A 31-bit seed for one episode, a function of (seed, task name, episode index) only."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(task.encode()), int(episode)])
    return int(ss.generate_state(1)[0] & 0x7FFFFFFF)


@dataclass
class EpisodeResult:
    task: str
    episode: int
    seed: int
    success: bool
    progress: float  # in [0, 1]
    steps: int
    reward: float  # summed over the episode
    safety_events: int = 0  # steps whose command the safety filter changed
    safety_reasons: list[str] = field(default_factory=list)  # the first few, for the report
    frames: np.ndarray | None = None  # (T+1, H, W, 3) uint8 tiled camera frames when recorded
    # a world-model policy's chunk timings (``Policy.stats.summary(control_hz)``): latency, idle time
    policy_stats: dict[str, float] | None = None
    # the episode on a robot at the embodiment's control rate: steps / control_hz plus the idle time the policy's
    # predictions would have cost there (``policy_stats["modelled_idle_s"]``; 0 for policies without timings)
    robot_time_s: float | None = None


@dataclass(frozen=True)
class PolicyFactory:
    """A picklable description of a policy: ``zero``, ``random``, ``scripted`` or a checkpoint folder.

    ``env`` is the simulator (the scripted expert comes from its plugin); ``noise_std`` perturbs the scripted
    expert; ``checkpoint`` loads ``lbva.inference.Policy.from_pretrained(checkpoint, embodiment=...)``.
    """

    kind: str
    env: str
    checkpoint: str | None = None
    noise_std: float = 0.0

    def __call__(self, task: str) -> Any:
        from lbva.embodiment import get_embodiment, get_env_factory
        from lbva.eval import baselines

        embodiment, env_factory = get_env_factory(self.env)
        spec = get_embodiment(embodiment)
        if self.kind == "zero":
            return baselines.ZeroPolicy(spec)
        if self.kind == "random":
            return baselines.RandomPolicy(spec)
        if self.kind == "scripted":
            expert = baselines.find_expert(env_factory)(task)
            return baselines.ScriptedPolicy(expert, spec, noise_std=self.noise_std)
        if self.kind == "checkpoint":
            return load_checkpoint_policy(self.checkpoint, embodiment)
        raise ValueError(f"unknown policy kind {self.kind!r}; allowed: zero, random, scripted, checkpoint")


def load_checkpoint_policy(path: str | None, embodiment: str) -> Any:
    """``lbva.inference.Policy.from_pretrained(path, embodiment=...)``."""
    from lbva.inference import Policy

    return Policy.from_pretrained(path, embodiment=embodiment)


def reset_env(env: Any, seed: int, episode: int) -> dict:
    """``env.reset(seed=seed, episode=episode)`` when the env takes an episode index, else ``env.reset(seed=seed)``."""
    if _takes_keyword(env.reset, "episode"):
        return env.reset(seed=seed, episode=episode)
    return env.reset(seed=seed)


def _takes_keyword(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return any(
        (p.name == name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)) or p.kind is p.VAR_KEYWORD
        for p in params
    )


def run_episode(
    env: Any,
    policy: Any,
    seed: int,
    safety: Any,
    spec: Any,
    episode: int = 0,
    max_steps: int | None = None,
    record: bool = False,
) -> EpisodeResult:
    """One episode (index ``episode``) of ``policy`` in ``env`` from :func:`reset_env`; see the module docstring."""
    limit = int(env.max_steps if max_steps is None else min(max_steps, env.max_steps))
    obs = reset_env(env, seed, episode)
    if callable(getattr(policy, "seed", None)):
        policy.seed(seed)
    policy.reset(env.instruction)
    safety.reset()
    frames = [_tile(spec, obs)] if record else None
    info: dict = {"success": False, "progress": 0.0}
    steps, total_reward, reasons = 0, 0.0, []
    report_executed = getattr(policy, "report_executed", None)
    for _ in range(limit):
        action, why = safety.filter(policy.select_action(obs))
        if why and len(reasons) < 5:
            reasons.extend(why)
        if callable(report_executed):
            report_executed(action)
        obs, reward, terminated, truncated, info = env.step(action)
        steps += 1
        total_reward += float(reward)
        if frames is not None:
            frames.append(_tile(spec, obs))
        if terminated or truncated:
            break
    pstats = _policy_stats(policy, spec)
    hz = float(getattr(spec, "control_hz", 0) or 0)
    robot_time = steps / hz + (pstats or {}).get("modelled_idle_s", 0.0) if hz else None
    return EpisodeResult(
        task=env.task,
        episode=episode,
        seed=int(seed),
        success=bool(info.get("success", False)),
        progress=float(info.get("progress", 0.0)),
        steps=steps,
        reward=total_reward,
        safety_events=int(safety.events),
        safety_reasons=reasons[:5],
        frames=np.stack(frames) if frames is not None else None,
        policy_stats=pstats,
        robot_time_s=robot_time,
    )


def _policy_stats(policy: Any, spec: Any) -> dict[str, float] | None:
    """The episode's chunk timings of a policy that keeps them (``policy.stats.summary``), else None."""
    stats = getattr(policy, "stats", None)
    summary = getattr(stats, "summary", None)
    if not callable(summary):
        return None
    if _takes_keyword(summary, "control_hz"):
        return dict(summary(control_hz=getattr(spec, "control_hz", None)))
    return dict(summary())


def _tile(spec: Any, obs: dict) -> np.ndarray:
    return np.asarray(spec.tile({cam.key: obs[cam.key] for cam in spec.cameras}), dtype=np.uint8)  # (H, W, 3)


def _run_chunk(
    env_name: str,
    task: str,
    jobs: Sequence[tuple[int, int]],
    policy_factory: Callable[[str], Any],
    max_steps: int | None,
    record_videos: int,
    max_delta: float | None,
    env_kwargs: dict,
    on_episode: Callable[[EpisodeResult], None] | None = None,
) -> list[EpisodeResult]:
    """Episodes ``jobs`` = [(episode index, seed), ...] of one task, with one env and one policy."""
    from lbva.embodiment import get_embodiment, get_env_factory
    from lbva.eval.safety import SafetyFilter

    embodiment, factory = get_env_factory(env_name)
    spec = get_embodiment(embodiment)
    kwargs = dict(env_kwargs)
    if max_steps is not None:
        kwargs.setdefault("max_steps", max_steps)
    env = factory(task, seed=jobs[0][1] if jobs else 0, **kwargs)
    out: list[EpisodeResult] = []
    try:
        policy = policy_factory(task)
        safety = SafetyFilter(spec, max_delta=max_delta)
        for e, s in jobs:
            out.append(run_episode(env, policy, s, safety, spec, episode=e, max_steps=max_steps, record=e < record_videos))
            if on_episode is not None:
                on_episode(out[-1])
    finally:
        env.close()
    return out


def rollout(
    env_name: str,
    policy_factory: Callable[[str], Any],
    tasks: Sequence[str],
    episodes: int,
    seed: int = 0,
    workers: int = 1,
    max_steps: int | None = None,
    record_videos: int = 0,
    max_delta: float | None = None,
    env_kwargs: dict | None = None,
    progress: bool = True,
) -> list[EpisodeResult]:
    """``episodes`` seeded episodes per task; results sorted by (task order, episode).

    ``workers > 1`` runs episodes in that many spawned processes (``policy_factory`` must be picklable, e.g.
    :class:`PolicyFactory`); results are identical to ``workers=1``. ``record_videos`` keeps the tiled frames of
    the first that many episodes of each task. ``max_delta`` enables the safety filter's rate limit.
    """
    from tqdm.auto import tqdm

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1; got {episodes}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    tasks = list(dict.fromkeys(tasks))
    if not tasks:
        raise ValueError("no tasks given; name at least one (e.g. --tasks reach-v3)")
    env_kwargs = dict(env_kwargs or {})
    chunks = []
    for task in tasks:
        jobs = [(e, episode_seed(seed, task, e)) for e in range(episodes)]
        n = min(workers, episodes)
        chunks += [(task, jobs[i::n]) for i in range(n)] if workers > 1 else [(task, jobs)]
    args = (max_steps, record_videos, max_delta, env_kwargs)
    results: list[EpisodeResult] = []
    bar = tqdm(total=episodes * len(tasks), desc=f"eval {env_name}", unit="ep", disable=not progress)
    try:
        if workers == 1:
            for task, jobs in chunks:  # one env per task; the bar moves after every episode
                results += _run_chunk(env_name, task, jobs, policy_factory, *args, on_episode=lambda r: bar.update(1))
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            threads = max(1, (os.cpu_count() or 1) // workers)  # share the cores instead of oversubscribing them
            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                     initializer=_worker_init, initargs=(threads,)) as pool:
                futures = [pool.submit(_run_chunk, env_name, t, j, policy_factory, *args) for t, j in chunks]
                for fut in as_completed(futures):
                    done = fut.result()
                    results += done
                    bar.update(len(done))
    finally:
        bar.close()
    order = {t: i for i, t in enumerate(tasks)}
    results.sort(key=lambda r: (order[r.task], r.episode))
    return results
