"""What the rollout loop, the server and the real-arm loop drive: the ``PolicyLike`` protocol (one definition, in
the bottom layer, so that serving and eval below and above each other both name it).

A policy owns one episode's state: ``reset(prompt)`` starts a session, ``select_action(obs)`` returns one
native action (a LeRobot-style queue over ``predict_action_chunk``), ``observe`` feeds executed actions and
fresh frames back (the KV cache of ``lbva.inference.Policy``; a no-op for stateless policies).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class PolicyLike(Protocol):
    def reset(self, prompt: str) -> None: ...

    def select_action(self, observation: dict) -> np.ndarray: ...

    def predict_action_chunk(self, observation: dict) -> np.ndarray: ...

    def observe(self, frames: dict, executed_actions: np.ndarray) -> None: ...
