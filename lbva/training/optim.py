"""AdamW with decoupled weight decay on matrices only, and warm-up → cosine / constant learning rate."""

from __future__ import annotations

import math

import torch


def param_groups(model: torch.nn.Module, weight_decay: float, decay_params: str = "matrices") -> list[dict]:
    """``matrices``: matrices (ndim ≥ 2) decay; biases, norms, embeddings' 1-D tables and scale-shift vectors do not.
    ``all``: every parameter decays (the released training code)."""
    if decay_params not in ("matrices", "all"):
        raise ValueError(f"trainer.weight_decay_params={decay_params!r}: allowed 'matrices', 'all'")
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 or decay_params == "all" else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(step: int, warmup_steps: int, max_steps: int, schedule: str, min_lr_ratio: float = 0.0,
              warmup_start: str = "one_step") -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based); ``warmup_start="zero"`` starts the warm-up at
    lr 0 (the released training code's ``step / warmup``)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + (warmup_start != "zero")) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"unknown lr schedule {schedule!r}; allowed: cosine, constant")
    span = max(max_steps - warmup_steps, 1)
    t = min(max(step - warmup_steps, 0) / span, 1.0)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def build_optimizer(model: torch.nn.Module, tcfg) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    if len(tcfg.betas) != 2:
        raise ValueError(f"trainer.betas must hold two numbers, got {tcfg.betas}")
    opt = torch.optim.AdamW(param_groups(model, tcfg.weight_decay, tcfg.weight_decay_params), lr=tcfg.lr,
                            betas=tuple(tcfg.betas))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, tcfg.warmup_steps, tcfg.max_steps, tcfg.schedule, tcfg.min_lr_ratio,
                                 tcfg.warmup_start))
    return opt, sched


def start_missing_state(optimizer: torch.optim.AdamW) -> None:
    """Give every parameter without AdamW state yet (no gradient has reached it: e.g. the shared layout's unused
    action text projection) the state AdamW would start it with — step 0, zero moments — so the numbers of later steps
    are unchanged. A sharded checkpoint needs it: loading expects a state for every parameter."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            if not optimizer.state[p]:
                optimizer.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p),
                                      "exp_avg_sq": torch.zeros_like(p)}
