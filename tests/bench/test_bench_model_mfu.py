"""`lbva bench model`'s train_step_mfu key: which model it times, how it counts, what it prints (no timing is
asserted)."""

import torch

from lbva.bench import model
from lbva.config.model import SIZES


def test_the_full_bench_times_the_small_preset_on_a_1088_token_sequence():
    arch, size, (frames, side, actions) = model._mfu_model(quick=False)
    assert arch == SIZES["small"] and size == "small"
    # clean + noisy copies of 8 frames of (16 / 2)² video tokens and 4 action tokens each
    assert 2 * (frames * (side // 2) ** 2 + frames * actions) == 1088


def test_quick_run_counts_matmul_and_dense_attention_flops_and_says_it_is_not_small():
    r = model.train_step_mfu(torch.device("cpu"), quick=True, reps=1, sync=lambda: None)
    arch = model._stand_in_arch(True)
    L = 2 * (4 * 4 * 4 + 4 * 4)  # 4 frames of 8×8 latents (16 tokens each) and 4 actions, two copies
    assert r["tokens"] == L and r["size"] == "stand-in"
    if r["attention_flops_added"]:  # FlopCounterMode did not see the fused CPU attention: counted by hand
        assert r["attention_flops_added"] == 3 * 4 * L * L * arch.dim * arch.num_layers \
            + 3 * 4 * L * 16 * arch.dim * arch.num_layers
    # at least the block's linear layers: 2·L·(4 self-attention + 2 cross-attention projections + 2 FFN) fwd, ×3
    linear = 2 * L * (6 * arch.dim * arch.dim + 2 * arch.dim * arch.ffn_dim) * arch.num_layers * 3
    assert r["step_flops"] >= linear
    assert 0 < r["mfu"] == r["achieved_flops"] / r["peak_matmul_flops"]
    line, split = model.mfu_lines(r)
    assert line.startswith(f"train_step_mfu[stand-in: 2 layers of width {arch.dim}, {L} tokens]: ")
    # the profiled step found both the linear layers' matmuls and the masked attention kernel
    assert r["split"]["matmul_s"] > 0 and r["split"]["attention_s"] > 0
    assert split.startswith(f"train_step_mfu[stand-in: 2 layers of width {arch.dim}, eager] time split")
    goal = model.goal_lines({"chunk_vs_lerobot": {"16": {"outputs_equal": False}},
                             "kv_cache_vs_recompute": {"32": {"ratio": 0.01}}, "train_step_mfu": r})[2]
    assert goal.endswith("not measured on `small` (--quick)")


def test_goal_line_gives_eager_and_compiled_verdicts_on_small():
    base = {"chunk_vs_lerobot": {"16": {"outputs_equal": False}}, "kv_cache_vs_recompute": {"32": {"ratio": 0.01}}}
    m = {"size": "small", "mfu": 0.55, "compiled": {"mfu": 0.63}}
    goal = model.goal_lines({**base, "train_step_mfu": m})[2]
    assert goal.endswith("eager (lbva's default) measured 55.0%: not met; with model.compile measured 63.0%: met")
    m = {"size": "small", "mfu": 0.61}
    assert model.goal_lines({**base, "train_step_mfu": m})[2].endswith("measured 61.0%: met")


def test_mfu_lines_print_the_compiled_step_beside_the_eager_one():
    r = {"attention_flops_added": 1.0, "step_flops": 3.0, "size": "small", "tokens": 1088, "mfu": 0.5,
         "mfu_min": 0.45, "peak_matmul_flops": 2e11, "step_s": 0.8,
         "compiled": {"mfu": 0.6, "mfu_min": 0.55, "step_s": 0.66, "first_call_s": 40.0, "loss_difference": 1e-6,
                      "vs_eager": 0.83}}
    eager, compiled = model.mfu_lines(r)
    assert "50.0% (45.0% from minima)" in eager and "33% of its FLOPs" in eager
    assert compiled.startswith("train_step_mfu[`small`, model.compile]: 60.0% (55.0% from minima)")
    assert "660 ms a step, 0.83× the eager step" in compiled and "1.0e-06" in compiled
