"""The losses: masking of unused channels, text dropout, noisy history, FDM, overfitting + sampling."""

import types

import pytest
import torch
from standin_model import StandInVA, synthetic_episode

from lbva.config.objective import ObjectiveConfig
from lbva.objectives import FlowMatchingObjective, SamplerConfig, sample_chunk
from lbva.objectives.losses import apply_text_dropout


def _loss_and_grads(model, batch, cfg, seed=0):
    model.zero_grad()
    out = FlowMatchingObjective(cfg)(model, batch, torch.Generator().manual_seed(seed))
    out.terms["loss_inv"].requires_grad_(False)
    out.loss.backward()
    return out, [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_unused_action_channels_change_neither_loss_nor_gradient():
    torch.manual_seed(0)
    model = StandInVA()
    cfg = ObjectiveConfig(dyn_weight=0.0, inv_weight=1.0)
    batch = synthetic_episode(used=7)
    out1, g1 = _loss_and_grads(model, batch, cfg)
    perturbed = dict(batch)
    a = batch["actions"].clone()
    a[..., 7:] = torch.randn_like(a[..., 7:]) * 10  # garbage on unused channels
    perturbed["actions"] = a
    out2, g2 = _loss_and_grads(model, perturbed, cfg)
    assert torch.equal(out1.terms["loss_inv"], out2.terms["loss_inv"])
    assert all(torch.equal(x, y) for x, y in zip(g1, g2))
    # while perturbing a used channel does change it (the test has teeth)
    a = batch["actions"].clone()
    a[:, 1:, :, 0] += 0.5
    perturbed["actions"] = a
    out3, _ = _loss_and_grads(model, perturbed, cfg)
    assert not torch.equal(out1.terms["loss_inv"], out3.terms["loss_inv"])


def test_inverse_loss_is_the_masked_mean_by_hand():
    cfg = ObjectiveConfig(noisy_history_prob=0.0, text_dropout=0.0, action_shift=1.0)
    batch = synthetic_episode(used=5)
    seen = {}

    def fake_model(**kw):  # predicts zeros; remembers the noisy inputs
        seen.update(kw)
        return types.SimpleNamespace(video=torch.zeros_like(kw["noisy_video"]), actions=torch.zeros_like(kw["noisy_actions"]))

    out = FlowMatchingObjective(cfg)(fake_model, batch, torch.Generator().manual_seed(3))
    # recover ε from x_σ and σ, then the target u = ε − x0, then the masked mean of u²
    x0, sa = batch["actions"], seen["action_sigma"].view(1, -1, 1, 1)
    eps = (seen["noisy_actions"] - (1 - sa) * x0) / sa
    u = eps - x0
    m = batch["action_mask"]
    assert torch.allclose(out.terms["loss_inv"], (u[m] ** 2).mean(), rtol=1e-4)
    # unused channels reach the model as exact zeros, clean copy included
    assert torch.all(seen["noisy_actions"][..., 5:] == 0) and torch.all(seen["clean_actions"][..., 5:] == 0)
    # video: plain mean of u² (weighting none)
    v0, sv = batch["video"], seen["video_sigma"].view(1, 1, -1, 1, 1)
    uv = (seen["noisy_video"] - (1 - sv) * v0) / sv - v0
    assert torch.allclose(out.terms["loss_dyn"], (uv ** 2).mean(), rtol=1e-4)
    assert seen["chunk_size"] == 2


def test_noisy_history_and_fdm_sequences_in_one_call():
    cfg = ObjectiveConfig(noisy_history_prob=1.0, noisy_history_max_sigma=0.3, fdm_prob=0.5, fdm_weight=0.5,
                          text_dropout=0.0)
    batch = synthetic_episode(B=3)
    model = StandInVA()
    out = FlowMatchingObjective(cfg)(model, batch, torch.Generator().manual_seed(0))
    assert len(model.calls) == 1 and model.calls[0]["fdm"].dtype == torch.bool and model.calls[0]["fdm"].shape == (3,)
    cs = model.calls[0]["clean_video_sigma"]
    assert cs.shape == (3, 4) and torch.all(cs <= 0.3) and torch.all(cs >= 0) and cs.max() > 0
    assert set(out.terms) == {"loss", "loss_dyn", "loss_inv", "loss_fdm", "fdm_share"}
    expected = out.terms["loss_dyn"] + out.terms["loss_inv"] + 0.5 * out.terms["loss_fdm"]
    assert torch.allclose(out.terms["loss"], expected)
    model.calls.clear()
    FlowMatchingObjective(ObjectiveConfig(noisy_history_prob=0.0))(model, batch)
    assert model.calls[0]["clean_video_sigma"] is None and model.calls[0]["fdm"] is False


def test_text_dropout_replaces_whole_samples_with_the_null_embedding():
    text = torch.randn(400, 3, 4)
    null = torch.full((3, 4), 7.0)
    out = apply_text_dropout(text, 0.25, null, torch.Generator().manual_seed(0))
    dropped = (out == 7.0).all(dim=(1, 2))
    kept = (out == text).all(dim=(1, 2))
    assert torch.all(dropped ^ kept)
    assert 0.15 < dropped.float().mean() < 0.35
    zeros = apply_text_dropout(text, 1.0, None)
    assert torch.all(zeros == 0)
    with pytest.raises(ValueError, match="null text"):
        apply_text_dropout(text, 0.5, torch.zeros(5, 4))


def test_bad_batch_is_named():
    batch = synthetic_episode()
    del batch["action_mask"]
    with pytest.raises(KeyError, match="action_mask"):
        FlowMatchingObjective(ObjectiveConfig())(StandInVA(), batch)


def test_overfit_one_episode_then_sample_the_memorised_actions():
    """Loss on one fixed episode drops far below its start, and sampling from noise recovers its actions."""
    torch.manual_seed(0)
    batch = synthetic_episode(seed=1, used=7)
    model = StandInVA(hidden=128)
    cfg = ObjectiveConfig(video_shift=1.0, action_shift=1.0, noisy_history_prob=0.5, noisy_history_max_sigma=0.4,
                          text_dropout=0.0)
    obj = FlowMatchingObjective(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    big = {k: (v.repeat(16, *([1] * (v.ndim - 1))) if torch.is_tensor(v) else v) for k, v in batch.items()}
    first = None
    for step in range(600):
        out = obj(model, big, g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = first if first is not None else float(out.loss.detach())
    # A memorised single episode has a deterministic optimum (u = (x_σ − x0)/σ) with zero loss; what a
    # finite MLP keeps is concentrated at small σ, where ε is ill-determined by x_σ. The untrained loss is
    # ~E|ε − x0|² + E|pred|² ≈ 3; a tenfold drop, to below 0.35, only happens once x0 is memorised.
    final = float(sum(float(obj(model, big, torch.Generator().manual_seed(k)).loss) for k in range(4)) / 4)
    assert first > 1.0 and final < 0.35 and final < 0.1 * first, (first, final)

    used = batch["action_mask"].any(dim=(0, 1, 2))
    sc = SamplerConfig(video_steps=20, action_steps=20, video_stop_sigma=0.0, video_cfg=1.0, action_cfg=1.0,
                       video_shift=1.0, action_shift=1.0)
    video, actions = sample_chunk(model, batch["text"], 2, (2, 2, 2), 2, 30,
                                  history_video=batch["video"][:, :, :2], history_actions=batch["actions"][:, :2],
                                  used_mask=used, config=sc, generator=torch.Generator().manual_seed(5))
    true = batch["actions"][:, 2:]
    m = batch["action_mask"][:, 2:]
    err = ((actions - true)[m] ** 2).mean()
    var = true[m].var()
    assert err < 0.05 * var, (float(err), float(var))  # the memorised chunk, from noise
    assert torch.all(actions[..., 7:] == 0)
    verr = ((video - batch["video"][:, :, 2:]) ** 2).mean()
    assert verr < 0.1 * batch["video"].var()


def test_per_sample_generators_make_a_split_batch_see_the_same_noise():
    """Two halves of a batch, each with its samples' own generators, get exactly the whole batch's draws."""
    from lbva.objectives.losses import sample_generators

    batch = synthetic_episode(B=4)
    seen = []

    def fake_model(**kw):
        seen.append(kw)
        return types.SimpleNamespace(video=torch.zeros_like(kw["noisy_video"]), actions=torch.zeros_like(kw["noisy_actions"]))

    obj = FlowMatchingObjective(ObjectiveConfig(text_dropout=0.5))
    obj(fake_model, batch, sample_generators(3, 100, 4))
    for lo in (0, 2):
        half = {k: (v[lo:lo + 2] if torch.is_tensor(v) else v) for k, v in batch.items()}
        obj(fake_model, half, sample_generators(3, 100 + lo, 2))
    for key in ("noisy_video", "noisy_actions", "video_sigma", "action_sigma", "clean_video", "text"):
        whole = seen[0][key]
        assert torch.equal(whole, torch.cat([seen[1][key], seen[2][key]])), key


def test_the_run_seed_changes_the_noise_and_repeats_it():
    from lbva.objectives.losses import sample_generators

    def first_draws(seed, index):
        return [torch.rand(3, generator=g) for g in sample_generators(seed, index, 2)]

    a, again, other_seed, other_index = first_draws(0, 5), first_draws(0, 5), first_draws(1, 5), first_draws(0, 6)
    assert all(torch.equal(x, y) for x, y in zip(a, again))
    assert not any(torch.equal(x, y) for x, y in zip(a, other_seed))  # a different trainer.seed draws other noise
    assert torch.equal(a[1], other_index[0])  # sample 6 is sample 6, whichever batch position it lands in
