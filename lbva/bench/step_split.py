"""Where a training step's time goes: one profiled step split into matrix multiplies, attention kernels and the
rest, each beside the FLOPs it did.

``train_step_mfu`` says how far a step is from the matmul peak; this says why. The matmuls (``aten::mm``/``addmm``/
``bmm`` and their batched forms) and the attention kernels (every ``scaled_dot_product*`` op, the fused CPU
flash kernel and its backward included) are timed by their own self time in ``torch.profiler``; the rest is the
profiled step's wall time minus those two: normalisation, modulation, activations, copies, the compiled fused
kernels, and the Python, dispatch and autograd between them (the profiler's own overhead lands there too, so the
rest is an upper bound). With the FLOPs of each part, a part's time gives its fraction of the peak, and the two
together give the ceiling: the MFU the step would reach if the rest took no time at all.

On a CUDA device the kernels' device time is read instead of the CPU time of their launches.
"""

from __future__ import annotations

import os
import time
import warnings

MATMUL_OPS = ("mm", "addmm", "bmm", "baddbmm", "addbmm")  # as profiler events "aten::mm", as counted ops "aten.mm"


def is_attention(name: str) -> bool:
    """Whether a profiler event (or a FlopCounterMode op) is an attention kernel."""
    return "scaled_dot_product" in name or "flash_attn" in name or "flex_attention" in name


def flop_split(flop_counter) -> tuple[int, int]:
    """(matmul FLOPs, attention FLOPs) that a finished ``FlopCounterMode`` counted, by op; an attention kernel it has
    no formula for counts 0 here (the caller adds it by hand)."""
    matmul = attention = 0
    for op, flops in flop_counter.get_flop_counts().get("Global", {}).items():
        name = str(op)
        if is_attention(name):
            attention += flops
        elif name.removeprefix("aten.") in MATMUL_OPS:
            matmul += flops
    return matmul, attention


def profile_split(step, matmul_flops: float, attention_flops: float, peak: float, sync=lambda: None,
                  device: str = "cpu") -> dict:
    """Run ``step`` once under ``torch.profiler`` and split its time; ``peak`` in FLOP/s.

    Returns the profiled step's wall time and each part's seconds and share of it, each part's fraction of the peak
    (None for a part that did not run), and ``ceiling_mfu``."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    # the profiler's tracing library logs an "ERROR" line on a machine without a GPU, read when it first starts
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    sync()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Profiler clears events.*")
        with profile(activities=activities) as prof:
            t0 = time.perf_counter()
            step()
            sync()
            total = time.perf_counter() - t0
    matmul_us = attention_us = 0.0
    for e in prof.key_averages():
        own = e.self_device_time_total if cuda else e.self_cpu_time_total
        if e.key.startswith("aten::") and e.key[len("aten::"):] in MATMUL_OPS:
            matmul_us += own
        elif is_attention(e.key):
            attention_us += own
    matmul_s, attention_s = matmul_us / 1e6, attention_us / 1e6
    other_s = max(total - matmul_s - attention_s, 0.0)

    def of_peak(flops, seconds):
        return flops / seconds / peak if seconds > 0 and flops > 0 else None

    busy = matmul_s + attention_s
    return {"profiled_step_s": total, "matmul_s": matmul_s, "attention_s": attention_s, "other_s": other_s,
            "matmul_share": matmul_s / total, "attention_share": attention_s / total, "other_share": other_s / total,
            "matmul_of_peak": of_peak(matmul_flops, matmul_s), "attention_of_peak": of_peak(attention_flops, attention_s),
            "ceiling_mfu": of_peak(matmul_flops + attention_flops, busy)}


def split_line(label: str, s: dict) -> str:
    """One printed line: each part's share of the step and its fraction of the peak, and the ceiling."""
    def part(name, share, of_peak, extra=""):
        at = "" if of_peak is None else f" at {100 * of_peak:.0f}% of the peak{extra}"
        return f"{name} {100 * share:.0f}%{at}"

    ceiling = "" if s["ceiling_mfu"] is None else f"; were the rest free, the step would reach {100 * s['ceiling_mfu']:.0f}%"
    return (f"train_step_mfu[{label}] time split of one profiled step ({s['profiled_step_s'] * 1e3:.0f} ms): "
            f"{part('matmuls', s['matmul_share'], s['matmul_of_peak'])}, "
            f"{part('attention', s['attention_share'], s['attention_of_peak'], ', counted dense')}, "
            f"the rest {100 * s['other_share']:.0f}% (norms, modulation, GELU, copies, fused kernels, Python and "
            f"autograd){ceiling}")
