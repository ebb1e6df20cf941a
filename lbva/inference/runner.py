"""The LeRobot-style loop under ``Policy.select_action``: the action queue, the feedback it gathers, the background
worker of the async modes, and the chunk timings.

Every N actions is one latent frame: the runner keeps one observation's views per N / stride actions as the real
keyframes, and when a chunk's queue is empty it feeds the chunk back (``Policy.observe``) and moves to the next.
In ``sync`` mode the next chunk is predicted then; in ``naive_async`` a worker predicts it while the current one
executes, from the imagined video; in ``fdm_async`` the worker starts once the first real keyframe is in and
grounds the current chunk on it first (:meth:`~lbva.inference.predictor.ChunkPredictor.ground`).
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from lbva.inference.policy import Policy


@dataclass
class ChunkTiming:
    chunk: int
    latency_s: float  # wall time of the prediction (worker or inline)
    wait_s: float  # how long the robot waited for it (idle time)
    mode: str
    overlap_actions: int = 0  # actions the robot executed while the prediction ran (0 when it waited for it)

    def modelled_wait_s(self, control_hz: float) -> float:
        """The robot's idle time on real hardware at ``control_hz``: the latency the executing actions did not hide."""
        return max(0.0, self.latency_s - self.overlap_actions / float(control_hz))


@dataclass
class PolicyStats:
    chunks: list[ChunkTiming] = field(default_factory=list)

    def summary(self, control_hz: float | None = None) -> dict[str, float]:
        """Latency percentiles and idle time; with ``control_hz`` also ``modelled_idle_s``, the idle time a robot
        running at that rate would have had (simulators step faster than real time, so their measured waits
        understate it)."""
        if not self.chunks:
            return {"chunks": 0}
        lat = np.array([c.latency_s for c in self.chunks])
        wait = np.array([c.wait_s for c in self.chunks])
        out = {"chunks": len(self.chunks), "latency_p50_s": float(np.percentile(lat, 50)),
               "latency_p95_s": float(np.percentile(lat, 95)), "idle_mean_s": float(wait.mean()),
               "idle_total_s": float(wait.sum())}
        if control_hz:
            out["modelled_idle_s"] = float(sum(c.modelled_wait_s(control_hz) for c in self.chunks))
        return out


class ActionRunner:
    """One action at a time for ``policy``, chunk by chunk; one instance per policy, reset per episode.

    It drives the policy through its public calls (``predict_action_chunk``, ``observe``) and, on the worker, its
    parts (``observations``, ``predictor``, ``codec``)."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.mode = policy.mode
        self.keyframe_every = policy.N // policy.stride  # actions per real keyframe
        self._executor: ThreadPoolExecutor | None = None
        self._future: Future | None = None
        self.reset()

    def reset(self) -> None:
        """Wait for the worker, then forget the episode's queue, feedback and timings."""
        self.wait()
        self.queue: list[np.ndarray] = []
        self.chunk = -1  # the chunk executing
        self.executed: list[np.ndarray] = []
        self.keyframes: list[dict[str, np.ndarray]] = []  # camera key -> (h, w, 3), one per keyframe
        self._submitted_at = 0  # len(self.executed) when the worker was given the next chunk
        self.stats = PolicyStats()

    def select(self, observation) -> np.ndarray:
        """The next action (D,); see ``Policy.select_action``."""
        if self.chunk < 0:  # first call of an episode
            self.queue = list(self.policy.predict_action_chunk(observation))
            self.chunk = 0
            self.executed, self.keyframes = [], []
            self._maybe_submit()
        else:
            if len(self.executed) % self.keyframe_every == 0:
                self.keyframes.append(self.policy.observations.views(observation))
            self._maybe_submit()
            if not self.queue:
                self._finish_chunk()
        action = self.queue.pop(0)
        self.executed.append(action)
        return action

    def report_executed(self, action) -> None:
        """The action the robot really received for the last :meth:`select`."""
        if self.executed:
            self.executed[-1] = np.asarray(action, dtype=np.float32)

    def _finish_chunk(self) -> None:
        c = self.chunk
        frames, executed = self.policy.observations.stack(self.keyframes), np.stack(self.executed)
        if self.mode == "sync":
            self.policy.observe(frames, executed)
            self.queue = list(self.policy.predict_action_chunk())
        else:
            t0 = time.perf_counter()
            if self._future is None:  # the worker never started (e.g. fdm with no keyframe yet)
                self._maybe_submit(force=True)
            nxt, latency = self._future.result()
            wait = time.perf_counter() - t0
            self._future = None
            self.policy.observe(frames, executed)  # real chunk c replaces its imagined (or re-imagined) video
            overlap = len(self.executed) - self._submitted_at  # actions sent while the worker predicted c+1
            self.stats.chunks.append(ChunkTiming(c + 1, latency, wait, self.mode, overlap))
            self.queue = list(nxt)
        self.chunk = c + 1
        self.executed, self.keyframes = [], []
        self._maybe_submit()

    def _maybe_submit(self, force: bool = False) -> None:
        if self.mode == "sync" or self._future is not None:
            return
        c = self.chunk
        self._submitted_at = len(self.executed)
        stride = self.policy.stride
        if self.mode == "naive_async":
            self._future = self._worker().submit(self._timed, self._predict_next, c + 1)
        elif len(self.keyframes) >= stride or force:
            whole = len(self.keyframes) // stride * stride  # whole latent frames only
            real = self.policy.observations.stack(self.keyframes[:whole]) if whole else None
            sent = np.stack(self.executed + self.queue)  # every action of chunk c is committed to the robot
            self._future = self._worker().submit(self._timed, self._ground_and_predict, c, real, sent)

    @staticmethod
    def _timed(fn, *args) -> tuple[Any, float]:
        t0 = time.perf_counter()
        out = fn(*args)
        return out, time.perf_counter() - t0

    def _predict_next(self, c: int) -> np.ndarray:
        return self.policy.codec.to_native(c, self.policy.predictor.predict(c))

    def _ground_and_predict(self, c: int, real_frames: dict[str, np.ndarray] | None, sent: np.ndarray) -> np.ndarray:
        """FDM grounding: re-imagine chunk c from its real keyframes so far and the actions sent, then predict c+1."""
        predictor = self.policy.predictor
        fixed = predictor.cond_latent if c == 0 else None
        if real_frames is not None:
            lat = self.policy.observations.encode(real_frames, commit=False)  # observe() encodes the whole chunk later
            fixed = lat if fixed is None else torch.cat([fixed, lat], dim=2)
            fixed = fixed[:, :, : predictor.K]
        predictor.ground(c, fixed, self.policy.codec.to_model(c, sent))
        return self._predict_next(c + 1)

    def _worker(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lbva-policy")
        return self._executor

    def wait(self) -> None:
        """Wait for the worker's prediction in flight, if any."""
        if self._future is not None:
            self._future.result()
            self._future = None

    def close(self) -> None:
        self.wait()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
