"""The step of :class:`~lbva.training.system.LbvaSystem` in a Lightning Fabric loop.

For multi-node jobs and FSDP (see docs/training.md for ``fabric run`` / torchrun / SLURM). The loop calls the
system's engine-neutral pieces — :meth:`~LbvaSystem.step_loss`, :meth:`~LbvaSystem.step_metrics`,
:meth:`~LbvaSystem.optimizer_metrics`, :meth:`~LbvaSystem.update_ema`, :meth:`~LbvaSystem.log_sample`,
:meth:`~LbvaSystem.validation_update` / :meth:`~LbvaSystem.validation_metrics` — so it computes the losses of
``lightning.Trainer`` with the same seed and writes the same TensorBoard scalars (``OUTPUT_DIR/tb``). Each rank
loads its own shard of the global batch (the latent cache's batch sampler shards by rank), so no distributed
sampler is injected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from lbva.atomic_io import recover
from lbva.config import LbvaConfig, to_dict
from lbva.training.checkpoint_io import AtomicCheckpointIO, save_sharded
from lbva.training.optim import build_optimizer, start_missing_state
from lbva.training.sharding import is_sharded, shard_model, unsharded_copy
from lbva.training.system import LbvaSystem, rng_states, set_rng_states

logger = logging.getLogger(__name__)


@dataclass
class FabricResult:
    losses: list[float] = field(default_factory=list)  # global mean loss per optimizer step
    model: torch.nn.Module | None = None
    ema: torch.nn.Module | None = None  # the averaged weights when trainer.ema_decay is set


def close_distributed() -> None:
    """End this process's default process group, if a run started one. A process that exits while the group's
    gloo/NCCL threads still run can abort after a finished run ("terminate called without an active exception",
    SIGABRT, a failed exit status for a good run)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def make_fabric(cfg: LbvaConfig, strategy: str | None = None):
    """A Fabric for the recipe's hardware and strategy, logging to TensorBoard under ``OUTPUT_DIR/tb``."""
    import lightning as L
    from lightning.fabric.loggers import TensorBoardLogger

    t = cfg.trainer
    strat: object = strategy or t.strategy
    plugins = [AtomicCheckpointIO()]
    if strat in ("ddp", "auto") and t.devices * t.num_nodes > 1:
        # a step need not reach every parameter (the shared layout's action embedder carries the release's unused
        # text projection), which plain DDP refuses
        strat = "ddp_find_unused_parameters_true"
    elif strat == "fsdp":  # FSDP2 per block; its checkpoints are folders of per-rank shards (torch.distributed.checkpoint)
        from lightning.fabric.strategies import ModelParallelStrategy

        from lbva.training.sharding import parallelize_fn

        strat = ModelParallelStrategy(parallelize_fn(t.precision), data_parallel_size=t.num_nodes * t.devices,
                                      tensor_parallel_size=1)
        plugins = None
    return L.Fabric(accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=strat,
                    precision=t.precision, plugins=plugins, loggers=TensorBoardLogger(t.output_dir, name="tb"))


def _default_loader(cfg: LbvaConfig, model, rank: int, world: int):
    if cfg.trainer.synthetic_batches:
        from lbva.training.data import synthetic_loader

        return synthetic_loader(cfg, model, cfg.trainer.synthetic_batches), None
    from lbva.data.datamodule import LatentDataModule

    dm = LatentDataModule.from_config(cfg, rank=rank, world_size=world)
    dm.setup("fit")
    return dm.train_dataloader(), dm.empty_text().float()


