"""Sharded (FSDP) checkpoints are written beside the last one and swapped in: a save that fails or is killed
leaves the previous checkpoint whole, and the next save clears what it left."""

from pathlib import Path

import pytest

from lbva.atomic_io import backup_path, recover
from lbva.training.checkpoint_io import save_sharded, sharded_writing_path


class _Fabric:
    """Rank 0 of a run: ``save`` writes one shard file per rank into the folder, as torch.distributed.checkpoint does;
    ``fail_after`` shards it raises (a full disk, a killed peer)."""

    global_rank = 0

    def __init__(self, ranks=2, fail_after=None):
        self.ranks, self.fail_after, self.barriers = ranks, fail_after, 0

    def barrier(self):
        self.barriers += 1

    def save(self, path: Path, state: dict):
        path.mkdir(parents=True, exist_ok=True)
        for r in range(self.ranks):
            if self.fail_after is not None and r == self.fail_after:
                raise OSError(28, "No space left on device")
            (path / f"__{r}_0.distcp").write_text(f"step {state['step']} rank {r}")
        (path / ".metadata").write_text(f"step {state['step']}")


def _steps(folder: Path) -> set[str]:
    return {p.read_text().split(" rank")[0] for p in folder.glob("*.distcp")} | {(folder / ".metadata").read_text()}


def test_a_save_replaces_the_previous_checkpoint_whole(tmp_path):
    ckpt = tmp_path / "checkpoints" / "last-fabric.ckpt"
    save_sharded(_Fabric(), ckpt, {"step": 2})
    assert _steps(ckpt) == {"step 2"}
    fabric = _Fabric()
    save_sharded(fabric, ckpt, {"step": 4})
    assert _steps(ckpt) == {"step 4"} and len(list(ckpt.glob("*.distcp"))) == 2
    assert not sharded_writing_path(ckpt).exists() and not backup_path(ckpt).exists()
    assert fabric.barriers == 3  # before writing, after every rank wrote, after the swap


def test_a_failed_save_leaves_the_last_checkpoint_and_the_next_save_clears_its_remains(tmp_path):
    ckpt = tmp_path / "last-fabric.ckpt"
    save_sharded(_Fabric(), ckpt, {"step": 2})
    with pytest.raises(OSError, match="No space left"):
        save_sharded(_Fabric(fail_after=1), ckpt, {"step": 4})
    assert _steps(ckpt) == {"step 2"}  # untouched
    half = sharded_writing_path(ckpt)
    assert [p.name for p in half.glob("*.distcp")] == ["__0_0.distcp"]  # what the failed save wrote
    save_sharded(_Fabric(ranks=3), ckpt, {"step": 6})
    assert _steps(ckpt) == {"step 6"} and len(list(ckpt.glob("*.distcp"))) == 3  # no shard of the failed save
    assert not half.exists()


def test_resuming_puts_back_a_checkpoint_caught_between_two_renames(tmp_path):
    """Where the file system cannot exchange two names, the previous folder is moved to .NAME.old before the new
    one moves in; a crash between the two leaves no NAME. Resuming restores it."""
    ckpt = tmp_path / "last-fabric.ckpt"
    save_sharded(_Fabric(), ckpt, {"step": 2})
    ckpt.rename(backup_path(ckpt))
    recover(ckpt)
    assert _steps(ckpt) == {"step 2"} and not backup_path(ckpt).exists()
