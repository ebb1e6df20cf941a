"""The LightningModule end to end: logging, exact resume, and the Fabric loop matching across process counts."""


import lightning as L
import pytest
import torch
from ranks import free_port, rank_shard_loader, run_and_close
from standin_model import StandInVA

from lbva.config import load_config
from lbva.training.data import SyntheticBatches
from lbva.training.fit import fit


def _cfg(tmp_path, *extra):
    return load_config("demo/tiny", [f"trainer.output_dir={tmp_path}", "trainer.progress_bar=false",
                                     "trainer.checkpoint_every_n_steps=3", "trainer.warmup_steps=2", *extra])


def _factory(length=4, batch=2):
    def make(rank, world):
        ds = SyntheticBatches(length, batch, 2, 2, 2, 4, 2, 3, 4, chunk_sizes=(1, 2), used_mask=torch.arange(30) < 6)
        return torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False)
    return make


class _StopAt(L.Callback):
    """Interrupts a run after ``step`` optimizer steps (the schedule still spans the full max_steps)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


class _Record(L.Callback):
    def __init__(self):
        self.losses, self.batches, self.idx = [], [], []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self.batches.append(int(batch["episode_index"][0]))
        self.idx.append(batch_idx)


def _model(seed=0):
    torch.manual_seed(seed)
    return StandInVA()


def test_resume_continues_exactly(tmp_path):
    full = _Record()
    fit(_cfg(tmp_path / "a", "trainer.max_steps=7"), model=_model(), loader_factory=_factory(), callbacks=[full])
    first = _Record()
    fit(_cfg(tmp_path / "b", "trainer.max_steps=7"), model=_model(), loader_factory=_factory(),
        callbacks=[first, _StopAt(3)])
    assert len(first.losses) == 3
    assert (tmp_path / "b" / "checkpoints" / "last.ckpt").is_file()
    second = _Record()
    # a different initial model: everything must come from the checkpoint
    trainer, system = fit(_cfg(tmp_path / "b", "trainer.max_steps=7", "trainer.resume=last"), model=_model(1),
                          loader_factory=_factory(), callbacks=[second])
    assert trainer.global_step == 7
    assert first.batches + second.batches == full.batches  # data order continues mid-epoch (4 batches/epoch)
    assert first.losses + second.losses == pytest.approx(full.losses, rel=1e-6, abs=1e-7)
    assert len(set(full.losses)) > 1
    # batch_idx continues within the epoch after resuming, so the loader's saved position stays right
    assert second.idx == [3, 0, 1, 2] and system.resumable_loader.state_dict() == {"consumed": 3}


def test_logs_every_term_lr_grad_norm_tokens_and_samples(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = _cfg(tmp_path, "trainer.max_steps=2", "trainer.sample_every_n_steps=1", "objective.fdm_prob=0.5",
               "objective.fdm_weight=0.5", "trainer.ema_decay=0.9")
    trainer, system = fit(cfg, model=_model(), loader_factory=_factory())
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "scalars": 0})
    runs = sorted((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert runs
    acc = EventAccumulator(str(runs[0].parent), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    for tag in ["train/loss", "train/loss_dyn", "train/loss_inv", "train/loss_fdm", "train/lr", "train/grad_norm",
                "train/tokens_per_s"]:
        assert tag in scalars, (tag, scalars)
    assert {"sample/actions", "sample/video_sampled_vs_real"} <= set(acc.Tags()["images"])
    assert system.ema is not None and int(system.ema.n_averaged) == 2


def _fabric_worker(rank, world, global_batch, tmp, out):
    import os

    if world > 1:  # as torchrun would set them: Fabric then joins the group instead of spawning
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["LBVA_TEST_PORT"], WORLD_SIZE=str(world),
                          RANK=str(rank), LOCAL_RANK=str(rank), NODE_RANK="0")
    from lbva.training.fabric import fabric_train

    cfg = load_config("demo/tiny", [f"trainer.output_dir={tmp}", "trainer.progress_bar=false", "trainer.max_steps=3",
                                    "trainer.checkpoint_every_n_steps=100", f"trainer.devices={world}",
                                    "trainer.strategy=" + ("ddp" if world > 1 else "auto"), "objective.text_dropout=0.5"])
    torch.set_num_threads(1)

    def loader(r, w):
        ds = SyntheticBatches(2, global_batch, 2, 2, 2, 4, 2, 3, 4, chunk_sizes=(2,), used_mask=torch.arange(30) < 6)
        return rank_shard_loader(ds, global_batch, r, w)

    res = fabric_train(cfg, model=_model(), loader_factory=loader)
    if rank == 0:
        torch.save({"losses": res.losses, "state": {k: v.detach().clone() for k, v in res.model.state_dict().items()}}, out)


def test_fabric_two_processes_equal_one(tmp_path):
    import os

    import torch.multiprocessing as mp

    os.environ["LBVA_TEST_PORT"] = str(free_port())
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    _fabric_worker(0, 1, 2, tmp_path / "r1", one)
    mp.start_processes(run_and_close, args=(_fabric_worker, 2, 2, tmp_path / "r2", two), nprocs=2, join=True,
                       start_method="spawn")
    a, b = torch.load(one, weights_only=True), torch.load(two, weights_only=True)
    assert a["losses"] == pytest.approx(b["losses"], rel=1e-5)
    for k in a["state"]:
        key_b = k if k in b["state"] else f"module.{k}"
        # gloo's all-reduce sums in another order than one process does; Adam's division by sqrt(v) turns those
        # last-bit gradient differences into ~1e-5 weight differences on near-zero-gradient entries
        assert torch.allclose(a["state"][k], b["state"][key_b], atol=5e-5), k


def test_validation_logs_action_error_per_used_channel(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = _cfg(tmp_path, "trainer.max_steps=2", "trainer.val_every_n_steps=2")
    val = _factory(length=1)(0, 1)
    fit(cfg, model=_model(), loader_factory=_factory(), val_loader=val)
    runs = sorted((tmp_path / "tb").rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(runs[0].parent), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"val/action_mse", "val/video_latent_mse"} <= tags
    assert {f"val/action_mse_ch{c:02d}" for c in range(6)} <= tags and "val/action_mse_ch06" not in tags
