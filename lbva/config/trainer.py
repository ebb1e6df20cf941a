"""Trainer section: optimiser, schedule, precision, steps, logging, checkpoints, engine and scale-out."""

from __future__ import annotations

from dataclasses import dataclass

from lbva.config.base import bounded, choice, documented


@dataclass
class TrainerConfig:
    engine: str = choice("trainer", "trainer", "fabric", doc="lightning.Trainer or the Fabric loop")
    max_steps: int = bounded(1000, 1, None, doc="optimizer steps")
    lr: float = bounded(1e-4, 0.0, None, doc="peak learning rate (AdamW)")
    betas: list[float] = documented(factory=lambda: [0.9, 0.999], doc="AdamW betas")
    weight_decay: float = bounded(0.01, 0.0, None, doc="AdamW weight decay (on weight_decay_params)")
    weight_decay_params: str = choice("matrices", "matrices", "all",
                                      doc="matrices: not norms/biases/tables; all: every parameter (the release's)")
    warmup_steps: int = bounded(100, 0, None, doc="linear warm-up from 0 to lr")
    warmup_start: str = choice("one_step", "one_step", "zero",
                               doc="one_step: step s runs at (s+1)/warmup·lr; zero: at s/warmup·lr, the first step at "
                                   "lr 0 (the release's)")
    schedule: str = choice("cosine", "cosine", "constant", doc="after warm-up")
    min_lr_ratio: float = bounded(0.0, 0.0, 1.0, doc="cosine ends at lr·min_lr_ratio")
    grad_clip: float = bounded(2.0, 0.0, None, doc="clip the global grad norm (0 = off)")
    precision: str = choice("32-true", "32-true", "bf16-mixed", "16-mixed", "bf16-true")
    accumulate_grad_batches: int = bounded(1, 1, None)
    ema_decay: float | None = documented(None, doc="keep an exponential moving average of the weights (e.g. 0.999)")
    seed: int = 0
    output_dir: str = documented("runs/default", doc="checkpoints and TensorBoard logs go here")

    # -- hardware / scale-out ----------------------------------------------------------------------------------
    accelerator: str = choice("auto", "auto", "cpu", "gpu", "cuda", "mps")
    devices: int = bounded(1, 1, None, doc="processes per node")
    num_nodes: int = bounded(1, 1, None)
    strategy: str = choice("auto", "auto", "ddp", "fsdp", doc="auto = single device or DDP")

    # -- logging / checkpoints ---------------------------------------------------------------------------------
    log_every_n_steps: int = bounded(10, 1, None)
    sample_every_n_steps: int = bounded(0, 0, None, doc="log a sampled chunk (video + action plot); 0 = never")
    checkpoint_every_n_steps: int = bounded(500, 1, None)
    val_every_n_steps: int = bounded(0, 0, None, doc="run validation (needs a val dataloader); 0 = never")
    progress_bar: bool = True
    resume: str | None = documented(None, doc="checkpoint path to resume from, or 'last' (OUTPUT_DIR/checkpoints/last.ckpt)")
    synthetic_batches: int = bounded(0, 0, None, doc="train on this many fixed synthetic batches instead of data (smoke tests)")
