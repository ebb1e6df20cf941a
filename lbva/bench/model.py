"""Model speed: our video stream vs diffusers' Wan, KV cache vs recompute, train-step MFU, compiled vs eager, lbva's
closed-loop chunk vs LeRobot's lingbot_va.

Every number is a ratio of two timings taken in the same run on the same machine:

* ``video_stream_vs_diffusers``: fwd+bwd time of lbva's video stream / diffusers ``WanTransformer3DModel`` at an
  identical small config with the same weights (< 1: we are faster).
* ``kv_cache_vs_recompute``: time of one action-chunk query through the KV cache / the same query recomputing
  the whole history in a full masked forward, for 4, 16, 32 history chunks of the paper's deployment size (K = 4
  latent frames of τ = 4 actions) and of 1 latent frame (keys ``"<n> 1-frame"``); the stand-in (4 layers, 2 with
  ``--quick``) in the Policy's :meth:`~lbva.models.LingBotVA.inference_layout`, outputs compared first; each timed
  repeat of the cached step is 8 back-to-back calls. The recompute is the training forward's layout (clean video and
  actions plus noisy actions of every chunk: 20 % more tokens than the history and the query alone).
* ``train_step_mfu``: achieved FLOP/s of a training fwd+bwd (FlopCounterMode's matmul FLOPs plus the attention
  FLOPs counted by hand, dense) / this machine's fp32 matmul peak, timed in interleaved repeats: the ``small`` preset
  on a 1,088-token training sequence, eager and with ``model.compile`` (the tiny stand-in, eager, with ``--quick``).
  Each also gets one profiled step split into matmuls, attention and the rest, each part's fraction of the peak
  and the MFU the step would reach were the rest free (:mod:`lbva.bench.step_split`).
* ``compiled_vs_eager``: forward time with ``model.compile=true`` / the same model and weights eager (``tiny`` with
  ``--quick``, else ``small``), after a first call that compiles (its time is reported too, not in the ratio).
* ``chunk_vs_lerobot``: lbva's closed-loop chunk (feed back the last chunk, imagine video, decode actions) / LeRobot's
  ``lingbot_va`` policy's on the same weights, settings, inputs and injected noise, for 4, 16, 32 history chunks
  (:mod:`lbva.bench.lerobot_chunk`; the ``tiny`` preset's transformer with ``--quick``, else ``small``'s). Every chunk's actions are compared first; where they differ beyond the stated
  tolerance the entry has the difference and no ratio.

The scale-out goals are printed after the ratios, each beside what this run measured.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

from lbva import strict_json
from lbva.bench.step_split import flop_split, profile_split, split_line

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="small shapes (1 to 3 minutes on 2 cores, by machine; the full bench takes about 5 to 6)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats per measurement, interleaved with its baseline's (default and least: 5; 21 for "
                        "the cache and closed-loop keys), after 2 untimed warm-up runs")


HISTORIES = (4, 16, 32)  # history chunks of the cache and closed-loop keys
COMPILED_HISTORIES = ("16",)  # closed-loop histories also timed with lbva's model.compile (the goal's)
MIN_REPEATS = 5  # timed repeats of every measurement, whatever --repeats or --quick ask for
# keys whose one repeat takes well under a second (a cached step, a closed-loop chunk) take more: on a 2-core VM a
# single chunk varies by ±20 %, and with 5 repeats two runs' medians differed by up to 15 %
FAST_REPEATS = 21
CACHED_CALLS = 8  # back-to-back cached steps per timed repeat of the cache key (one takes about 8 ms on 2 cores)


def _interleaved(fns, repeats: int, sync, warmup: int = 2, inners=None) -> list[tuple[float, float]]:
    """(median, minimum) time of each of ``fns`` over ``repeats`` (at least :data:`MIN_REPEATS`) rounds that run them
    in turn, after ``warmup`` untimed rounds, so that load from other processes hits all alike. ``inners``: per
    function, how many back-to-back calls one timed repeat makes (divided out; a call of a few milliseconds timed alone
    varies with every scheduler tick)."""
    inners = inners or [1] * len(fns)
    for _ in range(warmup):
        for fn in fns:
            fn()
    sync()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(max(repeats, MIN_REPEATS)):
        for fn, ts, n in zip(fns, times, inners):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            sync()
            ts.append((time.perf_counter() - t0) / n)
    return [(statistics.median(ts), min(ts)) for ts in times]


def _pair_stats(fa, fb, repeats: int, sync, warmup: int = 2, inner_a: int = 1, inner_b: int = 1) -> dict[str, float]:
    """:func:`_interleaved` of two functions, as the medians and minima :func:`_ratio_entry` reads."""
    (am, an), (bm, bn) = _interleaved([fa, fb], repeats, sync, warmup, [inner_a, inner_b])
    return {"a_median": am, "a_min": an, "b_median": bm, "b_min": bn, "repeats": max(repeats, MIN_REPEATS)}


def _ratio_entry(st: dict[str, float], a: str, b: str) -> dict[str, float]:
    """``a`` / ``b`` from the medians (``ratio``) and from the minima (``ratio_min``), with the times behind them."""
    return {"ratio": st["a_median"] / st["b_median"], "ratio_min": st["a_min"] / st["b_min"],
            f"{a}_s": st["a_median"], f"{b}_s": st["b_median"], f"{a}_min_s": st["a_min"], f"{b}_min_s": st["b_min"],
            "repeats": st["repeats"]}


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the system does not report them)."""
    import os

    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _stand_in_arch(quick: bool):
    """The model the cache and MFU keys time: tiny with ``--quick``, else 4 layers of width 256."""
    from lbva.config.model import ArchConfig

    if quick:
        return ArchConfig(num_layers=2, num_attention_heads=2, attention_head_dim=32, ffn_dim=256, in_channels=16,
                          text_dim=64, freq_dim=32)
    return ArchConfig(num_layers=4, num_attention_heads=4, attention_head_dim=64, ffn_dim=1024, in_channels=16,
                      text_dim=64, freq_dim=64)


