"""data.mixture: several caches drawn by weight, each sample normalised and masked as its own embodiment's."""

import json
import math
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from cache_writer import write_cache

from lbva.config.data import DataConfig, MixtureEntry
from lbva.config.loader import load_config
from lbva.data.cache import CacheIndex
from lbva.data.datamodule import LatentDataModule
from lbva.data.errors import DataError, StaleCacheError
from lbva.data.mixture import MixtureBatchSampler, MixtureSource


def _mixture_cfg(*entries, **kw) -> DataConfig:
    return DataConfig(mixture=[MixtureEntry(str(p), w, emb) for p, w, emb in entries], **kw)


# -- drawing by weight (no disk) ----------------------------------------------------------------------------


def _binomial_ok(count: int, n: int, p: float, z: float = 5.0) -> bool:
    return abs(count - n * p) <= z * math.sqrt(n * p * (1 - p))


def test_draw_frequencies_follow_the_weights_not_the_cache_sizes():
    # source sizes run against the weights: drawing in proportion to the windows would fail the bound
    sources = [
        MixtureSource([9, 12, 7, 15] * 6, weight=1.0, tokens_per_frame=10, shape=(1,)),
        MixtureSource([8, 11, 6] * 2, weight=3.0, tokens_per_frame=10, shape=(1,)),
        MixtureSource([10, 5], weight=6.0, tokens_per_frame=10, shape=(1,)),
    ]
    sampler = MixtureBatchSampler(sources, window_frames=4, chunk_sizes=[1, 2], token_budget=100, seed=3)
    counts, n = Counter(), 0
    for epoch in range(40):
        drawn = [w.source for b in sampler.global_batches(epoch) for w in b]
        counts.update(drawn)
        n += len(drawn)
    weights = np.array([s.weight for s in sources])
    p = weights / weights.sum()
    for i in range(3):
        assert _binomial_ok(counts[i], n, p[i]), (i, counts[i], n * p[i])
    # the bound is tight enough to tell the weights from uniform draws
    assert not all(_binomial_ok(round(n / 3), n, p[i]) for i in range(3))


def test_mixture_plan_is_deterministic_and_ranks_share_it_without_overlap():
    sources = [MixtureSource([9, 4, 6], 1.0, 10, (1,)), MixtureSource([7, 8], 2.0, 10, (1,))]
    make = lambda **kw: MixtureBatchSampler(sources, 4, [1, 2, 3], token_budget=60, seed=1, **kw)
    assert make().global_batches(2) == make().global_batches(2)
    assert make().global_batches(2) != make().global_batches(3)
    everything = Counter(w for b in make(even_batches=False).global_batches(0) for w in b)
    seen = Counter()
    for rank in range(3):
        seen.update(w for b in make(rank=rank, world_size=3, even_batches=False) for w in b)
    assert seen == everything


