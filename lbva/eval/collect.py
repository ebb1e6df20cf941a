"""Record scripted-expert demonstrations in a simulator as a LeRobot dataset: :func:`collect`.

Axis legend: T steps of an episode, h/w camera pixels, A native action dim, S native state dim.

The simulator and its expert come from a plugin (``get_env_factory(env)`` and the factory's ``expert``, see
:func:`lbva.eval.baselines.find_expert`), so ``lbva collect ENV`` works for any simulator that declares one.
Each try runs the expert (with optional Gaussian action noise) from a seeded reset; only successful episodes
are kept, up to ``episodes`` per task, giving up on a task after ``max_tries``. Frame t holds the observation
at step t and the action taken from it; the episode ends at success. Every frame carries the task's
instruction as its LeRobot ``task``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class CollectSummary:
    root: Path
    kept: dict[str, int] = field(default_factory=dict)  # task -> successful episodes recorded
    tries: dict[str, int] = field(default_factory=dict)  # task -> episodes run
    frames: int = 0


def dataset_features(spec: Any) -> dict[str, dict]:
    """LeRobot features of an embodiment: a video per camera, the native state and action."""
    features: dict[str, dict] = {
        cam.key: {"dtype": "video", "shape": (cam.height, cam.width, 3), "names": ["height", "width", "channels"]}
        for cam in spec.cameras
    }
    features[spec.state_key] = {"dtype": "float32", "shape": (int(spec.native_state_dim),), "names": list(spec.state_names)}
    features[spec.action_key] = {"dtype": "float32", "shape": (int(spec.native_action_dim),), "names": list(spec.action_names)}
    return features


def quiet_dataset_writers() -> None:
    """Keep the user's terminal to lbva's own progress bar: the video encoder's per-file statistics (libx264
    prints eight lines per episode through FFmpeg's log) and Hugging Face datasets' per-episode ``Map`` bars say
    nothing a user acts on. Errors still come through."""
    import av
    import datasets

    # FFmpeg's own threshold: LeRobot restores FFmpeg's default stderr callback after each encode, so a Python-side
    # level alone would last one episode
    av.logging.set_libav_level(av.logging.ERROR)
    datasets.disable_progress_bars()


def collect(
    env_name: str,
    tasks: Sequence[str],
    episodes: int,
    out: str | Path,
    seed: int = 0,
    noise_std: float = 0.0,
    max_tries: int | None = None,
    repo_id: str | None = None,
    codec: str = "h264",
    env_kwargs: dict | None = None,
    progress: bool = True,
    workers: int = 1,
) -> CollectSummary:
    """Record ``episodes`` successful expert episodes per task into a new LeRobot dataset at ``out``.

    ``noise_std`` adds N(0, noise_std · (high − low)/2) to every expert action (clipped to the limits);
    ``max_tries`` caps the attempts per task (default ``3 × episodes + 5``); ``codec`` is the video codec
    (h264 is quick on a CPU; LeRobot's default av1 works too). ``workers > 1`` simulates tasks in that many
    spawned processes (one task each at a time) while this process encodes and writes them; the dataset is the
    same as with one worker. Raises RuntimeError when a task yields no successful episode.
    """
    from tqdm.auto import tqdm

    from lbva.embodiment import get_embodiment, get_env_factory
    from lbva.eval.baselines import find_expert

    quiet_dataset_writers()

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1; got {episodes}")
    tasks = list(dict.fromkeys(tasks))
    if not tasks:
        raise ValueError("no tasks given; name at least one (e.g. --tasks reach-v3)")
    embodiment, factory = get_env_factory(env_name)
    find_expert(factory)  # fails now, naming the simulator, when it has no scripted expert
    spec = get_embodiment(embodiment)
    root = Path(out)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not empty; choose a new --out folder (LeRobot creates it)")
    max_tries = int(max_tries) if max_tries is not None else 3 * episodes + 5
    ds = _new_dataset(root, repo_id or f"local/{env_name}-{root.name}", spec, codec)
    summary = CollectSummary(root=root)
    bar = tqdm(total=episodes * len(tasks), desc=f"collect {env_name}", unit="ep", disable=not progress)
    args = (env_name, episodes, seed, noise_std, max_tries, env_kwargs or {})
    pool = None
    try:
        if workers > 1 and len(tasks) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=mp.get_context("spawn"))
            futures = [pool.submit(_task_episodes, task, *args) for task in tasks]
            outcomes = (f.result() for f in futures)  # in task order: the dataset does not depend on scheduling
        else:
            outcomes = (_task_episodes(task, *args, on_episode=lambda: bar.update(1)) for task in tasks)
        for task, (kept_frames, tries) in zip(tasks, outcomes):
            # with workers the bar moves as episodes are written; without, as the expert finishes them
            summary.frames += _write_episodes(ds, kept_frames, on_episode=bar.update if pool is not None else None)
            bar.set_postfix(task=task, tries=tries)
            summary.kept[task], summary.tries[task] = len(kept_frames), tries
            logger.info("%s: kept %d successful episodes of %d tries", task, len(kept_frames), tries)
            if not kept_frames:
                raise RuntimeError(
                    f"the scripted expert never succeeded on {task!r} in {tries} tries (noise_std={noise_std}); "
                    "lower --noise or raise --max-tries"
                )
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        ds.finalize()
    return summary


def _new_dataset(root: Path, repo_id: str, spec: Any, codec: str) -> Any:
    """An empty LeRobot video dataset at ``root`` with the embodiment's features, at its control rate."""
    from lerobot.configs.video import RGBEncoderConfig
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    encoder = (
        RGBEncoderConfig(vcodec="h264", preset="ultrafast", crf=12, g=2) if codec == "h264" else RGBEncoderConfig(vcodec=codec)
    )
    return LeRobotDataset.create(
        repo_id,
        fps=int(round(spec.control_hz)),
        features=dataset_features(spec),
        root=root,
        use_videos=True,
        robot_type=spec.name,
        rgb_encoder=encoder,
    )


def _write_episodes(ds: Any, kept_frames: list[list[dict]], on_episode=None) -> int:
    """Add each episode's frames to ``ds`` and save it (``on_episode(1)`` after each); returns the frames written."""
    written = 0
    for frames in kept_frames:
        for frame in frames:
            ds.add_frame(frame)
        ds.save_episode(parallel_encoding=False)
        written += len(frames)
        if on_episode is not None:
            on_episode(1)
    return written


def _task_episodes(task: str, env_name: str, episodes: int, seed: int, noise_std: float, max_tries: int,
                   env_kwargs: dict, on_episode=None) -> tuple[list[list[dict]], int]:
    """The frames of the first ``episodes`` successful expert tries of ``task`` (try k has seed
    ``episode_seed(seed, task, k)``), and how many tries that took."""
    from lbva.embodiment import get_embodiment, get_env_factory
    from lbva.eval.baselines import ScriptedPolicy, find_expert
    from lbva.eval.rollout import episode_seed

    embodiment, factory = get_env_factory(env_name)
    spec = get_embodiment(embodiment)
    env = factory(task, seed=seed, **env_kwargs)
    kept: list[list[dict]] = []
    tries = 0
    try:
        policy = ScriptedPolicy(find_expert(factory)(task), spec, noise_std=noise_std)
        while len(kept) < episodes and tries < max_tries:
            frames = _expert_episode(env, policy, episode_seed(seed, task, tries), spec)
            tries += 1
            if frames is not None:
                kept.append(frames)
                if on_episode is not None:
                    on_episode()
    finally:
        env.close()
    return kept, tries


def _expert_episode(env: Any, policy: Any, seed: int, spec: Any) -> list[dict] | None:
    """The frames of one expert episode, or None if it did not succeed."""
    obs = env.reset(seed=seed)
    policy.seed(seed)
    policy.reset(env.instruction)
    frames = []
    for _ in range(env.max_steps):
        action = policy.select_action(obs)
        frame = {cam.key: np.asarray(obs[cam.key], np.uint8) for cam in spec.cameras}
        frame[spec.state_key] = np.asarray(obs[spec.state_key], np.float32)
        frame[spec.action_key] = np.asarray(action, np.float32)
        frame["task"] = env.instruction
        frames.append(frame)
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return frames if info.get("success") else None
    return None
