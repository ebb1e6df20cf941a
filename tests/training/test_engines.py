"""lightning.Trainer and the Fabric loop run one step: same losses, same EMA, same TensorBoard scalars."""

from pathlib import Path

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lbva.config import load_config
from lbva.models import build_model
from lbva.training.data import synthetic_loader
from lbva.training.fabric import fabric_train
from lbva.training.fit import fit


def _cfg(out):
    # the real tiny network on the recipe's synthetic batches; every logged feature switched on
    return load_config("demo/tiny", [f"trainer.output_dir={out}", "trainer.max_steps=4", "trainer.ema_decay=0.9",
                                     "trainer.sample_every_n_steps=2", "trainer.val_every_n_steps=2",
                                     "trainer.log_every_n_steps=1", "trainer.checkpoint_every_n_steps=100"])


class _Losses(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def _events(out: Path) -> EventAccumulator:
    runs = sorted((out / "tb").rglob("events.out.tfevents.*"))
    assert len(runs) == 1, runs
    acc = EventAccumulator(str(runs[0].parent), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_trainer_and_fabric_loop_take_the_same_steps_and_log_the_same_scalars(tmp_path):
    cfg = _cfg(tmp_path / "trainer")
    val = synthetic_loader(cfg, build_model(cfg.model), 1)
    recorded = _Losses()
    _, system = fit(cfg, val_loader=val, callbacks=[recorded], export=False)
    fab = fabric_train(_cfg(tmp_path / "fabric"), val_loader=val, export=False)

    assert len(recorded.losses) == 4 and len(set(recorded.losses)) == 4
    assert fab.losses == pytest.approx(recorded.losses, rel=1e-6, abs=0)
    ema_t, ema_f = system.ema.module.state_dict(), fab.ema.module.state_dict()
    assert ema_t.keys() == ema_f.keys()
    for k in ema_t:
        assert torch.allclose(ema_t[k], ema_f[k], rtol=1e-6, atol=1e-7), k
    assert int(fab.ema.n_averaged) == 4
    trained = fab.model.state_dict()
    assert any(not torch.allclose(ema_f[k], trained[k]) for k in ema_f)  # the average lags the weights

    tb_t, tb_f = _events(tmp_path / "trainer"), _events(tmp_path / "fabric")
    ours = {tag for tag in tb_t.Tags()["scalars"] if tag.startswith(("train/", "val/"))}
    assert {"train/loss", "train/loss_dyn", "train/loss_inv", "train/lr", "train/grad_norm", "train/tokens_per_s",
            "val/action_mse", "val/video_latent_mse"} <= ours
    assert {tag for tag in tb_f.Tags()["scalars"] if tag.startswith(("train/", "val/"))} == ours
    for tag in ours - {"train/tokens_per_s"}:
        t, f = tb_t.Scalars(tag), tb_f.Scalars(tag)
        assert [e.step for e in f] == [e.step for e in t], tag
        assert [e.value for e in f] == pytest.approx([e.value for e in t], rel=1e-5), tag
    assert [e.value for e in tb_f.Scalars("train/loss")] == pytest.approx(fab.losses, rel=1e-6)
    samples = {"sample/actions", "sample/video_sampled_vs_real"}
    assert samples <= set(tb_t.Tags()["images"]) and samples <= set(tb_f.Tags()["images"])
    for tag in samples:
        assert [e.step for e in tb_f.Images(tag)] == [e.step for e in tb_t.Images(tag)] == [0, 2]
