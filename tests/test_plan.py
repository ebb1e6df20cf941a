"""``lbva plan``: the traced per-device peak of a training step against the peak measured on the CPU.

The measurement is independent of the planner: a real tiny model runs the same objective forward and backward on real
tensors while ``torch.profiler`` records every allocation and free of the CPU allocator; the peak of that running sum,
plus the parameters and the AdamW state a real optimiser step creates, is the measured per-device peak.
"""

from __future__ import annotations

import json

import pytest
import torch

from lbva.cli import main
from lbva.config import load_config
from lbva.models import build_model
from lbva.objectives import FlowMatchingObjective
from lbva.training.optim import build_optimizer
from lbva.training.plan import TokenShape, plan_inference, plan_training

TOLERANCE = 0.15  # the planner's total may differ from the measured peak by this share


def tiny(checkpointing: bool, *overrides: str):
    return load_config("demo/tiny", [f"model.activation_checkpointing={str(checkpointing).lower()}", *overrides])


def shape(frames: int) -> TokenShape:
    return TokenShape(batch=2, frames=frames, height=16, width=16, actions_per_frame=4, chunk_frames=2)


def allocator_peak(run) -> int:
    """The most bytes the CPU allocator held at once during ``run()``, above what it held before."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, acc_events=True) as prof:
        run()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def measured_step(cfg, s: TokenShape) -> int:
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    objective = FlowMatchingObjective(cfg.objective)
    arch = model.arch

    def step():
        B, F, N = s.batch, s.frames, s.actions_per_frame
        batch = {"video": torch.randn(B, arch.in_channels, F, s.height, s.width),
                 "actions": torch.randn(B, F, N, arch.action_dim),
                 "action_mask": torch.ones(B, F, N, arch.action_dim, dtype=torch.bool),
                 "text": torch.randn(B, cfg.data.embedded_text_max_length, arch.text_dim),
                 "chunk_size": s.chunk_frames}
        objective(model, batch).loss.backward()

    transient = allocator_peak(step)
    opt, _ = build_optimizer(model, cfg.trainer)
    opt.step()
    state = sum(t.nbytes for st in opt.state.values() for k, t in st.items() if k != "step")
    params = sum(p.nbytes for p in model.parameters())
    return params + state + transient


@pytest.fixture(scope="module")
def measured():
    return {(frames, ckpt): measured_step(tiny(ckpt), shape(frames)) for frames in (4, 8) for ckpt in (False, True)}


@pytest.mark.parametrize("frames", [4, 8])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_planned_training_peak_matches_the_measured_one(frames, checkpointing, measured):
    plan = plan_training(tiny(checkpointing), shape(frames))
    real = measured[(frames, checkpointing)]
    assert abs(plan.total / real - 1) < TOLERANCE, (plan, real)


def test_the_comparison_has_teeth(measured):
    """A planner that ignored activations, or activation checkpointing, would miss by more than the tolerance."""
    for frames in (4, 8):
        plan = plan_training(tiny(False), shape(frames))
        assert plan.parameters + plan.optimizer_state + plan.gradients < (1 - 2 * TOLERANCE) * measured[(frames, False)]
        assert measured[(frames, True)] < (1 - 2 * TOLERANCE) * measured[(frames, False)]
    assert measured[(8, False)] > 1.5 * measured[(4, False)]  # the token count matters


def test_fsdp_shards_parameters_gradients_and_optimizer_state():
    one = plan_training(tiny(False), shape(4))
    eight = plan_training(tiny(False, "trainer.devices=8", "trainer.strategy=fsdp"), shape(4))
    ddp = plan_training(tiny(False, "trainer.devices=8", "trainer.strategy=ddp"), shape(4))
    model = build_model(tiny(False).model)
    n = sum(p.numel() for p in model.parameters())
    layer = sum(p.numel() for p in model.blocks[0].parameters())
    assert one.parameters == 4 * n and one.optimizer_state == 8 * n and one.communication == 0
    assert eight.parameters == -(-4 * n // 8) and eight.optimizer_state == -(-8 * n // 8)
    assert eight.communication == 3 * 4 * layer  # two gathered layers and one layer's unsharded gradients
    assert ddp.parameters == one.parameters and ddp.communication == 4 * n  # ddp's gradient buckets
    assert eight.activations == pytest.approx(one.activations, rel=0.05)  # the same batch on every device


def measured_session(cfg, s: TokenShape) -> int:
    """Parameters, KV cache and text keys/values of a real session whose cache holds its whole window, plus the
    allocator's peak while one more chunk is queried and written (video, then actions)."""
    from lbva.models.attention import AttentionWindow

    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    arch, K, N = model.arch, s.chunk_frames, s.actions_per_frame
    window = AttentionWindow(cfg.inference.window, cfg.inference.window_size)
    video, actions = model.chunk_tokens(s.height, s.width, K, N)
    capacity = window.capacity_tokens(video, actions)
    cache = model.new_cache(capacity, window, rows=1, slack=model.query_slack(s.height, s.width, K, N))
    with torch.no_grad():
        tkv = model.text_context(torch.randn(1, cfg.data.embedded_text_max_length, arch.text_dim))
        held = capacity // (video + actions) - 1
        for c in range(held):
            model.stream(cache, tkv, "video", torch.randn(1, arch.in_channels, K, s.height, s.width),
                         torch.zeros(1, K), chunk=c, chunk_size=K, write=(c, "video", False))
            model.stream(cache, tkv, "actions", torch.randn(1, K, N, arch.action_dim), torch.zeros(1, K), chunk=c,
                         chunk_size=K, write=(c, "actions", False))

        def one_chunk():
            x = torch.randn(1, arch.in_channels, K, s.height, s.width)
            a = torch.randn(1, K, N, arch.action_dim)
            for modality, value in (("video", x), ("actions", a)):
                for write in (None, (held, modality, False)):
                    model.stream(cache, tkv, modality, value, torch.zeros(1, K), chunk=held, chunk_size=K, write=write)

        transient = allocator_peak(one_chunk)
    persistent = (sum(p.nbytes for p in model.parameters()) + sum(t.nbytes for t in cache._k + cache._v)
                  + sum(k.nbytes + v.nbytes for k, v in tkv))
    return persistent + transient


