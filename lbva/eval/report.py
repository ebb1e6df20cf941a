"""Write what an evaluation found: :func:`write_report`.

Axis legend: T frames, H/W the tiled camera frame.

Into ``out_dir``:

* ``report.md`` — a per-task table (episodes, success rate, progress score, mean steps, safety events) and the
  mean over tasks, with the run's settings;
* ``results.json`` — the same numbers plus every episode (seed, success, progress, steps, reward);
* ``success.png`` — success rate (with its 95 % Wilson interval) and progress score per task (matplotlib,
  headless);
* ``videos/<task>_ep<k>.mp4`` — the recorded episodes, enlarged to at least 256 pixels a side (imageio with PyAV);
* ``tb/`` — TensorBoard scalars ``eval/<task>/success_rate`` and ``eval/<task>/progress``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lbva import strict_json

logger = logging.getLogger(__name__)


def summarize(results: Sequence[Any]) -> dict[str, dict[str, float]]:
    """Per-task and mean metrics of episode results (through :class:`lbva.eval.metrics.TaskMetrics`)."""
    from lbva.eval.metrics import TaskMetrics

    tm = TaskMetrics(list(dict.fromkeys(r.task for r in results)))
    if results:
        tm.update([r.task for r in results], [r.success for r in results], [r.progress for r in results])
    out = tm.compute()
    for task, row in out.items():
        mine = [r for r in results if task in ("mean", r.task)]
        row["mean_steps"] = float(np.mean([r.steps for r in mine])) if mine else float("nan")
        row["safety_events"] = float(sum(r.safety_events for r in mine))
        # time to finish: successful episodes only, on a robot at the embodiment's rate (steps + modelled idle)
        done = [r.robot_time_s for r in mine if r.success and getattr(r, "robot_time_s", None) is not None]
        row["time_to_finish_s"] = float(np.mean(done)) if done else float("nan")
        lat = [r.policy_stats["latency_p50_s"] for r in mine if "latency_p50_s" in (getattr(r, "policy_stats", None) or {})]
        row["chunk_latency_s"] = float(np.mean(lat)) if lat else float("nan")
    return out


def number(value: Any, fmt: str = ".2f", scale: float = 1.0, missing: str = "–") -> str:
    """``value * scale`` formatted with ``fmt``, or ``missing`` for a value not measured (None, NaN): a report says
    "–" (e.g. no time to finish without a successful episode) rather than printing ``nan``."""
    try:
        v = float(value) * scale
    except (TypeError, ValueError):
        return missing
    return format(v, fmt) if np.isfinite(v) else missing


def success_cell(row: Mapping[str, float]) -> str:
    """A summary row's success rate with its 95 % Wilson interval over its episodes, e.g. ``55 % [34, 74]``. (A mean
    over tasks with unequal episode counts takes the interval of its rate over all their episodes.)"""
    from lbva.eval.intervals import wilson_interval

    n = int(row.get("episodes", 0) or 0)
    rate = row.get("success_rate")
    if not n or rate is None or not np.isfinite(rate):
        return "–"
    low, high = wilson_interval(round(float(rate) * n), n)
    return f"{100 * float(rate):.0f} % [{100 * low:.0f}, {100 * high:.0f}]"


def markdown_table(summary: Mapping[str, Mapping[str, float]]) -> str:
    """The per-task table; policies with chunk timings add time to finish and per-chunk latency columns."""
    timed = any(np.isfinite(row.get("chunk_latency_s", float("nan"))) for row in summary.values())
    head = "| task | episodes | success rate [95 % interval] | progress score | mean steps | safety events |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if timed:
        head += " time to finish (s) | chunk latency (ms) |"
        rule += "---:|---:|"
    lines = [head, rule]
    for task, row in summary.items():
        name = f"**{task}**" if task == "mean" else task
        line = (
            f"| {name} | {int(row['episodes'])} | {success_cell(row)} | {number(row['progress'], '.3f')} | "
            f"{number(row['mean_steps'], '.1f')} | {int(row['safety_events'])} |"
        )
        if timed:
            line += (f" {number(row.get('time_to_finish_s'))} | "
                     f"{number(row.get('chunk_latency_s'), '.0f', scale=1000)} |")
        lines.append(line)
    return "\n".join(lines)


def plot_summary(summary: Mapping[str, Mapping[str, float]], path: Path, title: str) -> Path:
    """Success rate (with its 95 % Wilson interval) and progress score per task."""
    from lbva.eval.intervals import wilson_interval

    tasks = [t for t in summary if t != "mean"]
    success, progress = [], []
    for t in tasks:
        row = summary[t]
        n = int(row.get("episodes", 0))
        rate = float(row["success_rate"])
        low, high = wilson_interval(round(rate * n), n) if n else (rate, rate)
        success.append((rate, low, high))
        progress.append((float(row["progress"]), None, None))
    return plot_rates(tasks, {"success rate (95 % interval)": success, "progress score": progress}, path, title)


def plot_rates(categories: Sequence[str], series: Mapping[str, Sequence[tuple[float, float | None, float | None]]],
               path: Path, title: str, ylabel: str = "rate") -> Path:
    """Grouped bars in [0, 1]: one group per category, one bar per series, each ``(value, low, high)`` with its
    interval as an error bar (None: none) and its value written above it. A bar at 0 is drawn as an outlined stub,
    so that "0 %" is seen rather than guessed from an empty slot."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = list(series)
    x = np.arange(len(categories))
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(categories) * len(names) + 2.5), 4.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, name in enumerate(names):
        pos = x - 0.4 + width * (i + 0.5)
        color = colors[i % len(colors)]
        values = [v[0] if v is not None else np.nan for v in series[name]]
        ax.bar(pos, values, width * 0.92, label=name, color=color)
        for p, v in zip(pos, series[name]):
            if v is None:
                continue
            value, low, high = v
            if value <= 0.005:  # an outlined stub where a bar of height 0 would vanish
                ax.bar(p, 0.012, width * 0.92, facecolor="none", edgecolor=color, linewidth=1.2)
            if low is not None and high is not None:
                ax.errorbar(p, value, yerr=[[value - low], [high - value]], fmt="none", ecolor="black",
                            elinewidth=0.9, capsize=2)
            top = high if high is not None else value
            ax.text(p, min(top, 1.0) + 0.015, f"{100 * value:.0f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, categories, rotation=15, ha="right", fontsize=9)
    ax.set_ylim(0, 1.12)
    ax.set_yticks(np.linspace(0, 1, 6), [f"{int(100 * t)} %" for t in np.linspace(0, 1, 6)])
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def upscale(frames: np.ndarray, min_side: int = 256) -> np.ndarray:
    """Frames (T, H, W, 3) enlarged by a whole factor (nearest neighbour, no blur) until the shorter side is at least
    ``min_side``: a 64x64 camera is too small to see the gripper in a video player."""
    f = np.asarray(frames)
    factor = max(1, -(-int(min_side) // max(1, min(f.shape[1], f.shape[2]))))
    return f if factor == 1 else f.repeat(factor, axis=1).repeat(factor, axis=2)


def write_video(frames: np.ndarray, path: Path, fps: float) -> Path:
    """Frames (T, H, W, 3) uint8 -> an H.264 mp4 (sides padded to even sizes, as yuv420p needs)."""
    import imageio.v3 as iio

    f = np.asarray(frames, dtype=np.uint8)
    if f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(f"video frames must be (T, H, W, 3) uint8; got {f.shape}")
    pad_h, pad_w = f.shape[1] % 2, f.shape[2] % 2
    if pad_h or pad_w:
        f = np.pad(f, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    iio.imwrite(path, f, plugin="pyav", codec="libx264", fps=int(round(fps)), out_pixel_format="yuv420p")
    return path


def write_tensorboard(summary: Mapping[str, Mapping[str, float]], log_dir: Path, step: int = 0) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(log_dir)) as w:
        for task, row in summary.items():
            w.add_scalar(f"eval/{task}/success_rate", row["success_rate"], step)
            w.add_scalar(f"eval/{task}/progress", row["progress"], step)
    return log_dir


def write_report(
    results: Sequence[Any],
    out_dir: str | Path,
    title: str = "lbva evaluation",
    settings: Mapping[str, Any] | None = None,
    fps: float = 20.0,
    tensorboard: bool = True,
    step: int = 0,
) -> dict[str, Any]:
    """Write every report file; returns ``{"summary": ..., "files": {name: path}}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    files: dict[str, Any] = {}
    settings = dict(settings or {})
    md = [f"# {title}", ""]
    if settings:
        md += ["Settings: " + ", ".join(f"`{k}={v}`" for k, v in settings.items()), ""]
    md += [markdown_table(summary), ""]
    md += [
        "Success rate: fraction of episodes that reached the task's success condition. Progress score: the step "
        "score reached over the task's maximum (1 at success), averaged over episodes; the mean row weighs tasks "
        "equally.",
        "",
    ]
    unsafe = [r for r in results if r.safety_reasons]
    if unsafe:
        md += ["## Safety filter", ""] + [f"- {r.task} ep {r.episode}: {r.safety_reasons[0]}" for r in unsafe[:10]] + [""]
    videos = [r for r in results if r.frames is not None]
    if videos:
        (out / "videos").mkdir(exist_ok=True)
        files["videos"] = []
        md += ["## Videos", ""]
        for r in videos:
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in r.task)  # libero_goal/1 -> libero_goal_1
            path = write_video(upscale(r.frames), out / "videos" / f"{safe}_ep{r.episode}.mp4", fps)
            files["videos"].append(path)
            md.append(f"- [{r.task} episode {r.episode}](videos/{path.name}) — success {r.success}, {r.steps} steps")
        md.append("")
    files["plot"] = plot_summary(summary, out / "success.png", title)
    md += ["![success rate and progress per task](success.png)", ""]
    files["markdown"] = out / "report.md"
    files["markdown"].write_text("\n".join(md))
    files["json"] = out / "results.json"
    episodes = [
        {k: getattr(r, k, None) for k in ("task", "episode", "seed", "success", "progress", "steps", "reward",
                                          "safety_events", "robot_time_s", "policy_stats")}
        for r in results
    ]
    files["json"].write_text(strict_json.dumps({"settings": settings, "summary": summary, "episodes": episodes}, indent=2))
    if tensorboard:
        files["tensorboard"] = write_tensorboard(summary, out / "tb", step)
    logger.info("evaluation report written to %s", files["markdown"])
    return {"summary": summary, "files": files}
