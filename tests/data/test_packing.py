"""data.pack_tokens: windows packed into one sequence compute exactly what each computes alone."""

from collections import Counter
from dataclasses import replace

import pytest
import torch
from cache_writer import write_cache

from lbva.config import load_config
from lbva.config.data import DataConfig, MixtureEntry
from lbva.data.datamodule import LatentDataModule, LatentWindowDataset, TokenBudgetBatchSampler
from lbva.models import build_model, lingbot_va
from lbva.models.attention import AttentionWindow, frames_within_episode

C, H, W, N, A, DT = 16, 4, 4, 3, 30, 64
EPISODE_FRAMES = (4, 5)  # with chunks of 3 the second episode's chunks line up only if its frames restart


def _episode(F, seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    return {"noisy_video": r(1, C, F, H, W), "video_sigma": torch.rand(1, F, generator=g),
            "noisy_actions": r(1, F, N, A), "action_sigma": torch.rand(1, F, generator=g),
            "clean_video": r(1, C, F, H, W), "clean_video_sigma": torch.rand(1, F, generator=g) * 0.3,
            "clean_actions": r(1, F, N, A)}


def _packed(episodes):
    out = {}
    for k in episodes[0]:
        axis = 2 if episodes[0][k].ndim == 5 else 1
        out[k] = torch.cat([e[k] for e in episodes], dim=axis)
    frames = [e["video_sigma"].shape[1] for e in episodes]
    return out, torch.arange(len(episodes)).repeat_interleave(torch.tensor(frames))


@pytest.fixture(scope="module", params=["shared", "mot"])
def model(request):
    torch.manual_seed(0)
    return build_model(load_config(None, ["model.size=tiny", f"model.layout={request.param}"]).model).eval()


@pytest.mark.parametrize("chunk_size,window,fdm", [(1, None, False), (2, None, True), (2, AttentionWindow("released", 3), False),
                                                   (3, AttentionWindow("chunks", 1), True)])
def test_a_packed_sequence_gives_each_episode_its_own_outputs(model, chunk_size, window, fdm):
    episodes = [_episode(F, seed) for seed, F in enumerate(EPISODE_FRAMES)]
    text = torch.randn(1, 5, DT, generator=torch.Generator().manual_seed(9))
    kw = {"text": text, "chunk_size": chunk_size, "window": window, "fdm": fdm}
    with torch.no_grad():
        alone = [model(**e, **kw) for e in episodes]
        inputs, frame_episode = _packed(episodes)
        packed = model(**inputs, **kw, frame_episode=frame_episode)
        unmasked = model(**inputs, **kw)
    starts = [0, EPISODE_FRAMES[0]]
    for out, f0, F in zip(alone, starts, EPISODE_FRAMES):
        torch.testing.assert_close(packed.video[:, :, f0 : f0 + F], out.video, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(packed.actions[:, f0 : f0 + F], out.actions, rtol=1e-4, atol=1e-5)
    # without frame_episode the second episode sees the first: the comparison above has teeth
    assert not torch.allclose(unmasked.video[:, :, starts[1] :], alone[1].video, atol=1e-3)


def _naive_packed_visible(q, k, fdm):
    """Token q may see token k: the mask table of docs/architecture.md written out, on (episode, local frame,
    modality, noisy) tuples, with chunk ids counted from each episode's first frame."""
    (eq, fq, mq, nq), (ek, fk, mk, nk) = q, k
    if eq != ek:
        return False
    qi, ki = fq // 3 * 2 + mq, fk // 3 * 2 + mk  # chunk size 3
    if not nq:
        return (not nk) and ki <= qi
    if nk:
        return ki == qi
    return ki < qi or (fdm and qi % 2 == 0 and ki == qi + 1)


@pytest.mark.parametrize("fdm", [False, True])
def test_the_packed_mask_is_the_naive_table_per_episode_and_never_crosses(model, monkeypatch, fdm):
    seen = []

    class Recording(lingbot_va.Attend):
        def __init__(self, spec, kernel="sdpa"):
            super().__init__(spec, kernel)
            seen.append(spec.dense())

    monkeypatch.setattr(lingbot_va, "Attend", Recording)
    inputs, frame_episode = _packed([_episode(F, seed) for seed, F in enumerate(EPISODE_FRAMES)])
    with torch.no_grad():
        model(**inputs, text=torch.zeros(1, 5, DT), chunk_size=3, fdm=fdm, frame_episode=frame_episode)
    (mask,) = seen
    # token order of the joint sequence: video copies (noisy, clean), then action copies (noisy, clean);
    # the tiny model patches 2x2, so a frame has (H/2)*(W/2) video tokens
    local = [f for F in EPISODE_FRAMES for f in range(F)]
    episode = frame_episode.tolist()
    tokens = [(episode[f], local[f], m, noisy) for m, per_frame in ((0, H * W // 4), (1, N)) for noisy in (True, False)
              for f in range(sum(EPISODE_FRAMES)) for _ in range(per_frame)]
    assert mask.shape == (len(tokens), len(tokens))
    want = torch.tensor([[_naive_packed_visible(q, k, fdm) for k in tokens] for q in tokens])
    assert torch.equal(mask, want)
    crossing = torch.tensor([[q[0] != k[0] for k in tokens] for q in tokens])
    assert not mask[crossing].any()


def test_frames_within_episode_restart_at_each_boundary():
    frame_episode = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    assert frames_within_episode(frame_episode).tolist() == [0, 1, 2, 0, 1, 0, 0, 1, 2, 3]


# -- the data layer -----------------------------------------------------------------------------------------


def test_packs_hold_one_instruction_within_the_budget_and_cover_the_epochs_windows():
    frames = [9, 2, 17, 5, 8, 3, 12, 6]
    texts = [0, 1, 0, 0, 1, 2, 0, 1]
    common = {"num_frames": frames, "window_frames": 4, "chunk_sizes": [1, 2], "tokens_per_frame": 10, "seed": 2}
    packed = TokenBudgetBatchSampler(**common, pack_tokens=100, text_ids=texts)
    plain = TokenBudgetBatchSampler(**common, batch_size=1)
    batches = packed.global_batches(0)
    for b in batches:
        assert sum(w.frames for w in b) * 10 <= 100
        assert len({texts[w.segment] for w in b}) == 1 and len({w.chunk_size for w in b}) == 1
    key = lambda w: (w.segment, w.f0, w.frames)
    assert Counter(key(w) for b in batches for w in b) == Counter(key(w) for b in plain.global_batches(0) for w in b)
    # packs are full: per instruction, at most one pack could have taken the next pack's first window
    for t in set(texts):
        packs = [b for b in batches if texts[b[0].segment] == t]
        assert sum(sum(w.frames for w in b) * 10 + 40 <= 100 for b in packs) <= 1
    assert len(batches) < len(plain.global_batches(0)) / 2


def test_pack_tokens_must_hold_a_window_and_replaces_the_token_budget():
    common = {"num_frames": [5], "window_frames": 4, "chunk_sizes": [1], "tokens_per_frame": 10, "text_ids": [0]}
    with pytest.raises(ValueError, match=r"data\.pack_tokens=39 cannot hold one window.*at least 40"):
        TokenBudgetBatchSampler(**common, pack_tokens=39)
    with pytest.raises(ValueError, match="unset token_budget"):
        TokenBudgetBatchSampler(**common, pack_tokens=40, token_budget=100)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    texts = ["open the drawer", "close the drawer", "open the drawer", "open the drawer", "close the drawer"]
    return write_cache(tmp_path_factory.mktemp("packing"), "metaworld-sawyer", [6, 5, 7, 4, 8], texts=texts, seed=5)


@pytest.mark.parametrize("mixture", [False, True])
def test_a_packed_batch_is_its_windows_concatenated(cache, mixture):
    cfg = DataConfig(window_frames=3, pack_tokens=400)
    if mixture:
        cfg = replace(cfg, mixture=[MixtureEntry(str(cache))])
    dm = LatentDataModule(None if mixture else cache, cfg, embodiment="metaworld-sawyer", seed=1)
    dm.setup()
    single = LatentWindowDataset(dm.cache, dm.cache.stats(), dm.cache.used_mask())
    refs = list(dm.batch_sampler())
    batches = list(dm.train_dataloader())
    assert len(batches) == len(refs) and any(len(r) > 1 for r in refs)
    tokens = 2 * ((2 // 2) * (2 // 2) + 4)  # the cache's 2x2 latents at patch 2, 4 actions per frame
    for ref, batch in zip(refs, batches):
        F = batch["video"].shape[2]
        assert batch["video"].shape[0] == 1 and F * tokens <= 400
        assert batch["frame_episode"].tolist() == [i for i, w in enumerate(ref) for _ in range(w.frames)]
        f0 = 0
        for i, w in enumerate(ref):
            item = single[w]
            sl = slice(f0, f0 + w.frames)
            torch.testing.assert_close(batch["video"][0, :, sl], item["video"], rtol=0, atol=0)
            torch.testing.assert_close(batch["actions"][0, sl], item["actions"], rtol=0, atol=0)
            assert torch.equal(batch["action_mask"][0, sl], item["action_mask"])
            assert torch.equal(batch["text"][0], item["text"])
            assert int(batch["episode_index"][i]) == item["episode_index"]
            assert int(batch["window_start"][i]) == item["window_start"]
            f0 += w.frames
        assert f0 == F


def test_training_hands_a_packed_batch_its_episodes_to_the_model(cache):
    """The objective passes a packed batch's ``frame_episode`` on: without it every window would see the others."""
    from lbva.config.objective import ObjectiveConfig
    from lbva.models.lingbot_va import ModelOutput
    from lbva.objectives import FlowMatchingObjective

    dm = LatentDataModule(cache, DataConfig(window_frames=3, pack_tokens=400), embodiment="metaworld-sawyer", seed=1)
    dm.setup()
    batch = next(b for b in dm.train_dataloader() if int(b["frame_episode"].max()) > 0)  # two windows or more
    seen = {}

    class Recorder(torch.nn.Module):
        def forward(self, **kw):
            seen.update(kw)
            return ModelOutput(video=torch.zeros_like(kw["noisy_video"]), actions=torch.zeros_like(kw["noisy_actions"]))

    FlowMatchingObjective(ObjectiveConfig())(Recorder(), batch, torch.Generator().manual_seed(0))
    assert torch.equal(seen["frame_episode"], batch["frame_episode"])