def test_planned_inference_peak_matches_the_measured_one():
    cfg = tiny(False, "inference.window_size=7")
    plan = plan_inference(cfg, shape(4))
    real = measured_session(cfg, shape(4))
    assert abs(plan.total / real - 1) < TOLERANCE, (plan, real)
    assert plan.kv_cache + plan.parameters < (1 - TOLERANCE) * real  # the call's own activations count


def test_kv_cache_is_sized_from_the_window_and_doubled_by_guidance():
    cfg = tiny(False, "inference.window_size=7", "inference.video_cfg=1.0", "inference.action_cfg=1.0")
    plan = plan_inference(cfg, shape(4))
    arch = build_model(cfg.model).arch
    video, actions = 8 * 8 * 2, 4 * 2  # one chunk of two 8x8-token frames and their actions
    assert plan.cache_tokens == (7 // 2 + 1) * (video + actions)
    assert plan.cache_slack == video  # one query: a chunk's video, the larger modality
    assert plan.kv_cache == arch.num_layers * 2 * (plan.cache_tokens + plan.cache_slack) * arch.dim * 4
    guided = plan_inference(tiny(False, "inference.window_size=7", "inference.video_cfg=5.0"), shape(4))
    assert guided.rows == 2 and guided.kv_cache == 2 * plan.kv_cache
    assert plan.activations > 0


def test_cli_prints_a_table_and_json(capsys):
    assert main(["plan", "demo/tiny", "--latent", "8x8", "--actions-per-frame", "4", "--chunk-frames", "2",
                 "--phase", "train", "trainer.devices=2", "trainer.strategy=fsdp"]) == 0
    out = capsys.readouterr().out
    assert "fsdp on 2 device(s)" in out and "activations" in out and "total" in out
    assert main(["plan", "demo/tiny", "--latent", "8x8", "--phase", "infer", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"inference"} and data["inference"]["kv_cache"] > 0
