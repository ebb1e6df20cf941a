"""The training step of :class:`~lbva.training.system.LbvaSystem` in a Lightning Fabric loop.

For multi-node jobs and FSDP: the same objective, optimiser, schedule, clipping and per-sample noise as
the Trainer path, written as a plain loop (see docs/training.md for ``fabric run`` / torchrun / SLURM).
Each rank loads its own shard of the global batch (the latent cache's batch sampler shards by rank), so
no distributed sampler is injected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from lbva.config import LbvaConfig, to_dict
from lbva.objectives import FlowMatchingObjective
from lbva.training.checkpoint_io import AtomicCheckpointIO
from lbva.training.optim import build_optimizer
from lbva.training.system import rng_states, set_rng_states, step_generators

logger = logging.getLogger(__name__)


@dataclass
class FabricResult:
    losses: list[float] = field(default_factory=list)  # global mean loss per optimizer step
    model: torch.nn.Module | None = None


def make_fabric(cfg: LbvaConfig, strategy: str | None = None):
    import lightning as L

    t = cfg.trainer
    strat: object = strategy or t.strategy
    if strat == "fsdp":
        from lightning.fabric.strategies import FSDPStrategy

        strat = FSDPStrategy(checkpoint_io=AtomicCheckpointIO())
        plugins = None
    else:
        plugins = [AtomicCheckpointIO()]
    return L.Fabric(accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=strat,
                    precision=t.precision, plugins=plugins)


def _default_loader(cfg: LbvaConfig, model, rank: int, world: int):
    if cfg.trainer.synthetic_batches:
        from lbva.training.data import synthetic_loader

        return synthetic_loader(cfg, model, cfg.trainer.synthetic_batches), None
    from lbva.data.datamodule import LatentDataModule

    dm = LatentDataModule.from_config(cfg, rank=rank, world_size=world)
    dm.setup("fit")
    return dm.train_dataloader(), dm.empty_text().float()


def fabric_train(cfg: LbvaConfig, model: torch.nn.Module | None = None,
                 loader_factory: Callable[[int, int], object] | None = None, fabric=None,
                 strategy: str | None = None, null_text: torch.Tensor | None = None, export: bool = True) -> FabricResult:
    """Train with Fabric. ``loader_factory(rank, world)`` gives this rank's loader (default: the recipe's data).

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
    if model is None:
        from lbva.training.system import build_training_model

        model = build_training_model(cfg)
    opt, sched = build_optimizer(model, t)
    model, opt = fabric.setup(model, opt)
    rank, world = fabric.global_rank, fabric.world_size
    if loader_factory is not None:
        loader = loader_factory(rank, world)
    else:
        loader, nt = _default_loader(cfg, model, rank, world)
        null_text = null_text if null_text is not None else nt
    objective = FlowMatchingObjective(cfg.objective, null_text)

    ckpt_dir = Path(t.output_dir) / "checkpoints"
    state = {"model": model, "optimizer": opt, "step": 0, "epoch": 0, "consumed": 0}
    start = 0
    if t.resume is not None:
        path = ckpt_dir / "last-fabric.ckpt" if t.resume == "last" else Path(t.resume)
        if path.is_file():
            rest = fabric.load(path, state)
            sched.load_state_dict(rest["scheduler"])
            set_rng_states(rest["rng"])
            start = state["step"]
        elif t.resume != "last":
            raise FileNotFoundError(f"trainer.resume={t.resume!r} is not a file; give a checkpoint path or 'last'")

    epoch, consumed = state["epoch"], state["consumed"]
    batches = _epoch_iter(loader, epoch, consumed)
    result = FabricResult()
    acc = t.accumulate_grad_batches
    iterator = range(start, t.max_steps)
    if t.progress_bar and rank == 0:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, initial=start, total=t.max_steps, desc="train")
    model.train()
    for step in iterator:
        total = 0.0
        for micro in range(acc):
            try:
                batch = next(batches)
            except StopIteration:
                epoch, consumed = epoch + 1, 0
                batches = _epoch_iter(loader, epoch, 0)
                batch = next(batches)
            consumed += 1
            batch = fabric.to_device(batch)
            B = batch["video"].shape[0]
            gens = step_generators(t.seed, step, micro, acc, rank, world, B, fabric.device)
            with fabric.no_backward_sync(model, enabled=micro < acc - 1):
                out = objective(model, batch, gens)
                fabric.backward(out.loss / acc)
            total += float(out.loss.detach()) / acc
        if t.grad_clip:
            fabric.clip_gradients(model, opt, max_norm=t.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        loss = fabric.all_reduce(torch.tensor(total, device=fabric.device), reduce_op="mean")
        result.losses.append(float(loss))
        if hasattr(iterator, "set_postfix"):
            iterator.set_postfix(loss=f"{float(loss):.4f}")
        done = step + 1
        if done % t.checkpoint_every_n_steps == 0 or done == t.max_steps:
            state.update(step=done, epoch=epoch, consumed=consumed, scheduler=sched.state_dict(), rng=rng_states(),
                         config=to_dict(cfg))
            fabric.save(ckpt_dir / "last-fabric.ckpt", state)
    result.model = model
    if export and loader_factory is None and fabric.global_rank == 0:
        export_policy(Path(t.output_dir) / "policy", getattr(model, "module", model), cfg)
    return result


def _epoch_iter(loader, epoch: int, skip: int):
    for obj in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if obj is not None and callable(getattr(obj, "set_epoch", None)):
            obj.set_epoch(epoch)
    it = iter(loader)
    for _ in range(skip):
        next(it)
    return it
