"""FSDP2 per block (trainer.strategy=fsdp in the Fabric loop) on two CPU processes (gloo): the same losses, weights
and EMA as one unsharded process on the same global batch, half the parameters per rank, and a sharded checkpoint
that resumes exactly."""

import os

import lightning as L
import pytest
import torch
import torch.multiprocessing as mp
from ranks import free_port, rank_shard_loader, run_and_close

from lbva.config import load_config
from lbva.models import build_model
from lbva.training.data import SyntheticBatches

GLOBAL_BATCH = 4


def _cfg(out, world, *extra):
    return load_config("demo/tiny", [
        f"trainer.output_dir={out}", "trainer.max_steps=4", "trainer.schedule=constant", "trainer.warmup_steps=1",
        "trainer.checkpoint_every_n_steps=2", "trainer.ema_decay=0.9", "objective.text_dropout=0.5",
        f"trainer.devices={world}", "trainer.strategy=" + ("fsdp" if world > 1 else "auto"), *extra])


def _model(cfg):
    torch.manual_seed(0)
    return build_model(cfg.model)


def _loader(rank, world):
    """This rank's rows of a fixed global batch, so any process count trains on the same samples."""
    ds = SyntheticBatches(3, GLOBAL_BATCH, 16, 4, 4, 4, 2, 4, 64, chunk_sizes=(2,), used_mask=torch.arange(30) < 6)
    return rank_shard_loader(ds, GLOBAL_BATCH, rank, world)


def _on_two_processes(worker, tmp_path):
    """Run ``worker(rank, 2, port, tmp_path, out)`` on two spawned processes; what rank 0 saved to ``out``."""
    out = tmp_path / "two.pt"
    mp.start_processes(run_and_close, args=(worker, 2, free_port(), tmp_path, out), nprocs=2, join=True,
                       start_method="spawn")
    return torch.load(out, weights_only=True)


def _fsdp_worker(rank, world, port, tmp, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")
    torch.set_num_threads(1)
    import torch.distributed as dist
    from torch.distributed.fsdp import FSDPModule

    from lbva.training.fabric import fabric_train
    from lbva.training.sharding import full_state_dict, local_numel

    # uninterrupted, recomputing each layer in the backward pass
    cfg = _cfg(tmp / "full", world, "model.activation_checkpointing=true")
    full = fabric_train(cfg, model=_model(cfg), loader_factory=_loader)
    model = full.model.module
    units = [isinstance(b, FSDPModule) for b in model.blocks]
    numel = [None] * world
    dist.all_gather_object(numel, local_numel(model))
    weights, ema = full_state_dict(model), full_state_dict(full.ema.module)
    # interrupted after step 2, then resumed from the sharded checkpoint into a differently initialised model
    cfg = _cfg(tmp / "resumed", world, "trainer.max_steps=2")
    first = fabric_train(cfg, model=_model(cfg), loader_factory=_loader)
    cfg = _cfg(tmp / "resumed", world, "trainer.resume=last")
    torch.manual_seed(1)
    second = fabric_train(cfg, model=build_model(cfg.model), loader_factory=_loader)
    if rank == 0:
        torch.save({"losses": full.losses, "resumed": first.losses + second.losses, "numel": numel, "units": units,
                    "weights": weights, "ema": ema}, out)


def test_fsdp_per_block_on_two_processes_equals_one_process_and_resumes_exactly(tmp_path):
    cfg = _cfg(tmp_path / "one", 1)
    from lbva.training.fabric import fabric_train

    one = fabric_train(cfg, model=_model(cfg), loader_factory=_loader)
    two = _on_two_processes(_fsdp_worker, tmp_path)

    assert len(set(one.losses)) == 4
    # gloo reduces (reduce-scatter, then all-gather) in another order than one process sums the batch
    assert two["losses"] == pytest.approx(one.losses, rel=1e-5)
    ref, ref_ema = one.model.module.state_dict(), one.ema.module.state_dict()
    assert two["weights"].keys() == ref.keys()  # parameter names unchanged by sharding
    for k in ref:
        # Adam's division by sqrt(v) turns last-bit gradient differences into ~1e-5 on near-zero-gradient entries
        assert torch.allclose(two["weights"][k], ref[k], atol=5e-5), k
        assert torch.allclose(two["ema"][k], ref_ema[k], atol=5e-5), k
    assert any(not torch.allclose(ref[k], _model(cfg).state_dict()[k]) for k in ref)  # it trained

    total = sum(p.numel() for p in one.model.parameters())
    assert sum(two["numel"]) == total
    assert all(0.45 < n / total < 0.55 for n in two["numel"]), (two["numel"], total)
    assert all(two["units"])  # one FSDP unit per block

    ckpt = tmp_path / "resumed" / "checkpoints" / "last-fabric.ckpt"
    assert ckpt.is_dir() and len(list(ckpt.glob("*.distcp"))) == 2  # one shard file per rank
    assert two["resumed"] == pytest.approx(two["losses"], rel=1e-5)


class _Losses(L.Callback):
    """Each step's loss, averaged over ranks (each rank's loss is that of its half of the global batch)."""

    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(trainer.strategy.reduce(outputs["loss"].detach(), reduce_op="mean")))


