"""Closed-loop inference speed: per-chunk latency by mode and history, async vs sync idle time, partial vs full
video denoising, the websocket server vs an in-process call (``--only`` picks some of them).

Every ratio compares two measurements taken in the same run on the same input:

* ``latency`` {mode: {history chunks: {p50_ms, p95_ms}}}: one chunk prediction on the ``small`` config, with the
  default (released) window and with a window of 4 whole chunks;
* ``long_session`` {window: {chunk_ms, chunk_cpu_ms: {chunk: ms}}, plus the KV cache's tokens and buffer size}: one
  session run for 200 chunks (real feedback after each), the chunk latency near chunks 1, 50 and 200 in wall-clock
  and in processor time (what the chunk computed; on a shared machine the wall clock also measures other jobs) —
  with the default window, and with a window wider than the session (the history grows: what a cache without a
  bound does);
* ``async_vs_sync_idle``: robot idle time per chunk with the naive-async worker / with sync inference, the robot
  paced at the embodiment's control rate (it sleeps out each action's duration — a benchmark, not a test);
* ``partial_vs_full_denoise``: chunk latency integrating video to ``video_stop_sigma`` / integrating it to σ = 0
  with the same step size (so more steps: the saving partial denoising buys);
* ``server_vs_inprocess``: ``infer`` through ``lbva serve``'s websocket server / ``predict_action_chunk`` in process.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from lbva import strict_json

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="tiny model, short histories (about a minute on 2 cores)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    p.add_argument("--embodiment", default="metaworld-sawyer")
    p.add_argument("--repeats", type=int, default=None, help="timed chunks per measurement")
    p.add_argument("--only", type=_parts, default=None, metavar="PARTS",
                   help="comma-separated measurements to run, of " + ", ".join(PARTS) + " (all when not given)")


PARTS = ("latency", "long_session", "denoise", "idle", "server")


def _parts(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in parts if p not in PARTS]
    if not parts or unknown:
        raise argparse.ArgumentTypeError(f"takes comma-separated measurements from {', '.join(PARTS)}; got {text!r}")
    return parts


def _stack(size: str, embodiment: str):
    import torch

    from lbva.config import load_config
    from lbva.data.embedded_vae import EmbeddedVAE, EmbeddedVAEConfig
    from lbva.data.encoders import EmbeddedTextEncoder, EmbeddedVideoEncoder
    from lbva.embodiment import ActionStats, get_embodiment
    from lbva.models import build_model

    torch.manual_seed(0)
    text = EmbeddedTextEncoder()
    vae = EmbeddedVAE(EmbeddedVAEConfig())
    cfg = load_config(None, [f"model.size={size}", f"model.text_dim={text.dim}",
                             f"model.in_channels={vae.config.latent_channels}", f"embodiment.name={embodiment}"])
    spec = get_embodiment(embodiment)
    stats = ActionStats(q01=-np.ones(30, np.float32), q99=np.ones(30, np.float32), source="bench")
    return cfg, build_model(cfg.model).eval(), spec, EmbeddedVideoEncoder(vae), text, stats


def _policy(stack, **inference):
    from lbva.inference import Policy

    cfg, model, spec, video, text, stats = stack
    cfg = replace(cfg, inference=replace(cfg.inference, **inference))
    return Policy(model, spec, video, text, cfg, stats=stats)


def _obs(spec, rng):
    obs = {c.key: rng.integers(0, 256, (c.height, c.width, 3), dtype=np.uint8) for c in spec.cameras}
    obs[spec.state_key] = np.zeros(spec.native_state_dim, np.float32)
    return obs


def _chunk_latencies(stack, history: int, repeats: int, **inference) -> list[float]:
    """Grow a session to ``history`` chunks (real feedback each time), then time ``repeats`` more chunks."""
    spec = stack[2]
    rng = np.random.default_rng(0)
    policy = _policy(stack, **inference)
    policy.reset("bench")
    actions = policy.predict_action_chunk(_obs(spec, rng))
    times = []
    for c in range(1, history + repeats + 1):
        k = policy.feedback_frames(c - 1)
        cams = {cam.key: rng.integers(0, 256, (k, cam.height, cam.width, 3), dtype=np.uint8) for cam in spec.cameras}
        policy.observe(cams, actions)
        t0 = time.perf_counter()
        actions = policy.predict_action_chunk()
        if c > history:
            times.append(time.perf_counter() - t0)
    return times


def _session_latencies(stack, chunks: int, **inference) -> tuple[list[float], list[float], dict]:
    """One session of ``chunks`` chunks with real feedback after each: every chunk's wall-clock latency and its
    processor time (this process's CPU seconds: what the chunk computed, which other jobs on a shared machine do not
    inflate), and the KV cache's tokens held, slots and buffer bytes at the end."""
    spec = stack[2]
    rng = np.random.default_rng(3)
    policy = _policy(stack, **inference)
    policy.reset("bench")
    actions = policy.predict_action_chunk(_obs(spec, rng))
    times, cpu = [], []
    for c in range(1, chunks + 1):
        k = policy.feedback_frames(c - 1)
        cams = {cam.key: rng.integers(0, 256, (k, cam.height, cam.width, 3), dtype=np.uint8) for cam in spec.cameras}
        policy.observe(cams, actions)
        t0, p0 = time.perf_counter(), time.process_time()
        actions = policy.predict_action_chunk()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - p0)
    cache = policy.predictor.session.cache
    nbytes = sum(t.numel() * t.element_size() for t in (*cache._k, *cache._v))
    return times, cpu, {"tokens_held": cache.size, "capacity_tokens": cache.capacity, "buffer_mb": nbytes / 2**20}


