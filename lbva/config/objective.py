"""Objective section: flow-matching schedule, loss weights and reductions, the training mask, augmentation,
text dropout.

Several fields name the released LingBot-VA training code's choice beside lbva's own (README, "Fidelity to the
released code"): ``loss_weighting=bsmntw``, ``noisy_history=released``, ``action_loss=per_frame``,
``window=released`` with ``window_sizes=[4, 64]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lbva.config.base import bounded, choice, documented


@dataclass
class ObjectiveConfig:
    video_shift: float = bounded(5.0, 0.0, None, doc="σ shift for video tokens")
    action_shift: float = bounded(1.0, 0.0, None, doc="σ shift for action tokens")
    dyn_weight: float = bounded(1.0, 0.0, None, doc="weight of L_dyn (video of inverse-dynamics sequences)")
    inv_weight: float = bounded(1.0, 0.0, None, doc="weight of L_inv (actions of every sequence)")
    fdm_prob: float = bounded(0.0, 0.0, 1.0, doc="share of sequences trained with the forward-dynamics mask (video "
                                                 "chunk c also sees the clean actions of chunk c); their video "
                                                 "loss is L_fdm, the others' L_dyn")
    fdm_weight: float | None = bounded(None, 0.0, None, doc="weight of L_fdm (None: dyn_weight); needs fdm_prob > 0")
    noisy_history_prob: float = bounded(0.5, 0.0, 1.0, doc="probability of re-noising the clean video history")
    noisy_history: str = choice("uniform", "uniform", "released",
                                doc="uniform: per sequence, σ ~ U(0, noisy_history_max_sigma) per frame; released: "
                                    "per batch, σ per frame from the lower half of the shifted video grid "
                                    "(up to shift(0.5): 0.83 at shift 5)")
    noisy_history_max_sigma: float = bounded(0.5, 0.0, 1.0, doc="upper σ of the uniform noisy history")
    text_dropout: float = bounded(0.1, 0.0, 1.0, doc="probability of replacing the text with the null embedding (CFG)")
    loss_weighting: str = choice("none", "none", "bsmntw", doc="timestep loss weighting (bsmntw = the release's)")
    action_loss: str = choice("per_token", "per_token", "per_frame",
                              doc="per_token: mean over the batch's valid action entries; per_frame: mean over each "
                                  "(sequence, frame)'s valid entries, then over all frames (the release's)")
    window: str = choice("none", "none", "released", "chunks",
                         doc="attention window in training (see inference.window); its size is drawn per sequence")
    window_sizes: list[int] = documented(factory=lambda: [4, 64], doc="[lo, hi]: training window sizes drawn "
                                                                        "uniformly, both ends included")
    num_train_timesteps: int = bounded(1000, 1, None, doc="points on the training σ grid")