def test_batches_only_mix_caches_of_one_token_shape_and_respect_each_shapes_budget():
    sources = [MixtureSource([9, 8, 7], 1.0, 10, (4, 2, 2, 4)), MixtureSource([9, 8, 7], 1.0, 10, (4, 2, 2, 4)),
               MixtureSource([9, 8, 7], 1.0, 25, (4, 4, 4, 4))]
    batches = MixtureBatchSampler(sources, 3, [1], token_budget=150, seed=0).global_batches(0)
    assert any({w.source for w in b} == {0, 1} for b in batches)
    for b in batches:
        assert {w.source for w in b} <= {0, 1} or {w.source for w in b} == {2}
        tokens = 25 if b[0].source == 2 else 10
        assert len(b) <= max(1, 150 // (b[0].frames * tokens))


@pytest.mark.parametrize("weight", [0.0, -1.0, float("inf"), float("nan")])
def test_sampler_rejects_non_positive_weights(weight):
    with pytest.raises(ValueError, match="weight"):
        MixtureBatchSampler([MixtureSource([5], weight, 10, (1,))], 4, [1])


# -- batches from caches on disk ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_caches(tmp_path_factory):
    a = write_cache(tmp_path_factory.mktemp("sawyer"), "metaworld-sawyer", [6, 5, 7], seed=1)
    b = write_cache(tmp_path_factory.mktemp("libero"), "libero-franka", [6, 8], seed=2)
    return a, b


def _expected(cache_root, episode: int, f0: int, frames: int):
    """Normalised actions and mask of one window, from the files (the normalisation written out here)."""
    from safetensors.torch import load_file

    stats = json.loads((cache_root / "stats.json").read_text())
    q01, q99, used = (np.asarray(stats[k]) for k in ("q01", "q99", "used_mask"))
    index = CacheIndex.from_json((cache_root / "index.json").read_text())
    entry = next(e for e in index.segments if e.episode_index == episode)
    raw = load_file(str(cache_root / entry.file))["actions"][f0 : f0 + frames].numpy()
    mask = np.broadcast_to(used, raw.shape).copy()
    mask[0] = False
    return np.where(mask, 2 * (raw - q01) / (q99 - q01) - 1, 0.0), mask


def test_every_sample_carries_its_own_embodiments_mask_and_statistics(two_caches):
    a, b = two_caches
    cfg = _mixture_cfg((a, 1.0, "metaworld-sawyer"), (b, 1.0, "libero-franka"), window_frames=3, batch_size=4)
    dm = LatentDataModule(None, cfg, embodiment="metaworld-sawyer", seed=0)
    roots, mixed, seen = (a, b), 0, Counter()
    for batch in dm.train_dataloader():
        mixed += len(set(batch["source"].tolist())) > 1
        for i, src in enumerate(batch["source"].tolist()):
            f = batch["video"].shape[2]
            actions, mask = _expected(roots[src], int(batch["episode_index"][i]), int(batch["window_start"][i]), f)
            np.testing.assert_array_equal(batch["action_mask"][i].numpy(), mask)
            np.testing.assert_allclose(batch["actions"][i].numpy(), actions, rtol=1e-5, atol=1e-5)
            seen[src] += 1
    assert mixed and seen[0] and seen[1]  # both caches drawn, and into shared batches


def test_a_mixture_is_written_in_a_recipe_and_opened_from_the_config(two_caches):
    a, b = two_caches
    cfg = load_config(None, [f"data.mixture=[{{path: {a}, weight: 3}}, {{path: {b}, embodiment: libero-franka}}]",
                             "embodiment.name=metaworld-sawyer"])
    dm = LatentDataModule.from_config(cfg)
    dm.setup()
    assert [c.root for c in dm.caches] == [a, b]
    assert [s.weight for s in dm.batch_sampler().sources] == [3.0, 1.0]


def test_mixture_errors_name_the_entry_and_what_is_allowed(two_caches, tmp_path):
    a, b = two_caches
    cases = [
        (_mixture_cfg((a, 1.0, None), (b, -2.0, "libero-franka")), r"data\.mixture\[1\]\.weight=-2\.0.*positive"),
        (_mixture_cfg((a, 1.0, None), (tmp_path / "nope", 1.0, None)), r"data\.mixture\[1\]\.path=.*nope.*lbva prepare"),
        # the libero cache checked as a sawyer one (its entry names no embodiment: the run's is assumed)
        (_mixture_cfg((a, 1.0, None), (b, 1.0, None)), "stale cache"),
    ]
    for cfg, message in cases:
        with pytest.raises(DataError, match=message):
            LatentDataModule(None, cfg, embodiment="metaworld-sawyer").setup()
    with pytest.raises(StaleCacheError):
        LatentDataModule(None, cases[2][0], embodiment="metaworld-sawyer").setup()


def test_caches_of_a_mixture_must_share_the_encoders_widths(two_caches, tmp_path):
    a, _ = two_caches
    other = write_cache(tmp_path, "metaworld-sawyer", [5], latent_shape=(8, 2, 2))
    with pytest.raises(DataError, match=r"data\.mixture\[1\].*latent channels 8"):
        LatentDataModule(None, _mixture_cfg((a, 1.0, None), (other, 1.0, None)), embodiment="metaworld-sawyer").setup()


def test_a_mixture_replaces_the_single_cache_keys(two_caches):
    a, _ = two_caches
    cfg = load_config(None, [f"data.mixture=[{{path: {a}}}]", f"data.cache_dir={a}"])
    with pytest.raises(DataError, match=r"data\.mixture replaces data\.cache_dir"):
        LatentDataModule.from_config(cfg)


def test_a_one_cache_mixture_draws_each_window_of_the_cache_once_per_epoch(two_caches):
    a, _ = two_caches
    cfg = DataConfig(window_frames=3, batch_size=2)
    single = LatentDataModule(a, cfg, embodiment="metaworld-sawyer", seed=4)
    mixture = LatentDataModule(None, replace(cfg, mixture=[MixtureEntry(str(a))]), embodiment="metaworld-sawyer", seed=4)
    windows = [Counter((w.segment, w.f0, w.frames) for b in dm.batch_sampler().global_batches(0) for w in b)
               for dm in (single, mixture)]
    assert windows[0] == windows[1] and set(windows[0].values()) == {1}
    batches = list(mixture.train_dataloader())
    assert all((b["source"] == 0).all() for b in batches)
    assert all("source" not in b for b in single.train_dataloader())


def test_a_mixture_run_exports_with_its_own_embodiments_cache(tmp_path):
    """The policy a mixture run writes takes statistics and encoders from the cache of the run's embodiment."""
    from lbva.config import load_config
    from lbva.training.export import cache_dir

    cfg = load_config("demo/metaworld", [f"data.mixture=[{{path: {tmp_path / 'a'}, embodiment: libero-franka}}, "
                                         f"{{path: {tmp_path / 'b'}}}]"])
    assert cache_dir(cfg) == tmp_path / "b"  # the entry without an embodiment is the run's own (metaworld-sawyer)
    cfg.data.mixture = cfg.data.mixture[:1]
    with pytest.raises(ValueError, match="embodiment.name='metaworld-sawyer'"):
        cache_dir(cfg)
