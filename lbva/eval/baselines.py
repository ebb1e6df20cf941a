"""Reference policies for evaluation: what a trained policy must beat, and what a solved task looks like.

* :class:`ZeroPolicy` — always the neutral command ``clip(0, low, high)`` (for delta control: stand still).
* :class:`RandomPolicy` — uniform in ``[action_low, action_high]``, seeded per episode.
* :class:`ScriptedPolicy` — the simulator plugin's scripted expert (``factory.expert(task)``), optionally with
  Gaussian action noise; see :func:`find_expert`.

All follow ``lbva.policy_like.PolicyLike``; ``seed(s)`` (called by the rollout loop before each episode)
makes the random ones reproducible.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np


class _Stateless:
    def reset(self, prompt: str = "") -> None:
        pass

    def observe(self, frames: dict, executed_actions: np.ndarray) -> None:
        pass

    def seed(self, seed: int) -> None:
        pass

    def predict_action_chunk(self, observation: dict) -> np.ndarray:
        return self.select_action(observation)[None]  # (1, A)

    def select_action(self, observation: dict) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError


class ZeroPolicy(_Stateless):
    def __init__(self, spec: Any):
        self.action = np.clip(np.zeros(int(spec.native_action_dim), np.float32), spec.action_low, spec.action_high)

    def select_action(self, observation: dict) -> np.ndarray:
        return self.action.copy()


class RandomPolicy(_Stateless):
    def __init__(self, spec: Any, seed: int = 0):
        self.low = np.asarray(spec.action_low, np.float32)
        self.high = np.asarray(spec.action_high, np.float32)
        self.rng = np.random.default_rng(seed)

    def seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def select_action(self, observation: dict) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)


def find_expert(factory: Callable) -> Callable[[str], Any]:
    """The scripted-expert factory a simulator plugin declares for its env ``factory``.

    A plugin declares it as an attribute of the env factory (``make_env.expert = expert``) or as a function
    ``expert(task)`` in the factory's module. Raises ValueError when there is none.
    """
    fn = getattr(factory, "expert", None)
    if fn is None:
        import sys

        fn = getattr(sys.modules.get(getattr(factory, "__module__", ""), None), "expert", None)
    if not callable(fn):
        raise ValueError(
            f"the simulator factory {getattr(factory, '__qualname__', factory)!r} declares no scripted expert; a plugin "
            "provides one as `factory.expert = expert` (expert(task) -> a policy), see embodiments/README.md"
        )
    return fn


class ScriptedPolicy(_Stateless):
    """The plugin's scripted expert for ``task``, with optional noise ``noise_std`` × (high − low) / 2."""

    def __init__(self, expert: Any, spec: Any, noise_std: float = 0.0, seed: int = 0):
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0; got {noise_std}")
        self.expert = expert
        self.low = np.asarray(spec.action_low, np.float32)
        self.high = np.asarray(spec.action_high, np.float32)
        self.noise_std = float(noise_std)
        self.rng = np.random.default_rng(seed)

    def seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self, prompt: str = "") -> None:
        self.expert.reset(prompt)

    def select_action(self, observation: dict) -> np.ndarray:
        a = np.asarray(self.expert.select_action(observation), np.float32)
        if self.noise_std > 0:
            a = a + self.rng.normal(size=a.shape).astype(np.float32) * self.noise_std * (self.high - self.low) / 2
        return np.clip(a, self.low, self.high).astype(np.float32)
