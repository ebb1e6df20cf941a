"""`lbva train` ends the run's process group: a rank that exits with the group's threads running can abort."""

import argparse

import pytest
import torch.distributed as dist

from lbva.errors import CLIError
from lbva.training.fabric import close_distributed


def test_close_distributed_ends_the_group_and_is_harmless_without_one():
    close_distributed()  # no group: nothing to do
    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        assert dist.is_initialized()
        close_distributed()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_lbva_train_ends_the_group_even_when_the_run_fails(monkeypatch, tmp_path):
    import lbva.training.fabric as fabric
    from lbva.training import cli

    closed = []
    monkeypatch.setattr(fabric, "close_distributed", lambda: closed.append(True))

    def failing(cfg):
        raise FileNotFoundError("no data here")

    monkeypatch.setattr(fabric, "fabric_train", failing)
    args = argparse.Namespace(recipe="demo/tiny", overrides=[f"trainer.output_dir={tmp_path / 'run'}"], engine="fabric",
                              resume=None)
    with pytest.raises(CLIError, match="no data here"):
        cli._train(args)
    assert closed == [True]
