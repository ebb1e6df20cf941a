"""What ``lbva demo`` evaluates: the policies of its baseline table (:data:`CORE`) and the paper's ablations at demo
scale (:func:`ablations`), every row a training or inference switch on the demo's main model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Variant:
    """One evaluated policy: a baseline (``kind`` zero / random) or a trained lbva model.

    ``train`` are recipe overrides of a model trained for this variant alone (empty: the demo's main model);
    ``infer`` are the ``inference`` fields it runs with."""

    label: str
    kind: str = "lbva"
    train: tuple[str, ...] = ()
    infer: tuple[tuple[str, Any], ...] = (("mode", "sync"),)

    @property
    def slug(self) -> str:
        return _slug(self.label).strip("_")

    @property
    def model_slug(self) -> str:
        """The name of the model this variant runs ('' = the main model)."""
        return "_".join(_slug(o) for o in self.train)

    def model_folder(self, out: Path) -> Path:
        """Where that model is trained: the run folder itself, or ``ablations/<model_slug>``."""
        return out / "ablations" / self.model_slug if self.train else out


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text)


SYNC = Variant("lbva (sync)")
CORE = (SYNC, Variant("lbva, no video context", infer=(("mode", "sync"), ("video_context", "none"))),
        Variant("zero policy", kind="zero"), Variant("random policy", kind="random"))


@dataclass(frozen=True)
class Ablation:
    """A table of the report: the paper's claim and rows (label, recipe switch, variant)."""

    title: str
    claim: str
    rows: tuple[tuple[str, str, Variant], ...]
    key: str = ""  # what ``--ablations-only`` names it by


def ablations(cfg) -> tuple[Ablation, ...]:
    """The paper's ablations at demo scale; every row is a recipe switch on the demo's main model."""
    from lbva.objectives.sampler import full_denoise_steps

    inf = cfg.inference
    full = full_denoise_steps(inf.video_steps, inf.video_stop_sigma, cfg.objective.video_shift)
    p = cfg.objective.noisy_history_prob
    other = "shared" if cfg.model.layout == "mot" else "mot"
    fdm = cfg.objective.fdm_prob
    fdm_other = 0 if fdm > 0 else 0.5
    fdm_async = Variant("lbva (FDM-grounded async)", infer=(("mode", "fdm_async"),))
    fdm_switch = f"objective.fdm_prob={fdm_other:g}"
    return (
        Ablation("Control mode", "paper: naive async < FDM-grounded async ≈ sync in success, async finishing sooner", (
            ("sync", "inference.mode=sync", SYNC),
            ("naive async", "inference.mode=naive_async", Variant("lbva (naive async)", infer=(("mode", "naive_async"),))),
            ("FDM-grounded async", "inference.mode=fdm_async", fdm_async),
        ), key="control-mode"),
        Ablation("Forward-dynamics training", "paper: FDM-grounded async rests on a model trained with forward-dynamics "
                 "sequences (video chunk c also sees the executed actions of chunk c)", (
            (f"FDM sequences p = {fdm:g}, sync", f"objective.fdm_prob={fdm:g}", SYNC),
            (f"FDM sequences p = {fdm:g}, FDM-grounded async", f"objective.fdm_prob={fdm:g} inference.mode=fdm_async",
             fdm_async),
            (f"p = {fdm_other:g}, sync", fdm_switch,
             Variant(f"lbva, fdm_prob {fdm_other:g}", train=(fdm_switch,))),
            (f"p = {fdm_other:g}, FDM-grounded async", f"{fdm_switch} inference.mode=fdm_async",
             Variant(f"lbva (FDM-grounded async), fdm_prob {fdm_other:g}", train=(fdm_switch,),
                     infer=(("mode", "fdm_async"),))),
        ), key="forward-dynamics"),
        Ablation("Noisy-history augmentation", "paper: training on noisy history makes partial denoising safe", (
            (f"with (p = {p:g})", f"objective.noisy_history_prob={p:g}", SYNC),
            ("without", "objective.noisy_history_prob=0",
             Variant("lbva, no noisy-history augmentation", train=("objective.noisy_history_prob=0",))),
        ), key="noisy-history"),
        Ablation("Video denoising", "paper: stopping video at an intermediate σ keeps success at lower latency", (
            (f"partial: {inf.video_steps} steps to σ = {inf.video_stop_sigma:g}",
             f"inference.video_stop_sigma={inf.video_stop_sigma:g}", SYNC),
            (f"full: {full} steps to σ = 0", f"inference.video_stop_sigma=0 inference.video_steps={full}",
             Variant("lbva (full video denoising)",
                     infer=(("mode", "sync"), ("video_stop_sigma", 0.0), ("video_steps", full)))),
        ), key="video-denoising"),
        Ablation("Action stream", "paper: an asymmetric Mixture-of-Transformers action stream (mot)", (
            (f"{cfg.model.layout}", f"model.layout={cfg.model.layout}", SYNC),
            (other, f"model.layout={other}", Variant(f"lbva, {other} action stream", train=(f"model.layout={other}",))),
        ), key="action-stream"),
    )


ABLATION_KEYS = ("control-mode", "forward-dynamics", "noisy-history", "video-denoising", "action-stream")


def selected_ablations(cfg, which: bool | Sequence[str]) -> tuple[Ablation, ...]:
    """The ablations a run asked for: none (False), all (True) or those named by key (``ABLATION_KEYS``)."""
    if which is True or which is False:
        return ablations(cfg) if which else ()
    unknown = sorted(set(which) - set(ABLATION_KEYS))
    if unknown:
        raise ValueError(f"unknown ablation(s) {unknown}; choose from {list(ABLATION_KEYS)}")
    return tuple(ab for ab in ablations(cfg) if ab.key in set(which))