def _text(dev):
    import torch

    return torch.randn(1, 16, 64, generator=torch.Generator().manual_seed(16)).to(dev)


def video_stream_vs_diffusers(dev, quick: bool, reps: int, sync) -> dict:
    """fwd+bwd of lbva's video stream / diffusers' WanTransformer3DModel, identical config and weights."""
    import torch
    from diffusers import WanTransformer3DModel

    from lbva.models.checkpoints import load_diffusers_wan

    layers, heads, hd, ffn = (2, 4, 64, 1024) if quick else (4, 4, 64, 1024)
    torch.manual_seed(0)
    ref = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=hd,
                                in_channels=16, out_channels=16, text_dim=64, freq_dim=64, ffn_dim=ffn,
                                num_layers=layers, rope_max_seq_len=256).to(dev)
    ours = load_diffusers_wan(ref.cpu()).to(dev)
    ref = ref.to(dev)
    F_, S = (2, 16) if quick else (4, 16)
    x = torch.randn(1, 16, F_, S, S, device=dev)
    text = _text(dev)
    sigma = torch.rand(1, F_, device=dev)
    t_tok = (sigma * 1000).repeat_interleave((S // 2) ** 2, dim=1)

    def ref_step():
        ref.zero_grad(set_to_none=True)
        ref(hidden_states=x, timestep=t_tok, encoder_hidden_states=text, return_dict=False)[0].square().mean().backward()

    def our_step():
        ours.zero_grad(set_to_none=True)
        ours(noisy_video=x, video_sigma=sigma, text=text, chunk_size=F_).video.square().mean().backward()

    return _ratio_entry(_pair_stats(our_step, ref_step, reps, sync), "lbva", "diffusers")


KV_CHUNK_FRAMES = (4, 1)  # latent frames per chunk the cache key times: the paper's deployment K = 4 (the goal's), then 1
KV_ACTIONS_PER_FRAME = 4  # the paper's τ = 4 actions per latent frame


def kv_key(hist: int, chunk_frames: int) -> str:
    """The ``kv_cache_vs_recompute`` entry of ``hist`` history chunks of ``chunk_frames`` latent frames: ``"32"`` for the
    paper's chunk (the goal's), ``"32 1-frame"`` for single-frame chunks."""
    return str(hist) if chunk_frames == KV_CHUNK_FRAMES[0] else f"{hist} {chunk_frames}-frame"


def kv_cache_vs_recompute(dev, quick: bool, reps: int, sync) -> dict:
    """{history chunks: one action query through the KV cache / the same query recomputing the whole history}, with
    chunks of the paper's deployment size (4 latent frames of 8×8 latents, 4 actions each: a 16-token query) and of
    1 frame (a 4-token query, where per-op overhead dominates the cached call); see :func:`kv_key`."""
    import torch

    from lbva.models.lingbot_va import LingBotVA

    m = LingBotVA(_stand_in_arch(quick)).to(dev).eval().inference_layout()  # as the Policy runs it
    text = _text(dev)
    N, h = KV_ACTIONS_PER_FRAME, 4
    kv = {}
    for K in KV_CHUNK_FRAMES:
        per_chunk = sum(m.chunk_tokens(2 * h, 2 * h, K, N))
        for hist in HISTORIES:
            Fh = hist * K
            g = torch.Generator().manual_seed(hist)
            video = torch.randn(1, 16, Fh + K, 2 * h, 2 * h, generator=g).to(dev)
            acts = torch.randn(1, Fh + K, N, 30, generator=g).to(dev)
            a_sig = torch.rand(1, Fh + K, generator=g).to(dev)
            zeros = torch.zeros(1, K, device=dev)
            with torch.no_grad():
                cache, tkv = m.new_cache((hist + 1) * per_chunk), m.text_context(text)
                for c in range(hist):
                    sl = slice(c * K, (c + 1) * K)
                    m.stream(cache, tkv, "video", video[:, :, sl], zeros, c, K, write=(c, "video", False))
                    m.stream(cache, tkv, "actions", acts[:, sl], zeros, c, K, write=(c, "actions", False))
                m.stream(cache, tkv, "video", video[:, :, Fh:], zeros, hist, K, write=(hist, "video", False))

                def cached():
                    return m.stream(cache, tkv, "actions", acts[:, Fh:], a_sig[:, Fh:], hist, K)

                # the whole history again, as the training forward lays it out: clean video and actions of every
                # chunk plus a noisy copy of every chunk's actions; only the last chunk's velocity is read
                def recompute():
                    return m(noisy_actions=acts, action_sigma=a_sig, text=text, clean_video=video, clean_actions=acts,
                             chunk_size=K).actions

                difference = float((cached() - recompute()[:, Fh:]).abs().max())
                entry = _ratio_entry(_pair_stats(cached, recompute, max(reps, FAST_REPEATS), sync,
                                                 inner_a=CACHED_CALLS), "cache", "recompute")
            kv[kv_key(hist, K)] = {**entry, "history_chunks": hist, "chunk_frames": K, "query_tokens": K * N,
                                   "recompute_tokens": (hist + 1) * (per_chunk + K * N),
                                   "max_abs_difference": difference}
    return kv


def _mfu_model(quick: bool):
    """(arch, size name, (latent frames, latent side, actions per frame)) the MFU key times: the ``small`` preset on
    a training sequence of 8 latent frames of 16×16 latents (a 256×256 camera at stride 16) with 4 actions each —
    1,088 tokens with the clean and noisy copies — or, with ``--quick``, the tiny stand-in on 4 frames of 8×8."""
    from lbva.config.model import SIZES

    if quick:
        return _stand_in_arch(True), "stand-in", (4, 8, 4)
    return SIZES["small"], "small", (8, 16, 4)


MATMUL_CALLS = 4  # peak matmuls per timed repeat of the MFU key, interleaved with the training steps


def train_step_mfu(dev, quick: bool, reps: int, sync) -> dict:
    """Achieved FLOP/s of a training fwd+bwd / this machine's fp32 matmul peak, the two timed in interleaved repeats
    (a slow spell of the machine hits both); without ``--quick`` also with ``model.compile`` (key ``compiled``: the
    same weights, batch and FLOP count; the compilation happens in the untimed warm-up)."""
    from dataclasses import replace

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lbva.config import load_config
    from lbva.models.lingbot_va import LingBotVA

    n = 1024 if quick else 2048
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)

    def matmul():
        a @ b

    arch, size, (Ft, side, N) = _mfu_model(quick)
    torch.manual_seed(0)
    tm = LingBotVA(arch).to(dev).train()
    text = _text(dev)
    C = arch.in_channels
    batch = dict(noisy_video=torch.randn(1, C, Ft, side, side, device=dev), video_sigma=torch.rand(1, Ft, device=dev),
                 noisy_actions=torch.randn(1, Ft, N, arch.action_dim, device=dev),
                 action_sigma=torch.rand(1, Ft, device=dev), text=text,
                 clean_video=torch.randn(1, C, Ft, side, side, device=dev),
                 clean_actions=torch.randn(1, Ft, N, arch.action_dim, device=dev), chunk_size=1)

    def step_of(model):
        def train_step():
            model.zero_grad(set_to_none=True)
            out = model(**batch)
            loss = out.video.square().mean() + out.actions.square().mean()
            loss.backward()
            return loss

        return train_step

    train_step = step_of(tm)
    with FlopCounterMode(display=False) as fc:
        train_step()
    counted = fc.get_total_flops()
    sdpa_counted = any("scaled_dot_product" in str(op) for ops in fc.get_flop_counts().values() for op in ops)
    p = arch.patch_size
    L = 2 * (Ft * (side // p[1]) * (side // p[2]) + Ft * N)  # clean + noisy copies
    attn_flops = 0 if sdpa_counted else 3 * 4 * L * L * arch.dim * arch.num_layers  # fwd QK^T+PV, bwd twice
    attn_flops += 3 * 4 * L * text.shape[1] * arch.dim * arch.num_layers if not sdpa_counted else 0  # text
    flops = counted + attn_flops

    steps = {"eager": train_step}
    result = {"step_flops": flops, "attention_flops_added": attn_flops, "tokens": L, "layers": arch.num_layers,
              "dim": arch.dim, "size": size}
    if not quick:  # the same weights with model.compile, timed in the same rounds
        mcfg = replace(load_config(None, [f"model.size={size}"]).model, compile=True)
        cm = LingBotVA(arch, config=mcfg).to(dev).train()
        cm.load_state_dict(tm.state_dict())
        steps["compiled"] = step_of(cm)
        t0 = time.perf_counter()
        loss = steps["compiled"]()  # compiles
        sync()
        result["compiled"] = {"first_call_s": time.perf_counter() - t0,
                              "loss_difference": abs(loss.item() - train_step().item())}
    timed = _interleaved([*steps.values(), matmul], reps, sync, inners=[1] * len(steps) + [MATMUL_CALLS])
    (mm_median, mm_min) = timed[-1]
    peak, peak_median = 2 * n**3 / mm_min, 2 * n**3 / mm_median
    matmul_flops, attention_counted = flop_split(fc)
    for name, (median, least) in zip(steps, timed):
        # the medians are the headline, as in the other keys' ratios: the minima of 5 steps and of 5 peaks each move
        # with one lucky repeat (two runs on one machine: 56 % and 48 % from minima, 51 % and 48 % from medians)
        entry = {"mfu": flops / median / peak_median, "mfu_min": flops / least / peak,
                 "achieved_flops": flops / median, "peak_matmul_flops": peak_median, "step_s": median,
                 "step_min_s": least, "repeats": max(reps, MIN_REPEATS)}
        # where the time goes: one more step, profiled (after the timed ones, so it changes none of them)
        entry["split"] = profile_split(steps[name], matmul_flops, attention_counted + attn_flops, peak_median, sync,
                                       dev.type)
        if name == "eager":
            result.update(entry)
        else:
            result[name].update(entry, vs_eager=median / timed[0][0])
    return result


def compiled_vs_eager(dev, quick: bool, reps: int, sync) -> dict:
    """Forward of the same model and weights with its blocks compiled / eager, after a first call that compiles."""
    from dataclasses import replace

    import torch

    from lbva.config import load_config
    from lbva.models.lingbot_va import LingBotVA

    mcfg = load_config(None, ["model.size=tiny" if quick else "model.size=small"]).model
    torch.manual_seed(0)
    eager_m = LingBotVA(mcfg.arch(), config=mcfg).to(dev).eval()
    compiled_m = LingBotVA(mcfg.arch(), config=replace(mcfg, compile=True)).to(dev).eval()
    compiled_m.load_state_dict(eager_m.state_dict())
    g = torch.Generator().manual_seed(4)
    Fc = 2
    cin = dict(noisy_video=torch.randn(1, mcfg.arch().in_channels, Fc, 8, 8, generator=g).to(dev),
               video_sigma=torch.rand(1, Fc, generator=g).to(dev),
               noisy_actions=torch.randn(1, Fc, 4, mcfg.action_dim, generator=g).to(dev),
               action_sigma=torch.rand(1, Fc, generator=g).to(dev),
               text=torch.randn(1, 8, eager_m.arch.text_dim, generator=g).to(dev))
    with torch.no_grad():
        t0 = time.perf_counter()
        same = compiled_m(**cin, chunk_size=1)  # the first call compiles
        sync()
        compile_s = time.perf_counter() - t0
        ref_out = eager_m(**cin, chunk_size=1)
        err = float((same.video - ref_out.video).abs().max())
        st = _pair_stats(lambda: compiled_m(**cin, chunk_size=1), lambda: eager_m(**cin, chunk_size=1), reps, sync)
    return {**_ratio_entry(st, "compiled", "eager"), "first_call_s": compile_s, "max_abs_difference": err,
            "size": mcfg.size}


def chunk_vs_lerobot(dev, quick: bool, reps: int, sync) -> dict:
    """{history chunks: lbva's closed-loop chunk / LeRobot's lingbot_va's, on the CPU}: the ratio only where both
    gave the same actions for every chunk (:class:`~lbva.bench.lerobot_chunk.SideBySide`). lbva runs eager (its
    default) at every history, and with ``model.compile`` at :data:`COMPILED_HISTORIES` (key ``"<n> compiled"``;
    the compilation happens while growing the history, untimed)."""
    from lbva.bench.lerobot_chunk import SideBySide

    entries = {}
    runs = [(h, False) for h in HISTORIES] + [(int(h), True) for h in COMPILED_HISTORIES]
    for hist, compiled in runs:
        pair = SideBySide(hist, quick, compiled=compiled)
        pair.grow()
        timings = _pair_stats(pair.step_lbva, pair.step_lerobot, max(reps, FAST_REPEATS), lambda: None)
        entries[f"{hist} compiled" if compiled else str(hist)] = entry = pair.agreement()
        if entry["outputs_equal"]:
            entry.update(_ratio_entry(timings, "lbva", "lerobot"))
    return entries


KEYS = {"video_stream_vs_diffusers": video_stream_vs_diffusers, "kv_cache_vs_recompute": kv_cache_vs_recompute,
        "train_step_mfu": train_step_mfu, "compiled_vs_eager": compiled_vs_eager, "chunk_vs_lerobot": chunk_vs_lerobot}

# the scale-out goals, printed next to what was measured
GOAL_CHUNK_VS_LEROBOT = ("16", 0.6)  # lbva's chunk at most 0.6× LeRobot's at 16 history chunks
GOAL_CACHE_VS_RECOMPUTE = ("32", 0.05)  # a cached step at most 0.05× the recompute at 32 chunks
GOAL_MFU = 0.60  # a training step at least 60 % of the measured fp32 matmul peak, for `small`


def video_stream_lines(r: dict) -> list[str]:
    return [f"video_stream_vs_diffusers: {r['ratio']:.2f}× ({r['ratio_min']:.2f}×) diffusers' time "
            "(fwd+bwd, same config and weights)"]


def kv_cache_lines(entries: dict) -> list[str]:
    lines = []
    for v in entries.values():
        frames = v["chunk_frames"]
        lines.append(f"kv_cache_vs_recompute[{v['history_chunks']} chunks of {frames} latent frame{'s' * (frames > 1)}]: "
                     f"{v['ratio']:.3f}× ({v['ratio_min']:.3f}×) the recompute time (a {v['query_tokens']}-token "
                     f"query, {v['cache_s'] * 1e3:.1f} ms; the recompute runs {v['recompute_tokens']} tokens; "
                     f"largest difference {v['max_abs_difference']:.1e})")
    return lines


def mfu_lines(r: dict) -> list[str]:
    share = r["attention_flops_added"] / r["step_flops"]
    lines = [f"train_step_mfu[{_mfu_label(r)}, {r.get('tokens', '?')} tokens]: {100 * r['mfu']:.1f}% "
             f"({100 * r['mfu_min']:.1f}% from minima) of the matmul peak measured between its steps "
             f"({r['peak_matmul_flops'] / 1e9:.0f} GFLOP/s; {r['step_s'] * 1e3:.0f} ms a step, "
             f"{100 * share:.0f}% of its FLOPs in the masked attention, counted dense)"]
    if r.get("split"):
        lines.append(split_line(f"{_mfu_label(r)}, eager", r["split"]))
    c = r.get("compiled")
    if c:
        lines.append(f"train_step_mfu[{_mfu_label(r)}, model.compile]: {100 * c['mfu']:.1f}% "
                     f"({100 * c['mfu_min']:.1f}% from minima) of the same peak ({c['step_s'] * 1e3:.0f} ms a "
                     f"step, {c['vs_eager']:.2f}× the eager step in the same rounds; compiling took "
                     f"{c['first_call_s']:.0f} s; loss differs from eager by {c['loss_difference']:.1e})")
        if c.get("split"):
            lines.append(split_line(f"{_mfu_label(r)}, model.compile", c["split"]))
    return lines


def _mfu_label(r: dict) -> str:
    if r.get("size") == "small":
        return "`small`"
    return f"stand-in: {r['layers']} layers of width {r['dim']}"


def compiled_lines(c: dict) -> list[str]:
    return [f"compiled_vs_eager[{c['size']}]: {c['ratio']:.2f}× ({c['ratio_min']:.2f}×) the eager forward time "
            f"(first call, compiling: {c['first_call_s']:.1f} s; largest output difference "
            f"{c['max_abs_difference']:.1e})"]


def chunk_vs_lerobot_lines(entries: dict) -> list[str]:
    """A ratio per history length where the actions agreed, else the difference and no ratio."""
    lines = []
    for k, v in entries.items():
        tol = f"rtol {v['tolerance']['rtol']:.0e}, atol {v['tolerance']['atol']:.0e}"
        k = k.replace(" compiled", " chunks, lbva with model.compile") if v.get("compiled") else f"{k} chunks"
        if v["outputs_equal"]:
            lines.append(f"chunk_vs_lerobot[{k}]: {v['ratio']:.2f}× ({v['ratio_min']:.2f}×) LeRobot's "
                         f"closed-loop chunk time ({v['size']}'s transformer, {v['device']}; the "
                         f"actions of {v['chunks_compared']} chunks agree within {tol}, largest difference "
                         f"{v['max_abs_difference']:.1e})")
        else:
            lines.append(f"chunk_vs_lerobot[{k}]: NO RATIO: the actions differ from LeRobot's by up to "
                         f"{v['max_abs_difference']:.1e} over {v['chunks_compared']} chunks, beyond {tol}")
    return lines


KEY_LINES = {"video_stream_vs_diffusers": video_stream_lines, "kv_cache_vs_recompute": kv_cache_lines,
             "train_step_mfu": mfu_lines, "compiled_vs_eager": compiled_lines,
             "chunk_vs_lerobot": chunk_vs_lerobot_lines}


def report_lines(results: dict) -> list[str]:
    """The printed summary of :func:`run`'s results: load, one block per key, the goals."""
    kv_reps = next(iter(results["kv_cache_vs_recompute"].values()))["repeats"]
    lines = [f"load average (1/5/15 min) at start {results['load_average_start']}, at end {results['load_average_end']}; "
             f"ratios of medians (of minima) over {results['video_stream_vs_diffusers']['repeats']} interleaved "
             f"repeats ({kv_reps} for the cache and closed-loop keys; a cached-step repeat is {CACHED_CALLS} calls) "
             "after 2 warm-up runs"]
    for key, key_lines in KEY_LINES.items():
        lines += key_lines(results[key])
    return lines + goal_lines(results)


def goal_lines(results: dict) -> list[str]:
    """The scale-out goals beside what this run measured: met, not met, or not measured."""
    def verdict(ok: bool) -> str:
        return "met" if ok else "not met"

    hist, limit = GOAL_CHUNK_VS_LEROBOT

    def chunk_verdict(v: dict | None) -> str:
        if v is None:
            return "not measured"
        return (f"measured {v['ratio']:.3f}×: {verdict(v['ratio'] <= limit)}" if v["outputs_equal"]
                else "not measured (the actions differ)")

    chunks = results["chunk_vs_lerobot"]
    chunk = f"eager (lbva's default) {chunk_verdict(chunks[hist])}"
    if f"{hist} compiled" in chunks:
        chunk += f"; with model.compile {chunk_verdict(chunks[f'{hist} compiled'])}"
    hist_kv, limit_kv = GOAL_CACHE_VS_RECOMPUTE
    kvs = results["kv_cache_vs_recompute"]
    kv = kvs[hist_kv]["ratio"]
    one_frame = kvs.get(kv_key(int(hist_kv), 1))
    kv_also = "" if one_frame is None else f" (with 1-frame chunks {one_frame['ratio']:.3f}×)"
    m = results["train_step_mfu"]
    if m.get("size") == "small":
        mfu = f"eager (lbva's default) measured {100 * m['mfu']:.1f}%: {verdict(m['mfu'] >= GOAL_MFU)}"
        if m.get("compiled"):
            c = m["compiled"]["mfu"]
            mfu += f"; with model.compile measured {100 * c:.1f}%: {verdict(c >= GOAL_MFU)}"
    else:
        mfu = f"measured {100 * m['mfu']:.1f}% on {_mfu_label(m)}: not measured on `small` (--quick)"
    size = (chunks.get(hist) or {}).get("size")
    on = f" ({size}'s transformer)" if size else ""
    return [f"goal: chunk ≤ {limit}× LeRobot's at {hist} history chunks{on}: {chunk}",
            f"goal: cached step ≤ {limit_kv}× the recompute at {hist_kv} chunks of the paper's deployment size "
            f"({KV_CHUNK_FRAMES[0]} latent frames): measured {kv:.3f}×: {verdict(kv <= limit_kv)}{kv_also}",
            f"goal: training step ≥ {100 * GOAL_MFU:.0f}% of the measured fp32 matmul peak for `small`: {mfu}"]


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from lbva.errors import CLIError

    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda asked for, but torch sees no GPU; use --device cpu")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    reps = args.repeats or MIN_REPEATS
    results: dict = {"device": str(dev), "quick": args.quick, "load_average_start": load_average()}
    with tqdm(total=len(KEYS), desc="lbva bench model", disable=None) as bar:
        for key, measure in KEYS.items():
            bar.set_postfix_str(key)
            results[key] = measure(dev, args.quick, reps, sync)
            bar.update()
    results["load_average_end"] = load_average()
    for line in report_lines(results):
        print(line)  # noqa: T201 — CLI output
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(strict_json.dumps(results, indent=2))
        log.info("wrote %s", args.json)
    return 0
