"""The model object RoboTwin's evaluation loop drives: :class:`LbvaRoboTwinPolicy`.

RoboTwin's ``script/eval_policy.py`` calls, per episode, ``reset_model(model)`` and then, while
``TASK_ENV.take_action_cnt < TASK_ENV.step_lim``, ``eval(TASK_ENV, model, TASK_ENV.get_obs())`` until
``TASK_ENV.eval_success``. Each :meth:`LbvaRoboTwinPolicy.step` (that ``eval``):

1. on the first call of an episode: resets the server session with ``TASK_ENV.get_instruction()`` and records
   the episode's initial end poses (``pose_mode="relative"``);
2. when its action queue is empty: sends the observation (three cameras resized to the served sizes, the joint
   vector, the prompt) and queues the returned chunk (T, 16);
3. executes queued actions with ``take_action(..., action_type="ee")`` — the whole chunk, or
   ``actions_per_call`` of them — taking a keyframe (``get_obs()``) after every ``actions_per_frame`` actions,
   and stops at success or the step limit;
4. when a chunk has run to its end: sends ``feedback`` (the executed native actions and the keyframes) so the
   server's world model replaces its imagined frames with the real ones.

Needs only numpy and the torch-free ``lbva-client`` (never the lbva library), so it installs into RoboTwin's own
Python 3.10 environment.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from lbva_robotwin import convert as C

logger = logging.getLogger(__name__)

EMBODIMENT = "robotwin-aloha-agilex"


class LbvaRoboTwinPolicy:
    """A client session with ``lbva serve --embodiment robotwin-aloha-agilex`` speaking RoboTwin's contract.

    Args:
        host, port: where ``lbva serve`` listens.
        pose_mode: ``relative`` (the released model: poses relative to the episode start) or ``absolute``
            (see :mod:`lbva_robotwin.convert`).
        actions_per_frame: one keyframe is fed back after this many actions; default: what the server's
            metadata asks for (``feedback.frame_every_actions``: 4 for a policy with the Wan2.2 VAE, which takes
            4 frames per latent frame), else the embodiment's actions per latent frame (16).
        actions_per_call: actions executed per ``eval`` call; ``None`` runs the whole chunk.
        feedback: send executed actions and keyframes back after each chunk (lbva servers); turn off for a
            plain openpi server.
        timeout: seconds to wait for a reply.
        client_factory: ``(host, port, timeout) -> client`` (tests); default :class:`lbva_client.LbvaClient`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        pose_mode: str = "relative",
        embodiment: str = EMBODIMENT,
        actions_per_frame: int | None = None,
        actions_per_call: int | None = None,
        feedback: bool = True,
        timeout: float = 300.0,
        client_factory: Callable[..., Any] | None = None,
    ) -> None:
        if pose_mode not in C.POSE_MODES:
            raise ValueError(f"pose_mode {pose_mode!r} is not one of {C.POSE_MODES}; set pose_mode in deploy_policy.yml")
        if actions_per_call is not None and int(actions_per_call) < 1:
            raise ValueError(f"actions_per_call must be >= 1 or null (whole chunk); got {actions_per_call!r}")
        if client_factory is None:
            from lbva_client import LbvaClient

            client_factory = lambda h, p, t: LbvaClient(h, p, timeout=t)  # noqa: E731
        self.client = client_factory(host, int(port), timeout)
        meta = self.client.metadata
        served = meta.get("embodiment")
        if served != embodiment:
            self.client.close()
            raise ValueError(
                f"the server at {host}:{port} serves {served!r}, not {embodiment!r}; start it with "
                f"`lbva serve ... --embodiment {embodiment}`")
        self.embodiment = embodiment
        self.sizes = self._camera_sizes(meta)
        shape = tuple(meta.get("action", {}).get("shape", ()))
        if len(shape) != 2 or shape[1] != C.ACTION_DIM:
            self.client.close()
            raise ValueError(f"the server returns actions of shape {shape}; this adapter needs (T, {C.ACTION_DIM})")
        if actions_per_frame is None:  # what the server asks for (4 frames per latent frame with the Wan VAE)
            actions_per_frame = (meta.get("feedback") or {}).get("frame_every_actions")
        if actions_per_frame is None:  # a server that does not say: one keyframe per latent frame of the embodiment
            actions_per_frame = C.ACTIONS_PER_FRAME
        if int(actions_per_frame) < 1:
            raise ValueError(f"actions_per_frame must be >= 1; got {actions_per_frame!r}")
        self.actions_per_frame = int(actions_per_frame)
        self.actions_per_call = None if actions_per_call is None else int(actions_per_call)
        self.pose_mode = pose_mode
        self.feedback = bool(feedback)
        self.prompt: str | None = None
        self.init_pose: np.ndarray | None = None  # (16,) RoboTwin end poses at the episode start
        self.queue: deque[np.ndarray] = deque()
        self._chunk_len = 0
        self._executed: list[np.ndarray] = []
        self._keyframes: list[dict[str, np.ndarray]] = []
        self.chunks = 0  # chunks requested this episode
        self.episodes = 0

    @staticmethod
    def _camera_sizes(meta: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
        obs = meta.get("observation", {})
        sizes = {}
        for key in C.CAMERAS.values():
            if key not in obs:
                raise ValueError(f"the server does not take camera {key!r} (it takes {sorted(obs)}); serve {EMBODIMENT}")
            h, w, _ = obs[key]["shape"]
            sizes[key] = (int(h), int(w))
        return sizes

    # ---------------------------------------------------------------------------------------- RoboTwin hooks
    def reset(self) -> None:
        """``reset_model``: forget the episode (queue, initial pose, prompt); the server session is reset on
        the next ``step`` with that episode's instruction."""
        self.prompt = None
        self.init_pose = None
        self.queue.clear()
        self._executed, self._keyframes, self._chunk_len = [], [], 0
        self.chunks = 0

    def step(self, task_env: Any, observation: Mapping[str, Any]) -> int:
        """``eval(TASK_ENV, model, observation)``: run actions; returns how many were sent to RoboTwin."""
        if self.prompt is None:
            self._start_episode(task_env, observation)
        if not self.queue:
            self._request_chunk(observation)
        budget = len(self.queue) if self.actions_per_call is None else self.actions_per_call
        sent = 0
        while self.queue and sent < budget and not self._episode_over(task_env):
            action = self.queue.popleft()
            task_env.take_action(C.to_robotwin_action(action, self.pose_mode, self.init_pose), action_type="ee")
            sent += 1
            executed = action.copy()
            executed[[7, 15]] = np.clip(executed[[7, 15]], 0.0, 1.0)  # what RoboTwin's grippers received
            self._executed.append(executed)
            if len(self._executed) % self.actions_per_frame == 0:
                self._keyframes.append(C.camera_frames(task_env.get_obs(), self.sizes))
            if not self.queue:
                self._send_feedback()
        return sent

    # ------------------------------------------------------------------------------------------- internals
    @staticmethod
    def _episode_over(task_env: Any) -> bool:
        if getattr(task_env, "eval_success", False):
            return True
        limit = getattr(task_env, "step_lim", None)
        return limit is not None and task_env.take_action_cnt >= limit

    def _start_episode(self, task_env: Any, observation: Mapping[str, Any]) -> None:
        prompt = task_env.get_instruction()
        if not isinstance(prompt, str) or not prompt:
            raise C.RoboTwinFormatError(
                f"TASK_ENV.get_instruction() returned {prompt!r}; RoboTwin's eval loop sets it with set_instruction "
                "before the episode starts")
        self.init_pose = C.end_poses(observation) if self.pose_mode == "relative" else None
        self.client.reset(prompt, self.embodiment)
        self.prompt = prompt
        self.episodes += 1

    def _request_chunk(self, observation: Mapping[str, Any]) -> None:
        obs = C.to_lbva_observation(observation, self.sizes, self.prompt or "")
        chunk = np.asarray(self.client.infer(obs)["actions"], dtype=np.float32)
        if chunk.ndim != 2 or chunk.shape[1] != C.ACTION_DIM or chunk.shape[0] < 1:
            raise C.RoboTwinFormatError(f"the server returned actions of shape {chunk.shape}; expected (T, {C.ACTION_DIM})")
        if not np.all(np.isfinite(chunk)):
            raise C.RoboTwinFormatError("the server returned non-finite actions")
        self.queue.extend(chunk)
        self._chunk_len = len(chunk)
        self._executed, self._keyframes = [], []
        self.chunks += 1

    def _send_feedback(self) -> None:
        if not self.feedback or len(self._executed) != self._chunk_len or not self._keyframes:
            return
        frames = {key: np.stack([k[key] for k in self._keyframes]) for key in self.sizes}  # (k, h, w, 3)
        self.client.feedback(np.stack(self._executed).astype(np.float32), frames)

    def close(self) -> None:
        self.client.close()
