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
    (line,) = model.mfu_lines(r)
    assert line.startswith(f"train_step_mfu[stand-in: 2 layers of width {arch.dim}, {L} tokens]: ")
    goal = model.goal_lines({"chunk_vs_lerobot": {"16": {"outputs_equal": False}},
                             "kv_cache_vs_recompute": {"32": {"ratio": 0.01}}, "train_step_mfu": r})[2]
    assert goal.endswith("not measured on `small` (--quick)")
