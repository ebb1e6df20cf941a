"""The demo's figures: predicted vs real frames of a trained model (:func:`prediction_strip`) and the training loss
of every model (:func:`loss_curves`, drawn with :func:`style_loss_axes`, which the evidence's loss panels share)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path


def prediction_strip(system, cfg, video, path: Path, samples: int = 3, seed: int = 0) -> Path:
    """A PNG of predicted vs real frames: for a few training windows, the model continues the real history
    (video fully denoised to σ = 0) and the decoded prediction is drawn under the real frames."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from lbva.data.datamodule import LatentDataModule
    from lbva.objectives.sampler import full_denoise_steps

    K = max(cfg.data.chunk_sizes)
    dm = LatentDataModule.from_config(replace(cfg, data=replace(cfg.data, chunk_sizes=[K], batch_size=1)))
    dm.setup("fit")
    g = torch.Generator().manual_seed(seed)
    inf = cfg.inference
    old = system.sampler_config
    system.sampler_config = replace(old, video_stop_sigma=0.0, video_steps=full_denoise_steps(
        inf.video_steps, inf.video_stop_sigma, cfg.objective.video_shift))
    history = 3
    real, pred = [], []
    try:
        for i, batch in enumerate(dm.train_dataloader()):  # windows long enough to show some history
            if len(real) == samples or i > 200:
                break
            F = batch["video"].shape[2]
            Fh = (F - 1) // K * K
            if Fh < history or F - Fh < K:
                continue
            with torch.no_grad():
                pv = system.sample_last_chunk(batch, g)[0]
            real.append(video.decode(batch["video"][:, :, Fh - history:Fh + K]).numpy()[0])  # (history + K, H, W, 3)
            pred.append(video.decode(pv).numpy()[0])  # (K, H, W, 3)
    finally:
        system.sampler_config = old
    if not real:
        raise ValueError(f"no training window has {history} frames of history and a whole chunk of {K}")
    real, pred = np.stack(real), np.stack(pred)
    n = pred.shape[1]
    h = real.shape[1] - n
    B = real.shape[0]
    fig, axes = plt.subplots(2 * B, real.shape[1], figsize=(1.3 * real.shape[1], 2.7 * B), squeeze=False)
    for b in range(B):
        for j in range(real.shape[1]):
            top, bottom = axes[2 * b, j], axes[2 * b + 1, j]
            top.imshow(real[b, j])
            if j >= h:
                bottom.imshow(pred[b, j - h])
            for ax in (top, bottom):
                ax.set_xticks([]), ax.set_yticks([])
                if j < h and ax is bottom:
                    ax.axis("off")
            if j == 0:
                top.set_ylabel("real", fontsize=8)
            if j == h:
                bottom.set_ylabel("predicted", fontsize=8)
            if b == 0:
                top.set_title("history" if j < h else f"next +{j - h + 1}", fontsize=8)
    fig.suptitle("predicted vs real frames (training windows, video denoised to σ = 0)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


LOSS_TITLES = {"train/loss": "total loss", "train/loss_dyn": "video dynamics (L_dyn)",
               "train/loss_inv": "inverse dynamics (L_inv)", "train/loss_fdm": "forward dynamics (L_fdm)"}


def style_loss_axes(ax, title: str) -> None:
    """The look every loss panel of the demo's figures shares: steps across, loss on a log scale, a legend."""
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss (log scale)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")


def loss_curves(runs: dict[str, Path], path: Path) -> Path | None:
    """Every training loss term (``train/loss*``) of each trained model, from its TensorBoard run: one panel per
    term, the logged values faint and their running mean (a tenth of the run) solid, on a log scale."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: dict[str, dict[str, dict[int, float]]] = {}  # tag -> run -> step -> value (resumed runs join up)
    for name, folder in runs.items():
        for events in sorted((folder / "tb").glob("version_*")):
            acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
            acc.Reload()
            for tag in acc.Tags().get("scalars", []):
                if tag.startswith("train/loss"):
                    curves.setdefault(tag, {}).setdefault(name, {}).update({p.step: p.value for p in acc.Scalars(tag)})
    if not curves:
        return None
    tags = sorted(curves, key=lambda t: (list(LOSS_TITLES).index(t) if t in LOSS_TITLES else len(LOSS_TITLES), t))
    fig, axes = plt.subplots(1, len(tags), figsize=(4.6 * len(tags), 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, tag in zip(axes[0], tags):
        for i, name in enumerate(runs):
            pts = curves[tag].get(name)
            if not pts:
                continue
            steps = np.array(sorted(pts))
            values = np.array([pts[k] for k in steps])
            color = colors[i % len(colors)]
            ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.7)
            window = max(1, len(values) // 10)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1:], smooth, color=color, linewidth=1.6, label=name)
        style_loss_axes(ax, LOSS_TITLES.get(tag, tag))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
