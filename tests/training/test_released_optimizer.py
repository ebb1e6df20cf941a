"""The released post-training optimiser (trainer.weight_decay_params=all, warmup_start=zero and the values the
posttrain recipes set) against AdamW written out by hand."""

import pytest
import torch

from lbva.config import load_config
from lbva.config.trainer import TrainerConfig
from lbva.training.optim import build_optimizer, lr_factor


def _adamw_by_hand(params, grads, lrs, betas, eps, wd):
    """Decoupled weight decay on every parameter, then the bias-corrected Adam step, one list entry per step."""
    b1, b2 = betas
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    params = [p.clone() for p in params]
    for t, (lr, step_grads) in enumerate(zip(lrs, grads), start=1):
        for i, (p, g) in enumerate(zip(params, step_grads)):
            p.mul_(1 - lr * wd)
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1 ** t), v[i] / (1 - b2 ** t)
            p.sub_(lr * m_hat / (v_hat.sqrt() + eps))
    return params


def test_released_post_training_optimiser_by_hand():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    start = [p.detach().clone() for p in model.parameters()]
    cfg = TrainerConfig(lr=1e-2, betas=[0.9, 0.95], weight_decay=0.1, weight_decay_params="all", warmup_steps=3,
                        warmup_start="zero", schedule="constant", max_steps=6)
    opt, sched = build_optimizer(model, cfg)
    assert [len(g["params"]) for g in opt.param_groups] == [4, 0]  # every parameter decays, norms and biases too
    g = torch.Generator().manual_seed(1)
    grads, lrs = [], []
    for _ in range(6):
        step = [torch.randn(p.shape, generator=g) for p in model.parameters()]
        for p, gr in zip(model.parameters(), step):
            p.grad = gr.clone()
        grads.append(step)
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.0, 1e-2 / 3, 2e-2 / 3, 1e-2, 1e-2, 1e-2])  # step / warmup: the first step at 0
    want = _adamw_by_hand(start, grads, lrs, (0.9, 0.95), 1e-8, 0.1)
    for p, w in zip(model.parameters(), want):
        torch.testing.assert_close(p.detach(), w, rtol=1e-5, atol=1e-7)


def test_lbva_default_warmup_and_decay_differ_from_the_release():
    assert lr_factor(0, 10, 100, "constant") == pytest.approx(0.1)
    assert lr_factor(0, 10, 100, "constant", warmup_start="zero") == 0.0
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    opt, _ = build_optimizer(model, TrainerConfig(weight_decay=0.1))
    assert [len(g["params"]) for g in opt.param_groups] == [1, 3]


@pytest.mark.parametrize("recipe", ["posttrain/robotwin", "posttrain/libero"])
def test_posttrain_recipes_use_the_released_optimiser(recipe):
    t = load_config(recipe).trainer
    assert (t.lr, t.betas, t.weight_decay, t.weight_decay_params, t.warmup_steps, t.warmup_start, t.schedule,
            t.grad_clip) == (1e-5, [0.9, 0.95], 0.1, "all", 10, "zero", "constant", 2.0)
