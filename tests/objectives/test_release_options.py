"""The released training code's choices as named objective options, each computed by hand: bsmntw timestep
weighting, per-frame action-loss normalisation, the noisy-history σ range drawn per batch, the training attention
window; and the forward-dynamics sequences the paper's asynchronous post-training mixes in."""

import math
import types

import pytest
import torch
from standin_model import synthetic_episode

from lbva.config.objective import ObjectiveConfig
from lbva.models.attention import AttentionWindow
from lbva.objectives import FlowMatchingObjective
from lbva.objectives.losses import sample_generators


def _zero_model(seen):
    def fake(**kw):  # predicts zeros; remembers its inputs
        seen.clear()
        seen.update(kw)
        return types.SimpleNamespace(video=torch.zeros_like(kw["noisy_video"]),
                                     actions=torch.zeros_like(kw["noisy_actions"]))

    return fake


def _targets(batch, seen):
    """u = ε − x0 recovered from the noised inputs: x_σ = (1 − σ)·x0 + σ·ε."""
    v0, a0 = batch["video"], batch["actions"] * batch["action_mask"].any(dim=(1, 2), keepdim=True)
    sv, sa = seen["video_sigma"], seen["action_sigma"]
    uv = (seen["noisy_video"] - (1 - sv[:, None, :, None, None]) * v0) / sv[:, None, :, None, None] - v0
    ua = (seen["noisy_actions"] - (1 - sa[..., None, None]) * a0) / sa[..., None, None] - a0
    return uv, ua


def released_bsmntw(sigma, shift, T=1000):
    """The release's training weights, written out: a bump exp(−2((t − T/2)/T)²) over the timesteps t = T·σ of its
    shifted training grid (σ from 1 down to 1/T), its minimum subtracted, scaled to mean 1; a σ takes the weight of
    the nearest grid timestep."""
    weights, timesteps = [], []
    for k in range(T):
        s = 1 - k / T
        t = T * shift * s / (1 + (shift - 1) * s)
        timesteps.append(t)
        weights.append(math.exp(-2 * ((t - T / 2) / T) ** 2))
    low = min(weights)
    total = sum(w - low for w in weights)
    weights = [(w - low) * T / total for w in weights]
    out = []
    for x in sigma.flatten().tolist():
        k = min(range(T), key=lambda i: abs(timesteps[i] - T * x))
        out.append(weights[k])
    return torch.tensor(out).reshape(sigma.shape)


def test_bsmntw_timestep_weighting_by_hand():
    cfg = ObjectiveConfig(loss_weighting="bsmntw", video_shift=5.0, action_shift=2.0, noisy_history_prob=0.0,
                          text_dropout=0.0)
    batch = synthetic_episode(B=2, used=5)
    seen = {}
    out = FlowMatchingObjective(cfg)(_zero_model(seen), batch, torch.Generator().manual_seed(2))
    uv, ua = _targets(batch, seen)
    wv, wa = released_bsmntw(seen["video_sigma"], 5.0), released_bsmntw(seen["action_sigma"], 2.0)
    assert not torch.allclose(wv, torch.ones_like(wv))
    dyn = ((uv ** 2).mean(dim=(1, 3, 4)) * wv).mean()
    m = batch["action_mask"].float()
    inv = ((ua ** 2) * wa[..., None, None] * m).sum() / m.sum()
    torch.testing.assert_close(out.terms["loss_dyn"], dyn, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out.terms["loss_inv"], inv, rtol=1e-4, atol=1e-6)


