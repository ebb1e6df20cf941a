"""The objective, sampler and ``lbva train`` with the real network (tiny config)."""

import torch
from standin_model import synthetic_episode

from lbva.cli import main
from lbva.config import load_config
from lbva.config.objective import ObjectiveConfig
from lbva.models import build_model
from lbva.objectives import FlowMatchingObjective, guided


def _tiny_batch(model_cfg, used=4):
    m = build_model(model_cfg)
    b = synthetic_episode(B=2, C=m.arch.in_channels, F=2, H=4, W=4, N=3, Dt=m.arch.text_dim, used=used, chunk_size=1)
    return m, b


def test_unused_channels_change_neither_inverse_loss_nor_gradient_of_the_real_model():
    torch.manual_seed(0)
    model, batch = _tiny_batch(load_config("demo/tiny").model)
    cfg = ObjectiveConfig(dyn_weight=0.0, inv_weight=1.0, text_dropout=0.0)

    def run(b):
        model.zero_grad()
        out = FlowMatchingObjective(cfg)(model, b, torch.Generator().manual_seed(0))
        out.loss.backward()
        return out.terms["loss_inv"], {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    l1, g1 = run(batch)
    a = batch["actions"].clone()
    a[..., 4:] = torch.randn_like(a[..., 4:]) * 5
    l2, g2 = run({**batch, "actions": a})
    assert torch.equal(l1, l2)
    assert g1.keys() == g2.keys() and all(torch.equal(g1[k], g2[k]) for k in g1)
    a = batch["actions"].clone()
    a[:, 1:, :, 1] += 0.3
    l3, _ = run({**batch, "actions": a})
    assert not torch.equal(l1, l3)


def test_cfg_scale_one_equals_conditional_with_the_real_model():
    torch.manual_seed(0)
    model, batch = _tiny_batch(load_config("demo/tiny").model)
    model.eval()
    x, sig = batch["video"], torch.full((2, 2), 0.6)
    null = torch.randn(batch["text"].shape[1:])

    def predict(t):
        r = t.shape[0] // 2
        return model(noisy_video=x.repeat(r, 1, 1, 1, 1), video_sigma=sig.repeat(r, 1), text=t,
                     clean_video=x.repeat(r, 1, 1, 1, 1), chunk_size=1).video

    with torch.no_grad():
        cond = predict(batch["text"])
        assert torch.allclose(guided(predict, batch["text"], null, 1.0, always_batch=True), cond, atol=1e-5)
        assert not torch.allclose(guided(predict, batch["text"], null, 4.0), cond, atol=1e-4)


def test_lbva_train_cli_trainer_and_fabric(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "demo/tiny", f"trainer.output_dir={out}", "trainer.max_steps=2"]) == 0
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 and "lbva_rng" in ckpt and "loops" in ckpt
    assert ckpt["hyper_parameters"]["config"]["trainer"]["max_steps"] == 2
    assert main(["train", "demo/tiny", f"trainer.output_dir={tmp_path / 'fab'}", "trainer.max_steps=2",
                 "--engine", "fabric"]) == 0
    assert (tmp_path / "fab" / "checkpoints" / "last-fabric.ckpt").is_file()
    assert main(["train", "demo/tiny", "trainer.bogus=1"]) == 2  # a clear config error, exit code 2


def test_init_from_loads_saved_weights(tmp_path):
    from lbva.training.system import build_training_model

    cfg = load_config("demo/tiny")
    src = build_model(cfg.model)
    src.save_pretrained(tmp_path / "m")
    cfg.model.init_from = str(tmp_path / "m")
    loaded = build_training_model(cfg)
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), loaded.state_dict().values()))
    cfg.model.init_from = str(tmp_path / "nothing")
    import pytest

    from lbva.models.checkpoints import CheckpointError

    with pytest.raises(CheckpointError, match="init_from"):
        build_training_model(cfg)


def test_real_model_overfits_one_episode_then_samples_the_memorised_chunk():
    """The tiny LingBotVA memorises one fixed episode; the sampler, from noise and given chunk 0 as history,
    reproduces chunk 1's actions and video with errors far below the data's variance."""
    from lbva.objectives import SamplerConfig, sample_chunk

    torch.manual_seed(0)
    model = build_model(load_config(None, ["model.size=tiny", "model.in_channels=4"]).model)
    b = synthetic_episode(seed=1, C=4, F=4, H=4, W=4, N=3, Dt=model.arch.text_dim, used=4, chunk_size=2)
    big = {k: (v.repeat(4, *([1] * (v.ndim - 1))) if torch.is_tensor(v) else v) for k, v in b.items()}
    obj = FlowMatchingObjective(ObjectiveConfig(video_shift=1.0, action_shift=1.0, noisy_history_prob=0.0,
                                                text_dropout=0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(300):
        out = obj(model, big, g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    first, last = losses[0], sum(losses[-20:]) / 20
    assert first > 3.0 and last < 0.2 * first, (first, last)

    model.eval()
    sc = SamplerConfig(video_steps=20, action_steps=20, video_stop_sigma=0.0, video_cfg=1.0, action_cfg=1.0,
                       video_shift=1.0, action_shift=1.0)
    with torch.no_grad():
        video, actions = sample_chunk(model, b["text"], 2, (4, 4, 4), 3, 30, history_video=b["video"][:, :, :2],
                                      history_actions=b["actions"][:, :2], used_mask=b["action_mask"].any(dim=(0, 1, 2)),
                                      config=sc, generator=torch.Generator().manual_seed(5))
    m, true = b["action_mask"][:, 2:], b["actions"][:, 2:]
    assert float(((actions - true)[m] ** 2).mean()) < 0.1 * float(true[m].var())
    assert torch.all(actions[..., 4:] == 0)  # unused channels stay exactly zero
    assert float(((video - b["video"][:, :, 2:]) ** 2).mean()) < 0.2 * float(b["video"].var())
