"""trainer.precision=bf16-true: a bf16 model trains on a bf16 batch (σ is drawn in float32 and used to leak it)."""

import torch

from lbva.config import load_config
from lbva.models import build_model
from lbva.objectives import FlowMatchingObjective
from lbva.training.data import SyntheticBatches


def test_a_bf16_model_trains_on_a_bf16_batch_with_bf16_gradients():
    cfg = load_config("demo/tiny", ["objective.fdm_prob=0.5"])
    torch.manual_seed(0)
    model = build_model(cfg.model).to(torch.bfloat16)
    ds = SyntheticBatches(1, 2, 16, 4, 4, 4, 2, 4, 64, chunk_sizes=(2,), used_mask=torch.arange(30) < 6)
    batch = {k: (v.to(torch.bfloat16) if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in ds[0].items()}
    out = FlowMatchingObjective(cfg.objective)(model, batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.bfloat16 for g in grads)
    assert any(bool(g.abs().sum() > 0) for g in grads)