class _Batches:
    """This rank's batches across epochs, counting those consumed in the current one (for exact resume)."""

    def __init__(self, loader, epoch: int = 0, consumed: int = 0):
        self.loader, self.epoch, self.consumed = loader, epoch, consumed
        self._it = self._epoch_iter(skip=consumed)

    def _epoch_iter(self, skip: int):
        for obj in (getattr(self.loader, "sampler", None),
                    getattr(getattr(self.loader, "batch_sampler", None), "sampler", None)):
            if obj is not None and callable(getattr(obj, "set_epoch", None)):
                obj.set_epoch(self.epoch)
        it = iter(self.loader)
        for _ in range(skip):
            next(it)
        return it

    def next(self):
        try:
            batch = next(self._it)
        except StopIteration:
            self.epoch, self.consumed = self.epoch + 1, 0
            self._it = self._epoch_iter(skip=0)
            batch = next(self._it)
        self.consumed += 1
        return batch


class FabricLoop:
    """The loop's steps: :meth:`resume`, :meth:`train_step` (forward/backward over the micro-batches, clipping,
    optimizer, schedule, EMA), :meth:`log`, :meth:`validate`, :meth:`save`; :meth:`run` strings them together."""

    def __init__(self, cfg: LbvaConfig, fabric, system: LbvaSystem, loader, val_loader=None):
        self.cfg, self.fabric, self.system = cfg, fabric, system
        t = cfg.trainer
        self.model = fabric.setup(system.model)
        opt, self.sched = build_optimizer(system.model, t)  # after setup: FSDP replaces the parameters with shards
        self.opt = fabric.setup_optimizers(opt)
        if system.ema is not None and is_sharded(system.model):  # the average sharded like the weights it follows
            shard_model(system.ema.module, fabric.strategy.device_mesh["data_parallel"], t.precision)
        self.val_loader = fabric.setup_dataloaders(val_loader, use_distributed_sampler=False) if val_loader else None
        self.batches = _Batches(loader)
        self.step = 0
        self.ckpt_path = Path(t.output_dir) / "checkpoints" / "last-fabric.ckpt"

    def _state(self) -> dict:
        # the system holds the model and its EMA: one module, as a sharded checkpoint allows only one
        return {"model": self.system, "optimizer": self.opt, "step": self.step, "epoch": self.batches.epoch,
                "consumed": self.batches.consumed}

    def resume(self, resume: str | None) -> None:
        """Continue from ``resume`` ('last' = this run's last checkpoint when there is one, or a path)."""
        if resume is None:
            return
        path = self.ckpt_path if resume == "last" else Path(resume)
        if self.fabric.global_rank == 0:
            recover(path)  # a save caught between its two renames
        self.fabric.barrier()
        if not path.exists():  # a file, or a folder of shards under FSDP
            if resume != "last":
                raise FileNotFoundError(f"trainer.resume={resume!r} does not exist; give a checkpoint path or 'last'")
            return
        state = self._state()
        rest = self.fabric.load(path, state)
        self.sched.load_state_dict(rest["scheduler"])
        set_rng_states(rest["rng"])
        self.step = state["step"]
        self.batches = _Batches(self.batches.loader, state["epoch"], state["consumed"])

    def train_step(self) -> tuple[float, dict]:
        """One optimizer step; returns the loss averaged over micro-batches and ranks, and the step's metrics."""
        fabric, system, t = self.fabric, self.system, self.cfg.trainer
        acc, rank, world = t.accumulate_grad_batches, fabric.global_rank, fabric.world_size
        total, metrics = 0.0, {}
        for micro in range(acc):
            batch = fabric.to_device(self.batches.next())
            if system.should_sample(self.step, micro, rank) and fabric.logger is not None:
                system.log_sample(batch, fabric.logger.experiment, self.step)
            with fabric.no_backward_sync(self.model, enabled=micro < acc - 1):
                out = system.step_loss(batch, self.step, micro, rank, world, model=self.model)
                fabric.backward(out.loss / acc)
            metrics.update(system.step_metrics(out, world))
            total += float(out.loss.detach()) / acc
        metrics.update(system.optimizer_metrics(self.opt))
        if t.grad_clip:
            fabric.clip_gradients(self.model, self.opt, max_norm=t.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.sched.step()
        system.update_ema()
        loss = fabric.all_reduce(torch.tensor(total, device=fabric.device), reduce_op="mean")
        return float(loss), metrics

    def validate(self) -> dict:
        """The validation metrics over the whole validation loader (every rank its own batches)."""
        for i, batch in enumerate(self.val_loader):
            self.system.validation_update(batch, i)
        return self.system.validation_metrics()

    def log(self, metrics: dict, step: int) -> None:
        self.fabric.log_dict(metrics, step=step)

    def save(self) -> None:
        if is_sharded(self.system.model):
            start_missing_state(self.opt.optimizer)
        state = self._state()
        state.update(scheduler=self.sched.state_dict(), rng=rng_states(), config=to_dict(self.cfg))
        if is_sharded(self.system.model):  # a folder of per-rank shards: written beside, then swapped in
            save_sharded(self.fabric, self.ckpt_path, state)
        else:  # one file, through AtomicCheckpointIO
            self.fabric.save(self.ckpt_path, state)

    def run(self) -> list[float]:
        t = self.cfg.trainer
        steps = range(self.step, t.max_steps)
        if t.progress_bar and self.fabric.global_rank == 0:
            from tqdm.auto import tqdm

            steps = tqdm(steps, initial=self.step, total=t.max_steps, desc="train")
        losses = []
        self.model.train()
        for step in steps:
            self.step = step
            loss, metrics = self.train_step()
            losses.append(loss)
            if hasattr(steps, "set_postfix"):
                steps.set_postfix(loss=f"{loss:.4f}")
            self.step = done = step + 1
            # lightning.Trainer's cadence and step numbers: a step's scalars, and the validation after it, at its index
            if done % t.log_every_n_steps == 0:
                self.log(metrics, step)
            if self.val_loader is not None and t.val_every_n_steps and done % t.val_every_n_steps == 0:
                self.log(self.validate(), step)
            if done % t.checkpoint_every_n_steps == 0 or done == t.max_steps:
                self.save()
        return losses


def fabric_train(cfg: LbvaConfig, model: torch.nn.Module | None = None,
                 loader_factory: Callable[[int, int], object] | None = None, fabric=None,
                 strategy: str | None = None, null_text: torch.Tensor | None = None, val_loader=None,
                 decoder=None, export: bool = True) -> FabricResult:
    """Train with Fabric. ``loader_factory(rank, world)`` gives this rank's loader (default: the recipe's data);
    ``val_loader`` and ``decoder`` are those of :func:`lbva.training.fit.fit`.

    Call it inside the launched processes (``fabric run``, torchrun, SLURM, or ``fabric.launch(fn)``). Like
    :func:`lbva.training.fit.fit`, rank 0 writes ``<output_dir>/policy`` at the end (``export=False`` skips it).
    """
    from lbva.training.export import export_policy, widths_from_cache

    if loader_factory is None and model is None:
        cfg = widths_from_cache(cfg)
    t = cfg.trainer
    fabric = fabric or make_fabric(cfg, strategy)
    if not getattr(fabric, "_launched", False):
        fabric.launch()
    fabric.seed_everything(t.seed)
    system = LbvaSystem(cfg, model=model, null_text=null_text, decoder=decoder)
    rank, world = fabric.global_rank, fabric.world_size
    if loader_factory is not None:
        loader = loader_factory(rank, world)
    else:
        loader, nt = _default_loader(cfg, system.model, rank, world)
        if system.null_text is None and nt is not None:
            system.null_text = nt
    loop = FabricLoop(cfg, fabric, system, loader, val_loader)
    system.to(fabric.device)
    loop.resume(t.resume)
    result = FabricResult(losses=loop.run(), model=loop.model, ema=system.ema)
    if export and loader_factory is None:
        weights = unsharded_copy(system.export_model(), cfg.model, fabric.global_rank)  # a collective under FSDP
        if fabric.global_rank == 0:
            export_policy(Path(t.output_dir) / "policy", weights, cfg)
    return result
