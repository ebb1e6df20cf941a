"""Atomic checkpoint writes: a crash while saving leaves the previous checkpoint loadable.

The checkpoint is written to a temporary file in the same directory, flushed and fsynced, then moved over
the target with ``os.replace`` (atomic on POSIX within one file system); temporaries of a killed writer are removed by
the next write in that directory.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lbva.atomic_io import (
    _folder_lock,
    _fsync_folder,
    _settle,
    _swap_in,
    atomic_file,
    recover,
)

logger = logging.getLogger(__name__)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` through a temporary file and ``os.replace`` (:func:`lbva.atomic_io.atomic_file`)."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def sharded_writing_path(path: str | Path) -> Path:
    """Where :func:`save_sharded` writes a sharded checkpoint before it replaces ``path``: ``.NAME.writing``."""
    path = Path(path)
    return path.with_name(f".{path.name}.writing")


def save_sharded(fabric, path: str | Path, state: dict) -> None:
    """``fabric.save`` of a folder of per-rank shards (FSDP), atomic like every other lbva checkpoint
    (:func:`write_sharded`)."""
    write_sharded(fabric.global_rank, fabric.barrier, path, lambda tmp: fabric.save(tmp, state))


def write_sharded(rank: int, barrier, path: str | Path, write) -> None:
    """A sharded checkpoint folder written atomically: every rank runs ``write(tmp)`` into ``.NAME.writing``; once
    all have written, rank 0 swaps that folder in for ``path`` (:mod:`lbva.atomic_io`: one exchange where the file
    system can). A crash or an error while writing leaves the previous checkpoint whole at ``path`` (the next save
    removes the half-written folder); a crash between the two renames of a non-exchanging file system is put right
    by :func:`lbva.atomic_io.recover`, which resuming runs first."""
    path = Path(path)
    tmp = sharded_writing_path(path)
    if rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():  # a save that was killed: nothing in it is trusted
            logger.info("removing %s, left by an interrupted checkpoint save", tmp)
            shutil.rmtree(tmp)
    barrier()
    write(tmp)
    barrier()  # every shard is on disk
    if rank == 0:
        with _folder_lock(path.parent):
            _settle(path)
            _swap_in(tmp, path)
        _fsync_folder(path.parent)
    barrier()
    logger.debug("sharded checkpoint written to %s", path)


def atomic_model_parallel_strategy(**kwargs):
    """Lightning's ``ModelParallelStrategy`` (FSDP2 under the Trainer) whose sharded checkpoints are written by
    :func:`write_sharded`: Lightning's own writes the shards into the existing folder, so a crash mid-save left
    a mix of two steps under ``last.ckpt``."""
    from lightning.pytorch.strategies import ModelParallelStrategy

    class AtomicModelParallelStrategy(ModelParallelStrategy):
        def save_checkpoint(self, checkpoint, filepath, storage_options=None) -> None:
            if not self._save_distributed_checkpoint:  # one consolidated file: Lightning's own path
                return super().save_checkpoint(checkpoint, filepath, storage_options)
            path = Path(self.broadcast(filepath))
            save = super().save_checkpoint
            write_sharded(self.global_rank, self.barrier, path, lambda tmp: save(checkpoint, tmp, storage_options))

        def load_checkpoint(self, checkpoint_path, weights_only=None):
            if self.global_rank == 0:
                recover(Path(checkpoint_path))
            self.barrier()
            return super().load_checkpoint(checkpoint_path, weights_only)

    return AtomicModelParallelStrategy(**kwargs)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO whose saves are atomic (loading and removal are Lightning's)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(
                f"AtomicCheckpointIO does not take storage_options (got {storage_options!r}); drop them or use "
                "Lightning's TorchCheckpointIO"
            )
        atomic_torch_save(checkpoint, path)
        logger.debug("checkpoint written to %s", path)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        """Lightning's load with ``weights_only=True`` always (nothing in a checkpoint is unpickled as code); a missing,
        truncated or foreign file is a :class:`~lbva.models.lingbot_va.CheckpointError` naming it."""
        import pickle

        from lbva.models.lingbot_va import CheckpointError

        if weights_only is False:
            raise ValueError("AtomicCheckpointIO loads with weights_only=True only; an lbva checkpoint needs nothing else")
        kwargs = {} if map_location is None else {"map_location": map_location}
        try:
            return super().load_checkpoint(path, weights_only=True, **kwargs)
        except FileNotFoundError as e:
            raise CheckpointError(f"checkpoint {path} does not exist; give a .ckpt path or trainer.resume=last") from e
        except (pickle.UnpicklingError, EOFError, OSError, RuntimeError, ValueError) as e:
            if isinstance(e, torch.OutOfMemoryError):
                raise
            raise CheckpointError(
                f"checkpoint {path} cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:300]}); it is "
                "truncated, damaged or not a training checkpoint — resume from another one (OUTPUT_DIR/checkpoints/)"
            ) from e
