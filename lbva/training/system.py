"""The one LightningModule: a LingBot-VA network trained with the flow-matching objective.

Axis legend: B batch, C latent channels, F latent frames, H, W latent height/width, N actions per frame,
A action dim, K frames of a chunk.

Everything comes from one :class:`~lbva.config.LbvaConfig`: the network (``model``), the objective
(``objective``), optimiser/schedule/precision/logging (``trainer``), the sampler for logged samples and
validation (``inference``). The randomness of a step is a function of (seed, global sample index), so a
resumed run and a run split over more processes draw the same noise; global RNG states ride in the
checkpoint for everything else (dropout).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import lightning as L
import numpy as np
import torch

from lbva.config import LbvaConfig, to_dict
from lbva.objectives import FlowMatchingObjective, SamplerConfig, sample_chunk
from lbva.objectives.losses import sample_generators
from lbva.training.metrics import ActionChannelError, VideoLatentError
from lbva.training.optim import build_optimizer, start_missing_state
from lbva.training.sharding import is_sharded, reshard, shard_model

logger = logging.getLogger(__name__)


def rng_states() -> dict[str, Any]:
    """Global RNG states as tensors and plain Python values (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_generators(seed: int, step: int, micro: int, accumulate: int, rank: int, world: int, batch: int,
                    device) -> list[torch.Generator]:
    """Per-sample generators for micro-batch ``micro`` of optimizer step ``step`` on ``rank``."""
    first = ((step * accumulate + micro) * world + rank) * batch
    return sample_generators(seed, first, batch, device)


class ResumeMismatchError(ValueError):
    """A resumed checkpoint that was written with settings this run does not have."""


def param_dtype(precision: str) -> torch.dtype:
    """The dtype parameters are kept in for a Lightning precision: bf16/fp16 only for the ``-true`` modes."""
    return {"bf16-true": torch.bfloat16, "16-true": torch.float16}.get(precision, torch.float32)


def build_training_model(cfg: LbvaConfig) -> torch.nn.Module:
    """``build_model(cfg.model)``, or the weights of ``cfg.model.init_from`` — any checkpoint
    :func:`lbva.models.checkpoints.load_pretrained` reads (a released LingBot-VA checkpoint, a LeRobot
    ``lingbot_va`` folder, a diffusers Wan2.2 folder, an lbva policy or model folder) — with the recipe's run-time
    settings (kernel, activation checkpointing) and its architecture checked against the checkpoint."""
    from lbva.models import build_model

    if cfg.model.init_from:
        from lbva.models.checkpoints import CheckpointError, checkpoint_kind, load_pretrained

        try:
            kind, folder = checkpoint_kind(cfg.model.init_from)
        except CheckpointError as e:
            raise CheckpointError(f"model.init_from={cfg.model.init_from!r}: {e}") from e
        logger.info("initialising from %s (%s)", folder, kind)
        return load_pretrained(folder, cfg.model, dtype=param_dtype(cfg.trainer.precision))
    return build_model(cfg.model)


class LbvaSystem(L.LightningModule):
    """``LbvaSystem(cfg, model=None, null_text=None, decoder=None)``.

    ``model`` defaults to ``lbva.models.build_model(cfg.model)``; ``null_text`` (Lt, Dt) is the empty-prompt
    embedding used by text dropout and CFG (zeros when None); ``decoder(latents) -> uint8 frames`` turns
    logged samples into pictures.
    """

    def __init__(self, cfg: LbvaConfig, model: torch.nn.Module | None = None, null_text: torch.Tensor | None = None,
                 decoder=None):
        super().__init__()
        self.cfg = cfg
        self.save_hyperparameters({"config": to_dict(cfg)})
        self.model = model if model is not None else build_training_model(cfg)
        self.register_buffer("null_text", null_text, persistent=False)
        self.objective = FlowMatchingObjective(cfg.objective, None)
        self.sampler_config = SamplerConfig.from_config(cfg)
        self.decoder = decoder
        self.ema = None
        if cfg.trainer.ema_decay is not None:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.trainer.ema_decay),
                                     use_buffers=True)
            self.ema.requires_grad_(False)  # averaged, never trained (DDP would wait for its gradients)
        self.val_action_error = ActionChannelError(cfg.model.action_dim)
        self.val_video_error = VideoLatentError()
        self.resumable_loader = None  # set by the launcher: counts consumed batches for exact resume
        self._last_time: float | None = None

    def export_model(self) -> torch.nn.Module:
        """The weights a policy folder should carry: the EMA average when the run keeps one, else the model."""
        return self.ema.module if self.ema is not None else self.model

    # -- the step: engine-neutral pieces that lightning.Trainer (the hooks below) and the Fabric loop
    # (lbva.training.fabric) both call, so the two engines compute, average and log the same things -----------------
    def forward(self, **kwargs):
        return self.model(**kwargs)

    def step_loss(self, batch: dict, step: int, micro: int, rank: int, world: int, model=None):
        """The objective on micro-batch ``micro`` of optimizer step ``step``, its noise a function of the global
        sample index. ``model``: the engine's wrapper of :attr:`model` (DDP and FSDP act through its forward)."""
        tcfg = self.cfg.trainer
        gens = step_generators(tcfg.seed, step, micro, tcfg.accumulate_grad_batches, rank, world,
                               batch["video"].shape[0], batch["video"].device)
        self.objective.null_text = self.null_text
        return self.objective(self.model if model is None else model, batch, gens)

    def step_metrics(self, out, world: int) -> dict[str, Any]:
        """``train/<term>`` for every loss term, and ``train/tokens_per_s`` from the second step on."""
        metrics: dict[str, Any] = {f"train/{k}": v for k, v in out.terms.items()}
        now = time.perf_counter()
        if self._last_time is not None and now > self._last_time:
            metrics["train/tokens_per_s"] = out.num_tokens * world / (now - self._last_time)
        self._last_time = now
        return metrics

    def optimizer_metrics(self, optimizer) -> dict[str, Any]:
        """``train/grad_norm`` (before clipping) and ``train/lr``, read just before the optimizer steps."""
        metrics: dict[str, Any] = {}
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if grads:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
            metrics["train/grad_norm"] = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # sharded: whole
        metrics["train/lr"] = optimizer.param_groups[0]["lr"]
        return metrics

    def update_ema(self) -> None:
        """Fold the weights into the EMA; call right after each optimizer step (before a checkpoint is written)."""
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def should_sample(self, step: int, micro: int, rank: int) -> bool:
        """Rank 0 samples (and writes); under FSDP every rank runs the sampler, whose forwards gather parameters."""
        every = self.cfg.trainer.sample_every_n_steps
        return bool(every) and step % every == 0 and micro == 0 and (rank == 0 or is_sharded(self.model))

    # -- lightning.Trainer hooks ------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        acc = self.cfg.trainer.accumulate_grad_batches
        world = self.trainer.world_size if self._trainer is not None else 1
        out = self.step_loss(batch, self.global_step, batch_idx % acc, self.global_rank, world)
        if self.resumable_loader is not None:
            self.resumable_loader.mark_consumed(batch_idx + 1)
        B = batch["video"].shape[0]
        self.log_dict(self.step_metrics(out, world), on_step=True, batch_size=B)
        self.log("loss", out.terms["loss"], prog_bar=True, on_step=True, logger=False, batch_size=B)
        if self.should_sample(self.global_step, batch_idx % acc, self.global_rank) and self.logger is not None:
            self.log_sample(batch, self.logger.experiment, self.global_step)
        return out.loss

    def on_before_optimizer_step(self, optimizer) -> None:
        self.log_dict(self.optimizer_metrics(optimizer), on_step=True)

    def optimizer_step(self, epoch, batch_idx, optimizer, *args, **kwargs) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, *args, **kwargs)
        # here, not in on_train_batch_end: callbacks (the checkpoint among them) run before the module's batch-end
        # hook, so a checkpoint would hold the average one step behind the weights it was saved with
        self.update_ema()
        if is_sharded(self.model):
            start_missing_state(optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer)

    def configure_model(self) -> None:
        """Under ``ModelParallelStrategy`` (``trainer.strategy=fsdp``): FSDP2 per block
        (:func:`lbva.training.sharding.shard_model`), the EMA sharded like the weights it follows."""
        if self.device_mesh is None or is_sharded(self.model):
            return
        mesh, precision = self.device_mesh["data_parallel"], self.cfg.trainer.precision
        shard_model(self.model, mesh, precision)
        if self.ema is not None:
            shard_model(self.ema.module, mesh, precision)

    def configure_optimizers(self):
        opt, sched = build_optimizer(self.model, self.cfg.trainer)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    # -- checkpoints -----------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lbva_rng"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # a sharded checkpoint's weights were loaded already (strictly: a missing or extra EMA fails there)
        has_ema = any(k.startswith("ema.") for k in checkpoint.get("state_dict", {}))
        if "state_dict" in checkpoint and has_ema != (self.ema is not None):
            raise ResumeMismatchError(
                f"the checkpoint being resumed {'keeps' if has_ema else 'does not keep'} an EMA of the weights but "
                f"this run has trainer.ema_decay={self.cfg.trainer.ema_decay}; resume with the run's own settings "
                f"(trainer.ema_decay={'<the value it used>' if has_ema else 'null'}) or start a new trainer.output_dir"
            )
        if "lbva_rng" in checkpoint:
            set_rng_states(checkpoint["lbva_rng"])

    # -- sampling: logged samples and validation -----------------------------------------------------------------
    def sample_last_chunk(self, batch: dict, generator: torch.Generator | None = None, model=None):
        """Sample the batch's last chunk from its history; returns (video, actions, true video, true actions, mask)."""
        model = model or (self.ema.module if self.ema is not None else self.model)
        video, actions, mask = batch["video"], batch["actions"], batch["action_mask"]
        K = int(batch["chunk_size"])
        F = video.shape[2]
        Fh = (F - 1) // K * K  # whole chunks of history, at least one frame left to generate
        B, C, _, H, W = video.shape
        used = mask.any(dim=(0, 1, 2))
        was_training = model.training
        model.eval()
        try:
            pv, pa = sample_chunk(
                model, batch["text"], K, (C, H, W), actions.shape[2], actions.shape[3],
                history_video=video[:, :, :Fh], history_actions=actions[:, :Fh], null_text=self.null_text,
                used_mask=used, config=self.sampler_config, generator=generator,
            )
        finally:
            model.train(was_training)
            reshard(model)  # under FSDP: the root unit back to its shards (no backward follows to do it)
        n = min(K, F - Fh)
        return pv[:, :, :n], pa[:, :n], video[:, :, Fh:Fh + n], actions[:, Fh:Fh + n], mask[:, Fh:Fh + n]

    def log_sample(self, batch: dict, experiment, step: int) -> None:
        """Sample the first sequence's last chunk and write it to ``experiment`` (a TensorBoard ``SummaryWriter``;
        anything without ``add_figure`` is skipped) at ``step``."""
        if not hasattr(experiment, "add_figure"):
            return
        from lbva.training.visuals import action_figure, side_by_side_video

        one = {k: (v[:1] if torch.is_tensor(v) else v) for k, v in batch.items()}
        g = torch.Generator(device=batch["video"].device).manual_seed(self.cfg.inference.seed)
        pv, pa, tv, ta, m = self.sample_last_chunk(one, g)
        import matplotlib.pyplot as plt

        fig = action_figure(pa[0], ta[0], m[0].any(dim=(0, 1)))
        experiment.add_figure("sample/actions", fig, global_step=step)
        plt.close(fig)
        frames = side_by_side_video(pv, tv, self.decoder)  # (1, T, 3, H, 2W) uint8
        try:
            import moviepy  # noqa: F401  (TensorBoard's add_video needs it)

            experiment.add_video("sample/video_sampled_vs_real", frames, global_step=step, fps=4)
        except ImportError:  # without moviepy: the frames as an image strip, sampled left, real right
            experiment.add_images("sample/video_sampled_vs_real", frames[0], global_step=step,
                                  dataformats="NCHW")

    def validation_update(self, batch: dict, batch_idx: int) -> None:
        """Sample the batch's last chunk and add its errors to the validation metrics."""
        g = torch.Generator(device=batch["video"].device).manual_seed(self.cfg.inference.seed + batch_idx)
        pv, pa, tv, ta, m = self.sample_last_chunk(batch, g)
        self.val_action_error.update(pa, ta, m)
        self.val_video_error.update(pv, tv)

    def validation_metrics(self) -> dict[str, torch.Tensor]:
        """``val/action_mse`` (and per used channel ``val/action_mse_chNN``) and ``val/video_latent_mse`` over the
        batches since the last call (gathered over ranks); resets the metrics."""
        metrics = {}
        per_channel = self.val_action_error.compute()
        used = ~torch.isnan(per_channel)
        if used.any():
            metrics["val/action_mse"] = per_channel[used].mean()
            for c in torch.nonzero(used).flatten().tolist():
                metrics[f"val/action_mse_ch{c:02d}"] = per_channel[c]
        metrics["val/video_latent_mse"] = self.val_video_error.compute().float()
        self.val_action_error.reset()
        self.val_video_error.reset()
        return metrics

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.validation_update(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.validation_metrics())