def test_per_frame_action_loss_by_hand():
    batch = synthetic_episode(B=2, used=6)
    batch["action_mask"][0, 2, :, 3:] = False  # frames with fewer valid entries than others
    batch["action_mask"][1, 3, 1:] = False
    m = batch["action_mask"].float()
    seen = {}
    losses = {}
    for reduction in ("per_frame", "per_token"):
        cfg = ObjectiveConfig(action_loss=reduction, noisy_history_prob=0.0, text_dropout=0.0, action_shift=1.0)
        out = FlowMatchingObjective(cfg)(_zero_model(seen), batch, torch.Generator().manual_seed(4))
        losses[reduction] = out.terms["loss_inv"]
    _, ua = _targets(batch, seen)
    err = ua ** 2
    rows = [(err[b, f] * m[b, f]).sum() / (m[b, f].sum() + 1e-6) for b in range(2) for f in range(4)]
    per_frame = sum(rows) / len(rows)  # frame 0 has no valid entry and counts as 0, as in the release
    torch.testing.assert_close(losses["per_frame"], per_frame, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(losses["per_token"], (err * m).sum() / m.sum(), rtol=1e-4, atol=1e-6)
    assert not torch.allclose(losses["per_frame"], losses["per_token"])


def test_released_noisy_history_draws_per_batch_from_the_lower_half_of_the_shifted_grid():
    shift, T = 5.0, 1000
    grid = torch.tensor([shift * (1 - k / T) / (1 + (shift - 1) * (1 - k / T)) for k in range(T // 2, T)])
    cfg = ObjectiveConfig(noisy_history="released", noisy_history_prob=0.5, video_shift=shift, text_dropout=0.0)
    obj = FlowMatchingObjective(cfg)
    batch = synthetic_episode(B=3, F=4)
    seen, renoised, sigmas = {}, 0, []
    for seed in range(120):
        obj(_zero_model(seen), batch, sample_generators(0, 100 * seed, 3))  # per-sample generators, as training has
        cs = seen["clean_video_sigma"]
        if cs is None:
            assert torch.equal(seen["clean_video"], batch["video"])
            continue
        renoised += 1
        assert torch.equal(cs, cs[:1].expand_as(cs))  # one σ per frame for the whole batch
        assert float((cs[0, :, None] - grid[None]).abs().min(dim=1).values.max()) < 1e-6  # points of that grid
        sigmas += cs[0].tolist()
        eps = (seen["clean_video"] - (1 - cs[:, None, :, None, None]) * batch["video"]) / cs[:, None, :, None, None]
        assert 0.7 < float(eps.std()) < 1.3  # the clean copy is x0 noised to that σ
    assert 40 < renoised < 80  # p = 0.5 per batch
    assert max(sigmas) <= shift * 0.5 / (1 + (shift - 1) * 0.5) + 1e-6 and max(sigmas) > 0.8  # up to shift(0.5) = 0.83
    assert min(sigmas) < 0.05


def test_uniform_noisy_history_picks_each_sequence_on_its_own():
    cfg = ObjectiveConfig(noisy_history="uniform", noisy_history_prob=0.5, noisy_history_max_sigma=0.5,
                          text_dropout=0.0)
    obj = FlowMatchingObjective(cfg)
    batch = synthetic_episode(B=4)
    seen, mixed = {}, 0
    for seed in range(30):
        obj(_zero_model(seen), batch, sample_generators(0, 100 * seed, 4))
        picked = seen["clean_video_sigma"].amax(dim=1) > 0
        mixed += bool(picked.any() and not picked.all())
        assert float(seen["clean_video_sigma"].max()) <= 0.5
    assert mixed > 5


def test_forward_dynamics_sequences_by_hand():
    cfg = ObjectiveConfig(fdm_prob=0.5, fdm_weight=0.3, noisy_history_prob=0.0, text_dropout=0.0)
    obj = FlowMatchingObjective(cfg)
    batch = synthetic_episode(B=6)
    seen, shares = {}, []
    for seed in range(40):
        out = obj(_zero_model(seen), batch, sample_generators(0, 100 * seed, 6))
        fdm = seen["fdm"]
        shares.append(float(fdm.float().mean()))
        uv, ua = _targets(batch, seen)
        per_seq = (uv ** 2).mean(dim=(1, 2, 3, 4))  # (B,): no timestep weighting
        m = batch["action_mask"].float()
        inv = ((ua ** 2) * m).sum() / m.sum()
        dyn, fwd = per_seq[~fdm].sum() / 6, per_seq[fdm].sum() / 6
        torch.testing.assert_close(out.terms["loss_dyn"], dyn, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(out.terms["loss_fdm"], fwd, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(out.loss, dyn + inv + 0.3 * fwd, rtol=1e-4, atol=1e-6)
    assert 0.35 < sum(shares) / len(shares) < 0.65 and min(shares) < max(shares)


def test_training_window_is_drawn_per_sequence_from_its_range():
    cfg = ObjectiveConfig(window="released", window_sizes=[4, 6], noisy_history_prob=0.0, text_dropout=0.0)
    obj = FlowMatchingObjective(cfg)
    batch = synthetic_episode(B=5)
    seen, sizes = {}, []
    for seed in range(20):
        obj(_zero_model(seen), batch, sample_generators(0, 100 * seed, 5))
        w = seen["window"]
        assert isinstance(w, AttentionWindow) and w.kind == "released" and w.size.shape == (5,)
        sizes += w.size.tolist()
    assert set(sizes) == {4, 5, 6}
    seen.clear()
    FlowMatchingObjective(ObjectiveConfig())(_zero_model(seen), batch)
    assert seen["window"] is None  # lbva's default trains on the whole history


def test_training_with_the_released_window_applies_the_released_mask_cell_by_cell(monkeypatch):
    """The real model under the objective: the mask its attention runs, per sequence, is the released training
    predicate (clean→clean causal, noisy→clean strictly earlier, noisy→noisy same id, |Δ id| ≤ the drawn size)."""
    import lbva.models.lingbot_va as lv
    from lbva.config import load_config
    from lbva.models import build_model

    specs = []
    real_attend = lv.Attend

    class Spy(real_attend):
        def __init__(self, spec, kernel="sdpa"):
            specs.append(spec)
            super().__init__(spec, kernel)

    monkeypatch.setattr(lv, "Attend", Spy)
    torch.manual_seed(0)
    model = build_model(load_config(None, ["model.size=tiny", "model.in_channels=2", "model.text_dim=4"]).model)
    batch = synthetic_episode(B=3, C=2, F=6, H=2, W=2, chunk_size=1)
    cfg = ObjectiveConfig(window="released", window_sizes=[1, 5], noisy_history_prob=0.0, text_dropout=0.0)
    FlowMatchingObjective(cfg)(model, batch, sample_generators(0, 0, 3))
    [spec] = specs
    dense = spec.dense()
    ids, noisy = spec.q_ids.tolist(), spec.q_noisy.tolist()
    for b, size in enumerate(spec.window.size.tolist()):
        want = torch.tensor([[((not nq and not nk and k <= q) or (nq and not nk and k < q) or (nq and nk and k == q))
                              and abs(q - k) <= size for k, nk in zip(ids, noisy)] for q, nq in zip(ids, noisy)])
        assert torch.equal(dense[b], want), b


def test_inconsistent_options_are_refused_with_what_to_do():
    with pytest.raises(ValueError, match="fdm_prob"):
        FlowMatchingObjective(ObjectiveConfig(fdm_weight=0.5))
    with pytest.raises(ValueError, match=r"window_sizes=\[8, 4\]"):
        FlowMatchingObjective(ObjectiveConfig(window="released", window_sizes=[8, 4]))
