"""Atomic checkpoint writes: a crash while saving leaves the previous checkpoint loadable.

The checkpoint is written to a temporary file in the same directory, flushed and fsynced, then moved over
the target with ``os.replace`` (atomic on POSIX within one file system); temporaries of a killed writer are removed by
the next write in that directory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lbva.atomic_io import atomic_file

logger = logging.getLogger(__name__)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` through a temporary file and ``os.replace`` (:func:`lbva.atomic_io.atomic_file`)."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


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