def _trainer_worker(rank, world, port, tmp, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")
    torch.set_num_threads(1)
    from torch.distributed.fsdp import FSDPModule

    from lbva.training.fit import fit
    from lbva.training.sharding import full_state_dict

    cfg = _cfg(tmp / "trainer", world, "trainer.max_steps=3")
    recorded = _Losses()
    _, system = fit(cfg, model=_model(cfg), loader_factory=_loader, callbacks=[recorded], export=False)
    units = all(isinstance(b, FSDPModule) for b in system.model.blocks)
    weights, ema = full_state_dict(system.model), full_state_dict(system.ema.module)
    # interrupted after step 2, resumed from the sharded last.ckpt into a differently initialised model
    first, second = _Losses(), _Losses()
    fit(_cfg(tmp / "resumed", world, "trainer.max_steps=2"), model=_model(cfg), loader_factory=_loader,
        callbacks=[first], export=False)
    torch.manual_seed(1)
    cfg = _cfg(tmp / "resumed", world, "trainer.max_steps=3", "trainer.resume=last")
    fit(cfg, model=build_model(cfg.model), loader_factory=_loader, callbacks=[second], export=False)
    if rank == 0:
        torch.save({"losses": recorded.losses, "units": units, "weights": weights, "ema": ema,
                    "resumed": first.losses + second.losses}, out)


def test_trainer_fsdp_per_block_on_two_processes_equals_one_process_and_resumes_exactly(tmp_path):
    from lbva.training.fit import fit

    cfg = _cfg(tmp_path / "one", 1, "trainer.max_steps=3")
    recorded = _Losses()
    _, one = fit(cfg, model=_model(cfg), loader_factory=_loader, callbacks=[recorded], export=False)
    two = _on_two_processes(_trainer_worker, tmp_path)

    assert len(recorded.losses) == 3 and two["units"]
    assert two["losses"] == pytest.approx(recorded.losses, rel=1e-5)
    ref, ref_ema = one.model.state_dict(), one.ema.module.state_dict()
    for k in ref:
        assert torch.allclose(two["weights"][k], ref[k], atol=5e-5), k
        assert torch.allclose(two["ema"][k], ref_ema[k], atol=5e-5), k
    assert (tmp_path / "resumed" / "checkpoints" / "last.ckpt").is_dir()  # a folder of shards
    assert two["resumed"] == pytest.approx(two["losses"], rel=1e-5)


def _bf16_worker(rank, world, port, tmp, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")
    torch.set_num_threads(1)
    from lbva.models.lingbot_va import Block
    from lbva.training.fabric import fabric_train
    from lbva.training.sharding import full_state_dict

    seen = set()
    pre = Block.pre_attention

    def recording(self, x, mod, rope):  # what FSDP hands the block: its gathered parameters' dtype
        seen.add(self.attn1.to_q.weight.dtype)
        return pre(self, x, mod, rope)

    Block.pre_attention = recording
    cfg = _cfg(tmp / "bf16", world, "trainer.precision=bf16-mixed", "trainer.max_steps=3",
               "trainer.sample_every_n_steps=2")  # sampling runs on every rank: its forwards gather parameters
    run = fabric_train(cfg, model=_model(cfg), loader_factory=_loader)
    weights = full_state_dict(run.model.module)
    from lbva.training.sharding import unsharded_copy

    copy = unsharded_copy(run.model.module, cfg.model, rank)  # what export writes: gathered on every rank
    assert (copy is None) == (rank != 0)
    if rank == 0:
        torch.save({"losses": run.losses, "seen": sorted(str(d) for d in seen), "weights": weights,
                    "exported": copy.state_dict()}, out)


def test_fsdp_bf16_mixed_computes_in_bf16_and_keeps_fp32_weights(tmp_path):
    """trainer.precision=bf16-mixed under FSDP: the blocks compute with bf16 copies of their gathered parameters
    (MixedPrecisionPolicy), gradients reduce and the sharded weights stay in fp32, and the losses follow one
    process's bf16 autocast run to bf16 precision. The run logs a sampled chunk at steps 0 and 2 (every rank samples,
    rank 0 writes): it finishes, and the sample is in rank 0's TensorBoard log."""
    from lbva.training.fabric import fabric_train

    one = fabric_train(cfg := _cfg(tmp_path / "one", 1, "trainer.precision=bf16-mixed", "trainer.max_steps=3"),
                       model=_model(cfg), loader_factory=_loader)
    fp32 = fabric_train(cfg := _cfg(tmp_path / "fp32", 1, "trainer.max_steps=3"), model=_model(cfg),
                        loader_factory=_loader)
    two = _on_two_processes(_bf16_worker, tmp_path)
    assert two["seen"] == ["torch.bfloat16"]
    assert all(w.dtype == torch.float32 for w in two["weights"].values())
    assert two["exported"].keys() == two["weights"].keys()
    assert all(torch.equal(two["exported"][k], two["weights"][k]) for k in two["weights"])
    assert len(two["losses"]) == 3 and all(torch.isfinite(torch.tensor(two["losses"])))
    assert two["losses"] == pytest.approx(one.losses, rel=2e-2)
    assert two["losses"] != pytest.approx(fp32.losses, rel=1e-6)  # bf16 really ran: not the fp32 numbers
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = (tmp_path / "bf16").rglob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"images": 0})
    acc.Reload()
    assert "sample/actions" in acc.Tags()["images"]
    assert [e.step for e in acc.Images("sample/actions")] == [0, 2]
