"""lbva.bench.step_split: which profiled ops count as matmul or attention time, which FLOPs are theirs, and what the
line says (no timing is asserted)."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from lbva.bench import model
from lbva.bench.step_split import flop_split, profile_split, split_line

PEAK = 1e11


def test_a_matmul_only_step_is_all_matmul_time_and_its_fraction_of_peak_is_its_flops_over_that_time():
    a, b = torch.randn(192, 160), torch.randn(160, 224)
    flops = 2 * 192 * 160 * 224  # by hand
    s = profile_split(lambda: a @ b, flops, 0, PEAK)
    assert s["matmul_s"] > 0 and s["attention_s"] == 0 and s["attention_of_peak"] is None
    assert s["matmul_s"] <= s["profiled_step_s"]
    assert s["matmul_of_peak"] == pytest.approx(flops / s["matmul_s"] / PEAK)
    assert s["ceiling_mfu"] == pytest.approx(s["matmul_of_peak"])
    assert s["matmul_share"] + s["attention_share"] + s["other_share"] == pytest.approx(1.0)


def test_a_masked_cpu_attention_counts_as_attention_not_matmul_and_elementwise_work_as_the_rest():
    q = torch.randn(1, 2, 96, 16)
    mask = torch.rand(96, 96) < 0.5
    mask |= torch.eye(96, dtype=torch.bool)

    def attention():
        F.scaled_dot_product_attention(q, q, q, attn_mask=mask)

    s = profile_split(attention, 0, 4 * 96 * 96 * 16 * 2, PEAK)
    assert s["attention_s"] > 0 and s["matmul_s"] == 0 and s["matmul_of_peak"] is None

    x = torch.randn(256, 256)
    rest = profile_split(lambda: (x * 2).sin().exp(), 0, 0, PEAK)
    assert rest["matmul_s"] == rest["attention_s"] == 0 and rest["other_share"] == pytest.approx(1.0)
    assert rest["ceiling_mfu"] is None


def test_flop_split_gives_linear_and_bmm_flops_to_matmuls_sdpa_flops_to_attention_and_convolutions_to_neither():
    lin = torch.nn.Linear(48, 80)
    x = torch.randn(3, 40, 48, requires_grad=True)
    q = torch.randn(1, 2, 32, 8)
    with FlopCounterMode(display=False) as fc:
        lin(x).sum().backward()
        torch.bmm(torch.randn(4, 6, 10), torch.randn(4, 10, 12))
        F.scaled_dot_product_attention(q, q, q)
        F.conv2d(torch.randn(1, 3, 16, 16), torch.randn(8, 3, 3, 3))  # its time is not a matmul's either
    matmul, attention = flop_split(fc)
    # forward, input grad and weight grad of the linear layer, and the batched product, by hand
    assert matmul == 3 * 2 * 120 * 48 * 80 + 2 * 4 * 6 * 10 * 12
    # FlopCounterMode has a formula for the CPU's fused kernel or it has none: either way none of it is a matmul
    assert attention in (0, 4 * 32 * 32 * 8 * 2)


def test_the_mfu_lines_print_each_steps_split():
    split = {"profiled_step_s": 0.7, "matmul_share": 0.41, "attention_share": 0.3, "other_share": 0.29,
             "matmul_of_peak": 0.85, "attention_of_peak": 0.57, "ceiling_mfu": 0.71}
    assert split_line("x", split) == (
        "train_step_mfu[x] time split of one profiled step (700 ms): matmuls 41% at 85% of the peak, attention 30% at "
        "57% of the peak, counted dense, the rest 29% (norms, modulation, GELU, copies, fused kernels, Python and "
        "autograd); were the rest free, the step would reach 71%")
    r = {"attention_flops_added": 1.0, "step_flops": 3.0, "size": "small", "tokens": 1088, "mfu": 0.5,
         "mfu_min": 0.45, "peak_matmul_flops": 2e11, "step_s": 0.8, "split": split,
         "compiled": {"mfu": 0.6, "mfu_min": 0.55, "step_s": 0.66, "first_call_s": 40.0, "loss_difference": 1e-6,
                      "vs_eager": 0.83, "split": {**split, "ceiling_mfu": 0.8}}}
    lines = model.mfu_lines(r)
    assert len(lines) == 4
    assert lines[1].startswith("train_step_mfu[`small`, eager] time split") and lines[1].endswith("reach 71%")
    assert lines[3].startswith("train_step_mfu[`small`, model.compile] time split") and lines[3].endswith("reach 80%")
