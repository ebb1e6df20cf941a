"""Run the LightningModule with ``lightning.Trainer``: data, logger, checkpoints (atomic), resume."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import lightning as L
import torch

from lbva.config import LbvaConfig
from lbva.training.checkpoint_io import AtomicCheckpointIO, atomic_model_parallel_strategy
from lbva.training.sharding import unsharded_copy
from lbva.training.data import ResumableLoader, synthetic_loader
from lbva.training.system import LbvaSystem

logger = logging.getLogger(__name__)

LoaderFactory = Callable[[int, int], torch.utils.data.DataLoader]  # (rank, world) -> loader


def checkpoint_dir(cfg: LbvaConfig) -> Path:
    return Path(cfg.trainer.output_dir) / "checkpoints"


def resolve_resume(cfg: LbvaConfig) -> str | None:
    """``trainer.resume``: None, 'last' (OUTPUT_DIR/checkpoints/last.ckpt when present) or a path.

    A fresh run (no ``resume``) into an ``output_dir`` that already holds checkpoints is refused: Lightning would
    write ``last-v1.ckpt`` beside the old run's ``last.ckpt``, and a later ``--resume last`` would pick the old
    run. Resume it, or give the new run its own ``trainer.output_dir``."""
    r = cfg.trainer.resume
    ckpts = checkpoint_dir(cfg)
    if r is None:
        old = sorted(ckpts.glob("*.ckpt")) if ckpts.is_dir() else []
        if old:
            raise FileExistsError(
                f"trainer.output_dir={cfg.trainer.output_dir!r} already holds a run's checkpoints ({old[-1].name}, "
                f"{len(old)} in all). Continue it with `--resume last` (trainer.resume=last), or start a new run "
                "with another trainer.output_dir; nothing was overwritten."
            )
        return None
    if r == "last":
        last = ckpts / "last.ckpt"
        if last.exists():
            return str(last)
        logger.info("trainer.resume=last but %s does not exist yet: starting fresh", last)
        return None
    if not Path(r).exists():  # a file, or a folder of shards under FSDP
        raise FileNotFoundError(f"trainer.resume={r!r} does not exist; give a .ckpt path or 'last'")
    return r


class _TrainData(L.LightningDataModule):
    """Builds the training loader once the Trainer knows rank and world size, wrapped to resume exactly."""

    def __init__(self, cfg: LbvaConfig, system: LbvaSystem, factory: LoaderFactory | None, val_loader=None):
        super().__init__()
        self.cfg, self.system, self.factory, self.val_loader = cfg, system, factory, val_loader

    def train_dataloader(self):
        rank, world = self.trainer.global_rank, self.trainer.world_size
        if self.factory is not None:
            loader = self.factory(rank, world)
        elif self.cfg.trainer.synthetic_batches:
            loader = synthetic_loader(self.cfg, self.system.model, self.cfg.trainer.synthetic_batches)
        else:
            from lbva.data.datamodule import LatentDataModule

            dm = LatentDataModule.from_config(self.cfg, rank=rank, world_size=world)
            dm.setup("fit")
            if self.system.null_text is None:
                self.system.null_text = dm.empty_text().float()
            loader = dm.train_dataloader()
        wrapped = ResumableLoader(loader)
        self.system.resumable_loader = wrapped
        return wrapped

    def val_dataloader(self):
        return self.val_loader if self.val_loader is not None else []


class StepProgress(L.Callback):
    """A tqdm bar over optimizer steps (``global_step / max_steps``) with the loss, on rank 0.

    Lightning's own bar counts batches per epoch, which says little when training is step-bound over a small
    dataset (hundreds of short "epochs"); this one shows how far the run is and how long is left, also when the
    output is a log file rather than a terminal."""

    def __init__(self, total: int):
        self.total, self.bar = int(total), None

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=trainer.global_step, desc="train", unit="step",
                            dynamic_ncols=True, mininterval=1.0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.bar is not None:
            self.bar.update(trainer.global_step - self.bar.n)
            loss = trainer.callback_metrics.get("loss")
            if loss is not None:
                self.bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def build_trainer(cfg: LbvaConfig, callbacks=(), has_val: bool = False, **overrides) -> L.Trainer:
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    t = cfg.trainer
    strategy: object = t.strategy
    if t.strategy in ("ddp", "auto") and t.devices * t.num_nodes > 1:
        # a step need not reach every parameter (the shared layout's action embedder carries the release's unused
        # text projection), which plain DDP refuses
        strategy = "ddp_find_unused_parameters_true"
    elif t.strategy == "fsdp":  # FSDP2 per block (LbvaSystem.configure_model); checkpoints are folders of shards
        strategy = atomic_model_parallel_strategy(data_parallel_size=t.num_nodes * t.devices, tensor_parallel_size=1)
    # one run per output_dir (resolve_resume refuses a second), so no -v1 siblings: last.ckpt is always this run's
    ckpt = ModelCheckpoint(dirpath=str(checkpoint_dir(cfg)), filename="step-{step:07d}",
                           every_n_train_steps=t.checkpoint_every_n_steps, save_last=True, save_top_k=-1,
                           auto_insert_metric_name=False, enable_version_counter=False)
    kwargs = dict(
        max_steps=t.max_steps, max_epochs=-1, precision=t.precision, accelerator=t.accelerator, devices=t.devices,
        num_nodes=t.num_nodes, strategy=strategy, gradient_clip_val=t.grad_clip or None,
        accumulate_grad_batches=t.accumulate_grad_batches, log_every_n_steps=t.log_every_n_steps,
        logger=TensorBoardLogger(t.output_dir, name="tb"),
        callbacks=[ckpt, LearningRateMonitor("step"), *([StepProgress(t.max_steps)] if t.progress_bar else []),
                   *callbacks],
        enable_progress_bar=False, enable_model_summary=t.progress_bar, use_distributed_sampler=False, default_root_dir=t.output_dir,
        val_check_interval=t.val_every_n_steps if (has_val and t.val_every_n_steps) else None,
        check_val_every_n_epoch=None if (has_val and t.val_every_n_steps) else 1,
        limit_val_batches=None if has_val else 0, num_sanity_val_steps=0,
    )
    if t.strategy != "fsdp":
        kwargs["plugins"] = [AtomicCheckpointIO()]
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def policy_dir(cfg: LbvaConfig) -> Path:
    return Path(cfg.trainer.output_dir) / "policy"


def fit(cfg: LbvaConfig, model: torch.nn.Module | None = None, loader_factory: LoaderFactory | None = None,
        val_loader=None, null_text: torch.Tensor | None = None, decoder=None, callbacks=(), export: bool = True,
        **trainer_overrides):
    """Train ``cfg`` with ``lightning.Trainer``; returns ``(trainer, system)``.

    The model's input widths follow the run's latent cache (:func:`lbva.training.export.widths_from_cache`).
    When training finishes, rank 0 writes the policy folder ``<output_dir>/policy`` (EMA weights when the run
    keeps them) through :func:`lbva.training.export.export_policy`; ``export=False`` skips it (a caller that
    exports itself, or a custom ``loader_factory`` without a cache)."""
    from lbva.training.export import export_policy, widths_from_cache

    if loader_factory is None and model is None:
        cfg = widths_from_cache(cfg)
    resume = resolve_resume(cfg)
    L.seed_everything(cfg.trainer.seed, workers=True)
    system = LbvaSystem(cfg, model=model, null_text=null_text, decoder=decoder)
    data = _TrainData(cfg, system, loader_factory, val_loader)
    trainer = build_trainer(cfg, callbacks, has_val=val_loader is not None, **trainer_overrides)
    trainer.fit(system, datamodule=data, ckpt_path=resume)
    if export and not hasattr(system.model, "save_pretrained"):
        logger.info("no policy folder: the trained %s is not an lbva model", type(system.model).__name__)
    elif export:  # under FSDP every rank takes part in gathering the weights; rank 0 writes
        weights = unsharded_copy(system.export_model(), system.cfg.model, trainer.global_rank)
        if trainer.is_global_zero:
            out = export_policy(policy_dir(cfg), weights, system.cfg)
            logger.info("policy folder (%s weights): %s", "EMA" if system.ema is not None else "trained", out)
    return trainer, system
