"""Helpers of the multi-process training tests: each rank's rows of a fixed global batch, a free port, a worker
that ends its process group."""

import socket

import torch


def rank_shard_loader(ds, global_batch: int, rank: int, world: int) -> torch.utils.data.DataLoader:
    """Rank ``rank``'s rows of every batch of ``ds`` (each a dict of global batches), so any process count trains on
    the same samples."""
    per = global_batch // world

    class Shard(torch.utils.data.Dataset):
        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            return {k: (v[rank * per:(rank + 1) * per] if torch.is_tensor(v) else v) for k, v in ds[i].items()}

    return torch.utils.data.DataLoader(Shard(), batch_size=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_and_close(rank: int, worker, *args) -> None:
    """``worker(rank, *args)``, then the process group ended (as ``lbva train`` ends it): a spawned rank that exits with
    gloo threads running can abort at exit after its work is done."""
    from lbva.training.fabric import close_distributed

    try:
        worker(rank, *args)
    finally:
        close_distributed()