def _near(times: list[float], chunk: int) -> float:
    """Median latency of chunks chunk−1 … chunk+1 (1-based, clipped to the session): one chunk's noise damped."""
    lo, hi = max(chunk - 2, 0), min(chunk + 1, len(times))
    return statistics.median(times[lo:hi])


def _paced_idle(stack, mode: str, chunks: int) -> float:
    """Mean robot idle seconds per chunk: actions take 1/control_hz each (slept), the policy is waited for."""
    spec = stack[2]
    rng = np.random.default_rng(1)
    policy = _policy(stack, mode=mode)
    policy.reset("bench")
    dt = 1.0 / float(spec.control_hz)
    steps = (spec.chunk_frames - 1) * spec.actions_per_frame + chunks * spec.chunk_frames * spec.actions_per_frame
    idle = 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        policy.select_action(_obs(spec, rng))
        idle += time.perf_counter() - t0  # time the robot stood waiting for its next command
        time.sleep(dt)  # the robot executes the action
    policy.close()
    first = policy.stats.chunks[0].latency_s  # chunk 0 is always waited for; count only the steady state
    return max(idle - first, 0.0) / chunks


def _server_vs_inprocess(stack, repeats: int) -> tuple[float, float]:
    from lbva.serving.client import LbvaClient
    from lbva.serving.server import PolicyServer

    spec = stack[2]
    rng = np.random.default_rng(2)
    obs = _obs(spec, rng)
    local = _policy(stack)
    t_local, t_remote = [], []
    # interleaved, so that load from other processes falls on both sides alike
    with PolicyServer(lambda: _policy(stack), spec, port=0).start() as server, LbvaClient("127.0.0.1", server.port) as client:
        for _ in range(repeats + 1):
            local.reset("bench")  # a new episode: chunk 0 each time, on both sides
            t0 = time.perf_counter()
            local.predict_action_chunk(obs)
            t_local.append(time.perf_counter() - t0)
            client.reset("bench")
            t0 = time.perf_counter()
            client.infer(obs)
            t_remote.append(time.perf_counter() - t0)
    return statistics.median(t_local[1:]), statistics.median(t_remote[1:])


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lbva.objectives.sampler import full_denoise_steps

    quick = args.quick
    size = "tiny" if quick else "small"
    histories = (2, 4, 8) if quick else (4, 16, 32)
    repeats = args.repeats or (2 if quick else 5)
    stack = _stack(size, args.embodiment)
    cfg = stack[0]
    from lbva.bench.model import load_average

    results: dict = {"size": size, "embodiment": args.embodiment, "histories": list(histories),
                     "load_average_start": load_average()}
    only = set(getattr(args, "only", None) or PARTS)
    bar = tqdm(total=(len(histories) * 2 if "latency" in only else 0) + 2 * ("long_session" in only)
               + len(only - {"latency", "long_session"}), desc="lbva bench inference", disable=None)
    _chunk_latencies(stack, 2, 2)  # warm-up, untimed: first calls pay for allocation and lazy set-up
    default_window = f"{cfg.inference.window} window {cfg.inference.window_size}"

    lat: dict = {}
    for mode_name, extra in ((f"sync, {default_window}", {}),
                             ("sync, window 4 chunks", {"window": "chunks", "window_size": 4})) if "latency" in only else ():
        lat[mode_name] = {}
        for h in histories:
            t = _chunk_latencies(stack, h, repeats, **extra)
            lat[mode_name][h] = {"p50_ms": 1e3 * float(np.percentile(t, 50)), "p95_ms": 1e3 * float(np.percentile(t, 95))}
            bar.update()
    if lat:
        results["latency"] = lat

    # one long session: flat with the window, growing without one (a chunks window wider than the session)
    points = (1, 10, 40) if quick else (1, 50, 200)
    long: dict = {}
    for name, extra in ((default_window, {}), (f"chunks window {points[-1] + 1} (unbounded here)",
                                               {"window": "chunks", "window_size": points[-1] + 1})) \
            if "long_session" in only else ():
        times, cpu, memory = _session_latencies(stack, points[-1], **extra)
        long[name] = {"chunk_ms": {c: 1e3 * _near(times, c) for c in points},
                      "chunk_cpu_ms": {c: 1e3 * _near(cpu, c) for c in points}, **memory}
        bar.update()
    if long:
        results["long_session"] = long

    # partial (to the stop σ) vs full (to 0 with the same step size in the unshifted grid)
    inf, shift = cfg.inference, cfg.objective.video_shift
    full_steps = full_denoise_steps(inf.video_steps, inf.video_stop_sigma, shift)
    h = histories[0]
    if "denoise" in only:
        partial = statistics.median(_chunk_latencies(stack, h, repeats))
        full = statistics.median(_chunk_latencies(stack, h, repeats, video_stop_sigma=0.0, video_steps=full_steps))
        results["partial_vs_full_denoise"] = partial / full
        results["denoise_steps"] = {"partial": inf.video_steps, "full": full_steps, "stop_sigma": inf.video_stop_sigma}
        bar.update()

    if "idle" in only:
        chunks = 3 if quick else 6
        idle_sync = _paced_idle(stack, "sync", chunks)
        idle_async = _paced_idle(stack, "naive_async", chunks)
        results["idle_s_per_chunk"] = {"sync": idle_sync, "naive_async": idle_async}
        results["async_vs_sync_idle"] = idle_async / idle_sync if idle_sync > 0 else float("nan")
        bar.update()

    if "server" in only:
        t_local, t_remote = _server_vs_inprocess(stack, repeats)
        results["server_vs_inprocess"] = t_remote / t_local
        bar.update()
    bar.close()

    results["load_average_end"] = load_average()
    print(f"lbva bench inference ({size} model, {args.embodiment}; ratios from one run, after an untimed warm-up "
          f"session; load average 1/5/15 min at start {results['load_average_start']}, at end "
          f"{results['load_average_end']})")
    if lat:
        print(f"{'history chunks':>16} " + " ".join(f"{m + ' p50/p95 ms':>30}" for m in lat))
        for hist in histories:
            print(f"{hist:>16} " + " ".join(f"{lat[m][hist]['p50_ms']:>14.1f} / {lat[m][hist]['p95_ms']:<13.1f}"
                                           for m in lat))
    if long:
        print(f"one session of {points[-1]} chunks: latency near chunk " + ", ".join(map(str, points))
              + " (ms; wall clock, then processor time), last / first, KV cache")
    for name, row in long.items():
        for kind in ("chunk_ms", "chunk_cpu_ms"):
            ms = row[kind]
            print(f"  {name + (' (processor)' if kind == 'chunk_cpu_ms' else ''):<52} "
                  + " ".join(f"{ms[c]:>8.1f}" for c in points) + f"   x{ms[points[-1]] / ms[points[0]]:.2f}"
                  + (f"   {row['tokens_held']} of {row['capacity_tokens']} tokens, {row['buffer_mb']:.1f} MB"
                     if kind == "chunk_ms" else ""))
    if "denoise" in only:
        print(f"partial_vs_full_denoise  {results['partial_vs_full_denoise']:.3f}  "
              f"({inf.video_steps} steps to σ={inf.video_stop_sigma} vs {full_steps} steps to σ=0)")
    if "idle" in only:
        print(f"async_vs_sync_idle       {results['async_vs_sync_idle']:.3f}  "
              f"(idle per chunk: sync {idle_sync * 1e3:.1f} ms, naive async {idle_async * 1e3:.1f} ms)")
    if "server" in only:
        print(f"server_vs_inprocess      {results['server_vs_inprocess']:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(strict_json.dumps(results, indent=2))
    return 0
