"""Action statistics: lbva's q01/q99 (``lbva.data.stats``) against LeRobot's (``lerobot.datasets.compute_stats``).

The precise differences, each tested here:
* per episode, LeRobot estimates a quantile from a 5000-bin histogram (rank q·n, linear inside the bin) while lbva
  takes numpy's exact quantile (rank q·(n − 1)): both lie within one sample of the true rank, plus one bin width;
* over a dataset, LeRobot averages the per-episode quantiles weighted by episode length, lbva takes the quantile
  of all rows pooled: for episodes with different ranges they differ by as much as the ranges differ;
* lbva's statistics live in slot units (after the embodiment's field maps), LeRobot's in native units: a gripper
  whose open value lies below its closed value (Meta-World's effort, +1 closes) turns q01 into q99. Converting
  LeRobot's statistics with ``stats_to_slots`` keeps LeRobot's order, so both normalise to the same numbers;
  lbva's own statistics normalise that channel to the negative of LeRobot's.
"""

import numpy as np
from lerobot_interop import EMBODIMENT

from lbva.data.stats import action_quantiles
from lbva.embodiment import get_embodiment, normalize
from lbva.interop.lerobot_stats import stats_to_native, stats_to_slots


def _lerobot(episodes):
    from lerobot.datasets.compute_stats import aggregate_stats, get_feature_stats

    per = [{"action": get_feature_stats(ep, axis=0, keepdims=False)} for ep in episodes]
    return aggregate_stats(per)["action"], [p["action"] for p in per]


def _bracket(col, q):
    """Values within one sample of rank q·n of the sorted column, widened by one 5000-bin histogram bin."""
    xs = np.sort(col)
    n, bw = len(xs), (xs[-1] - xs[0]) / 5000
    k = q * n
    return xs[max(int(np.floor(k)) - 1, 0)] - bw, xs[min(int(np.ceil(k)) + 1, n - 1)] + bw


def test_one_episode_agrees_within_a_sample_and_normalises_like_lerobot():
    spec = get_embodiment(EMBODIMENT)
    rng = np.random.default_rng(0)
    native = np.concatenate([rng.normal(0, 0.3, (500, 3)), rng.uniform(-1, 1, (500, 1))], 1).astype(np.float32)
    theirs, _ = _lerobot([native])
    q01, q99 = action_quantiles(spec.action_to_slots(native), spec.used_mask)
    conv = stats_to_slots(spec, theirs["q01"], theirs["q99"], source="lerobot")
    slot_of = [0, 1, 2, 28]
    for i, s in enumerate(slot_of[:3]):  # raw channels: the same quantile, two estimators
        for q, ours, lr in ((0.01, q01[s], theirs["q01"][i]), (0.99, q99[s], theirs["q99"][i])):
            lo, hi = _bracket(native[:, i], q)
            assert lo <= ours <= hi and lo <= lr <= hi, (s, q, ours, lr, lo, hi)
        assert conv.q01[s] == np.float32(theirs["q01"][i]) and conv.q99[s] == np.float32(theirs["q99"][i])
    # the gripper: slot = (1 − effort)/2 reverses the order, so LeRobot's q01 is lbva's q99 on that slot
    slot28 = (1 - native[:, 3]) / 2
    lo, hi = _bracket(slot28, 0.99)
    assert lo - 1e-6 <= conv.q01[28] <= hi + 1e-6 and lo <= q99[28] <= hi
    # normalising: converted LeRobot stats give LeRobot's numbers; lbva's own give the gripper negated
    x = native[:7]
    lr_norm = 2 * (x - theirs["q01"]) / (theirs["q99"] - theirs["q01"]) - 1  # LeRobot's QUANTILES formula, native units
    via_lbva = normalize(spec.action_to_slots(x), conv, spec.used_mask)[:, slot_of]
    np.testing.assert_allclose(via_lbva, lr_norm, rtol=1e-5, atol=1e-5)
    from lbva.embodiment import ActionStats

    own = normalize(spec.action_to_slots(x), ActionStats(q01, q99), spec.used_mask)[:, 28]
    np.testing.assert_allclose(own, -lr_norm[:, 3], atol=0.02)  # negated, up to the estimators' difference
    # and the conversion inverts exactly
    back01, back99 = stats_to_native(spec, conv)
    np.testing.assert_allclose(back01, theirs["q01"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(back99, theirs["q99"], rtol=1e-6, atol=1e-6)


def test_a_dataset_lerobot_averages_episode_quantiles_lbva_pools_rows():
    spec = get_embodiment(EMBODIMENT)
    rng = np.random.default_rng(1)
    eps = [rng.uniform(0, 1, (400, 4)).astype(np.float32), rng.uniform(10, 11, (200, 4)).astype(np.float32)]
    eps[0][:, 3], eps[1][:, 3] = 1.0, -1.0  # gripper closed in one episode, open in the other
    theirs, per = _lerobot(eps)
    counts = np.array([400, 200], np.float64)
    weighted01 = (per[0]["q01"] * counts[0] + per[1]["q01"] * counts[1]) / counts.sum()
    np.testing.assert_allclose(theirs["q01"], weighted01, rtol=1e-6)  # LeRobot: length-weighted episode mean
    pooled = np.concatenate(eps)
    q01, q99 = action_quantiles(spec.action_to_slots(pooled), spec.used_mask)
    np.testing.assert_allclose(q01[:3], np.quantile(pooled[:, :3], 0.01, axis=0), rtol=1e-6)  # lbva: pooled rows
    assert np.all(theirs["q01"][:3] > 3.0) and np.all(q01[:3] < 0.1)  # ≈ 3.34 vs ≈ 0.01: a documented difference
    assert np.all(theirs["q99"][:3] < 8.0) and np.all(q99[:3] > 10.8)
