"""Evaluation: environments, the rollout loop, metrics, reports, baselines, safety, data collection.

* :mod:`lbva.eval.env` — the ``RobotEnv`` protocol simulators implement (plugins register them).
* :mod:`lbva.policy_like` — the ``PolicyLike`` protocol eval and serving drive (in the bottom layer).
* :mod:`lbva.eval.rollout` — run a policy for seeded episodes (optionally in worker processes).
* :mod:`lbva.eval.metrics` — ``SuccessRate``, ``ProgressScore``, per-task aggregation (torchmetrics; no simulator).
* :mod:`lbva.eval.report` — markdown table, plots, episode videos, TensorBoard scalars.
* :mod:`lbva.eval.baselines` — zero, random and scripted policies.
* :mod:`lbva.eval.safety` — ``SafetyFilter``: clamps, rate limits and replaces non-finite commands.
* :mod:`lbva.eval.collect` — record scripted-expert demonstrations as a LeRobot dataset.

Submodules are imported on demand; this package imports nothing heavy.
"""
