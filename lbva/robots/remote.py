"""A policy served by ``lbva serve`` (or an openpi server), driven one action at a time: :class:`ServerPolicy`.

Axis legend: T actions in a chunk, A native action dim, N actions per latent frame, k keyframes, h/w pixels.

``select_action`` asks the server for a chunk (T, A) when its queue is empty and hands out one action per
call. Against an lbva server it also feeds back what really happened, as the in-process
``lbva.inference.Policy`` does: the observation before every N-th executed action is a keyframe, and when a
chunk is used up its keyframes (k, h, w, 3) and the actions actually sent (T, A) go back in a ``feedback``
message before the next ``infer``. openpi servers get plain ``infer`` calls with the prompt in the
observation. Needs numpy, msgpack and websockets only (no torch).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from lbva.errors import UserError

logger = logging.getLogger(__name__)


class ServerPolicyError(UserError, ValueError):
    """A policy server that cannot drive this robot (another embodiment), or cannot be reached."""


class ServerPolicy:
    """``PolicyLike`` over a websocket session. ``client``: an :class:`lbva.serving.client.LbvaClient` (or any
    object with ``metadata``, ``infer``, ``reset``, ``feedback``, ``close``). ``feedback``: send executed actions
    and keyframes back (default: when the server speaks lbva's protocol)."""

    def __init__(self, client: Any, spec: Any, feedback: bool | None = None):
        self.client = client
        self.spec = spec
        meta = dict(getattr(client, "metadata", {}) or {})
        self.lbva_server = meta.get("protocol") == "lbva-ws"
        served = meta.get("embodiment")
        if self.lbva_server and served not in (None, spec.name):
            raise ServerPolicyError(
                f"the server at {getattr(client, 'uri', '?')} serves embodiment {served!r}, but this rollout drives "
                f"{spec.name!r}; start the server with --embodiment {spec.name} or pass --embodiment {served}"
            )
        self.feedback = self.lbva_server if feedback is None else bool(feedback)
        # one keyframe after every this many actions: what the server asks for (4 frames per latent frame for a
        # Wan2.2-VAE policy), else one per latent frame
        self.frame_every = int((meta.get("feedback") or {}).get("frame_every_actions") or spec.actions_per_frame)
        self.keys = [c.key for c in spec.cameras] + [spec.state_key]
        self.prompt: str | None = None
        self._reset_queue()

    @classmethod
    def connect(cls, url: str, spec: Any, timeout: float | None = 60.0) -> ServerPolicy:
        """Connect to ``ws://host:port`` (a bare ``host:port`` works too); ``timeout``: seconds to wait for a reply.
        A server that cannot be reached is a :class:`ServerPolicyError` saying so."""
        from websockets.exceptions import InvalidURI, WebSocketException

        from lbva.serving.client import LbvaClient

        try:
            client = LbvaClient(url, port=None, timeout=timeout)
        except (InvalidURI, ValueError) as e:
            raise ServerPolicyError(f"--server {url!r} is not a websocket address ({e}); use ws://HOST:PORT") from None
        except (OSError, TimeoutError, WebSocketException) as e:
            raise ServerPolicyError(
                f"cannot reach the policy server at {url} ({type(e).__name__}: {e}); start `lbva serve` there, or "
                "check the host, the port and the firewall"
            ) from None
        return cls(client, spec)

    def _reset_queue(self) -> None:
        self._queue: list[np.ndarray] = []
        self._executed: list[np.ndarray] = []
        self._keyframes: list[dict[str, np.ndarray]] = []
        self._started = False
        self.chunks = 0

    def reset(self, prompt: str) -> None:
        self.prompt = prompt
        self._reset_queue()
        if self.lbva_server:
            self.client.reset(prompt, embodiment=self.spec.name)

    def _payload(self, observation: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: np.asarray(observation[k]) for k in self.keys if k in observation}
        if self.prompt is not None:
            out["prompt"] = self.prompt
        return out

    def _infer(self, observation: Mapping[str, Any]) -> None:
        actions = np.asarray(self.client.infer(self._payload(observation))["actions"], dtype=np.float32)
        if actions.ndim == 1:
            actions = actions[None]
        self._queue = list(actions)  # (T, A) -> T actions
        self.chunks += 1

    def select_action(self, observation: Mapping[str, Any]) -> np.ndarray:
        if not self._started:
            self._started = True
            self._infer(observation)
        else:
            if self.feedback and len(self._executed) % self.frame_every == 0:
                self._keyframes.append({k: np.asarray(observation[k]) for k in self.keys})
            if not self._queue:
                self._send_feedback()
                self._infer(observation)
        if not self._queue:
            raise RuntimeError(f"the server at {getattr(self.client, 'uri', '?')} returned an empty action chunk")
        action = self._queue.pop(0)
        self._executed.append(action)
        return action

    def _send_feedback(self) -> None:
        executed, keyframes = self._executed, self._keyframes
        self._executed, self._keyframes = [], []  # a refused feedback is dropped, not sent again with the next chunk
        if self.feedback and executed and keyframes:
            frames = {k: np.stack([f[k] for f in keyframes]) for k in self.keys}  # (k, h, w, 3) / (k, S)
            self.client.feedback(np.stack(executed).astype(np.float32), frames)  # (T, A)

    def report_executed(self, action: Any) -> None:
        """The action the robot really received for the last ``select_action`` (after the safety filter)."""
        if self._executed:
            self._executed[-1] = np.asarray(action, dtype=np.float32).reshape(-1)

    def observe(self, frames: Any, executed_actions: Any) -> None:  # PolicyLike; feedback is automatic here
        pass

    def predict_action_chunk(self, observation: Mapping[str, Any]) -> np.ndarray:
        return np.asarray(self.client.infer(self._payload(observation))["actions"], dtype=np.float32)

    def close(self) -> None:
        self.client.close()
