"""lbva and LeRobot's own lingbot_va transformer give the same numbers for the same weights and inputs.

Axis legend: B batch (2 text rows, as LeRobot's CFG batch), C latent channels, K latent frames per chunk, H/W latent
height/width, N actions per latent frame, A = 30 action slots, Lt/Dt text tokens/width.

Both directions: a tiny random lbva model exported by ``lbva.interop`` and loaded by LeRobot's
``LingBotVAPolicy.from_pretrained``, and a LeRobot-built policy saved by LeRobot and read by lbva. The streaming
scenario is the released inference order — video call, imagined video written, action call, imagined entries
dropped, real chunk written, next chunk — on LeRobot's slot cache and lbva's ``model.stream`` cache with the
released window of LeRobot's ``attn_window``: short of the point where LeRobot's cache starts evicting, and for
several chunks past it. LeRobot rotates in float64 and lbva in float32, hence an fp32 tolerance rather than bit
equality.
"""

import numpy as np
import pytest
import torch
from lerobot_interop import EMBODIMENT, lerobot_config, save_lerobot_policy, slot_stats, tiny_model

from lbva.interop.lerobot import lerobot_model
from lbva.interop.lerobot_export import export_lerobot
from lbva.interop.lerobot_folder import read_lerobot_folder
from lbva.models.attention import AttentionWindow

K, N, A, H, W = 2, 4, 30, 4, 6
TOL = dict(rtol=1e-4, atol=1e-4)


class LeRobotSide:
    """Single-stream calls on LeRobot's WanTransformer3DModel with its KV cache."""

    def __init__(self, transformer, text, window=8):
        from lerobot.policies.lingbot_va.utils import data_seq_to_patch, get_mesh_id

        self.tr, self.text = transformer, text
        self.mesh, self.unpatch = get_mesh_id, data_seq_to_patch
        p = transformer.config.patch_size
        lv, la = K * H * W // (p[0] * p[1] * p[2]), K * N
        transformer.create_empty_cache("pos", window, lv, la, device="cpu", dtype=torch.float32, batch_size=text.shape[0])

    def call(self, modality, x, sigma, chunk, update):
        B, f0 = x.shape[0], chunk * K
        if modality == "video":
            grid = self.mesh(K, H // 2, W // 2, 0, 1, f0)
            inp = {"noisy_latents": x, "timesteps": sigma * 1000, "grid_id": grid[None].repeat(B, 1, 1), "text_emb": self.text}
            out = self.tr(inp, update_cache=update, cache_name="pos", action_mode=False)
            return self.unpatch((1, 2, 2), out, K, H, W, batch_size=B)
        a = x.permute(0, 3, 1, 2)[..., None]  # (B, A, K, N, 1), LeRobot's action layout
        grid = self.mesh(K, N, 1, 1, 1, f0, action=True)
        inp = {"noisy_latents": a, "timesteps": sigma * 1000, "grid_id": grid[None].repeat(B, 1, 1), "text_emb": self.text}
        out = self.tr(inp, update_cache=update, cache_name="pos", action_mode=True)  # (B, K·N, A)
        return out.reshape(B, K, N, A)

    def query(self, modality, x, sigma, chunk):
        return self.call(modality, x, sigma, chunk, update=0)

    def write(self, modality, x, sigma, chunk, imagined):
        return self.call(modality, x, sigma, chunk, update=1 if imagined else 2)

    def drop_imagined(self, chunk):
        self.tr.clear_pred_cache("pos")


class LbvaSide:
    def __init__(self, model, text, window=8):
        w = window if isinstance(window, AttentionWindow) else AttentionWindow.from_attn_window(window)
        capacity = w.capacity_tokens(*model.chunk_tokens(H, W, K, N))
        self.model, self.cache, self.tkv = model, model.new_cache(capacity, w), model.text_context(text)

    def query(self, modality, x, sigma, chunk):
        return self.model.stream(self.cache, self.tkv, modality, x, sigma, chunk=chunk, chunk_size=K)

    def write(self, modality, x, sigma, chunk, imagined):
        return self.model.stream(self.cache, self.tkv, modality, x, sigma, chunk=chunk, chunk_size=K,
                                 write=(chunk, modality, imagined))

    def drop_imagined(self, chunk):
        self.cache.drop(chunk, None, imagined_only=True)


def _scenario(side, inputs):
    """The released inference order over two chunks; returns every call's output."""
    v0, a0, v1, a1, real_v0, real_a0, text = inputs
    B = v0.shape[0]
    s = lambda *vals: torch.tensor([vals] * B, dtype=torch.float32)  # noqa: E731  (B, K) σ per latent frame
    outs = {}
    outs["video 0, no history"] = side.query("video", v0, s(0.0, 0.7), 0)  # frame 0 is the conditioning frame
    outs["imagined video 0 written"] = side.write("video", v0, s(0.0, 0.0), 0, True)
    outs["actions 0 on imagined video"] = side.query("actions", a0, s(0.0, 0.6), 0)
    outs["imagined actions 0 written"] = side.write("actions", a0, s(0.0, 0.0), 0, True)
    side.drop_imagined(0)
    outs["real video 0 written"] = side.write("video", real_v0, s(0.0, 0.0), 0, False)
    outs["real actions 0 written"] = side.write("actions", real_a0, s(0.0, 0.0), 0, False)
    outs["video 1 with history"] = side.query("video", v1, s(0.8, 0.8), 1)
    outs["partially denoised video 1 written"] = side.write("video", v1, s(0.3, 0.3), 1, True)  # σ = stop
    outs["actions 1 with history"] = side.query("actions", a1, s(0.5, 0.5), 1)
    return outs


def _inputs(C, text_dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    B = 2
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    text = r(B, 7, text_dim)
    text[1, 3:] = 0  # a shorter prompt, zero-padded like umT5's
    used = torch.zeros(A)
    used[[0, 1, 2, 28]] = 1
    acts = lambda: r(B, K, N, A) * used  # noqa: E731
    a0 = acts()
    a0[:, 0] = 0  # the conditioning frame's actions are zero
    return (r(B, C, K, H, W), a0, r(B, C, K, H, W), acts(), r(B, C, K, H, W), acts(), text)


def _compare(lbva_model, lerobot_transformer):
    inputs = _inputs(lbva_model.in_channels, lbva_model.text_dim)
    with torch.no_grad():
        ours = _scenario(LbvaSide(lbva_model, inputs[-1]), inputs)
        theirs = _scenario(LeRobotSide(lerobot_transformer, inputs[-1]), inputs)
    for name in ours:
        assert ours[name].shape == theirs[name].shape, name
        torch.testing.assert_close(ours[name], theirs[name], **TOL, msg=lambda m, n=name: f"{n}: {m}")
    # the history matters: the same chunk-1 query without the chunk-0 history gives other numbers
    with torch.no_grad():
        fresh = LbvaSide(lbva_model, inputs[-1]).query("video", inputs[2], torch.full((2, K), 0.8), 1)
    assert (fresh - ours["video 1 with history"]).abs().max() > 1e-3


def _long_scenario(side, model, chunks, seed=11):
    """The released inference order over ``chunks`` chunks (2 text rows, new random inputs each chunk)."""
    g = torch.Generator().manual_seed(seed)
    B, C = 2, model.in_channels
    text = torch.randn(B, 7, model.text_dim, generator=g)
    used = torch.zeros(A)
    used[[0, 1, 2, 28]] = 1
    s = lambda *vals: torch.tensor([vals] * B, dtype=torch.float32)  # noqa: E731
    outs = []
    for c in range(chunks):
        v, real_v = torch.randn(B, C, K, H, W, generator=g), torch.randn(B, C, K, H, W, generator=g)
        a, real_a = torch.randn(B, K, N, A, generator=g) * used, torch.randn(B, K, N, A, generator=g) * used
        first = 0.0 if c == 0 else 0.8  # chunk 0 starts with the conditioning frame at σ = 0
        outs.append(side.query("video", v, s(first, 0.8), c))
        outs.append(side.write("video", v, s(first * 0.5, 0.3), c, True))
        outs.append(side.query("actions", a, s(0.0 if c == 0 else 0.6, 0.6), c))
        outs.append(side.write("actions", a, s(0.0, 0.0), c, True))
        side.drop_imagined(c)
        outs.append(side.write("video", real_v, s(0.0, 0.0), c, False))
        outs.append(side.write("actions", real_a, s(0.0, 0.0), c, False))
    return outs, text


@pytest.mark.parametrize("attn_window", [4, 5, 6])
def test_streaming_past_lerobots_eviction_point_equals_lerobot(exported, attn_window):
    """Six chunks through caches holding attn_window // 2 chunks: LeRobot's starts evicting at chunk 2 or 3, and
    every call after that still gives LeRobot's numbers. The mapping lbva used before (whole chunks,
    attn_window // 2 of them) hides the actions LeRobot still shows and gives other numbers there."""
    model, policy = exported
    tr = policy.transformer.float().eval()
    chunks = 6
    _, text = _long_scenario(None, model, 0)
    with torch.no_grad():
        theirs, _ = _long_scenario(LeRobotSide(tr, text, window=attn_window), model, chunks)
        ours_side = LbvaSide(model, text, window=attn_window)
        ours, _ = _long_scenario(ours_side, model, chunks)
        old, _ = _long_scenario(LbvaSide(model, text, window=AttentionWindow("chunks", attn_window // 2)), model,
                                chunks)
    cap = attn_window // 2
    held = {t[0] for t in ours_side.cache.tags()}
    assert held == set(range(chunks - cap, chunks)), held  # the lbva cache evicted like LeRobot's
    slots = tr.blocks[0].attn1.attn_caches["pos"]["mask"]
    assert int(slots.sum()) == ours_side.cache.size == cap * (12 + K * N)  # LeRobot's is as full
    for i, (a, b) in enumerate(zip(ours, theirs)):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, i=i: f"call {i} (chunk {i // 6}): {m}")
    # past the eviction point the old whole-chunk mapping differs from the release
    late = slice(6 * (cap + 1), None)
    assert max(float((a - b).abs().max()) for a, b in zip(old[late], theirs[late])) > 1e-3


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny lbva model -> export_lerobot -> LeRobot's LingBotVAPolicy.from_pretrained."""
    from lerobot.policies.lingbot_va import LingBotVAPolicy

    root = tmp_path_factory.mktemp("exp")
    model = tiny_model(seed=3)
    model.save_pretrained(root / "model")
    export_lerobot(root / "model", root / "lerobot", embodiment=EMBODIMENT, stats=slot_stats(),
                   approximate=True, progress=False)
    policy = LingBotVAPolicy.from_pretrained(str(root / "lerobot"))
    return model, policy


def test_exported_weights_arrive_unchanged_in_lerobot(exported):
    model, policy = exported
    ours, theirs = model.state_dict(), policy.transformer.state_dict()
    assert set(ours) == set(theirs)
    for k in ours:
        assert torch.equal(ours[k], theirs[k].to(ours[k].dtype)), k


def test_lbva_exported_model_streams_like_lerobot(exported):
    model, policy = exported
    _compare(model, policy.transformer.float().eval())


def test_lerobot_saved_policy_streams_like_lbva(tmp_path):
    policy = save_lerobot_policy(tmp_path / "lr")
    model = lerobot_model(read_lerobot_folder(tmp_path / "lr")).eval()
    _compare(model, policy.transformer.float().eval())


def test_full_forward_equals_lerobot_single_stream_calls(exported):
    """No cache at all: lbva's masked full forward (one noisy video chunk) equals LeRobot's cache-less call."""
    model, policy = exported
    v, _, _, _, _, _, text = _inputs(model.in_channels, model.text_dim, seed=5)
    sigma = torch.tensor([[0.0, 0.9], [0.4, 0.2]])
    tr = policy.transformer.float().eval()
    tr.clear_cache("pos")  # another test's streaming cache
    from lerobot.policies.lingbot_va.utils import data_seq_to_patch, get_mesh_id

    grid = get_mesh_id(K, H // 2, W // 2, 0, 1, 0)
    with torch.no_grad():
        theirs = tr({"noisy_latents": v, "timesteps": sigma * 1000, "grid_id": grid[None].repeat(2, 1, 1),
                     "text_emb": text})
        theirs = data_seq_to_patch((1, 2, 2), theirs, K, H, W, batch_size=2)
        ours = model(noisy_video=v, video_sigma=sigma, text=text, chunk_size=K).video
    torch.testing.assert_close(ours, theirs, **TOL)


# ------------------------------------------------------------------------------------------------ whole policies
class _FrameIdEncoder:
    """Stands in for the frozen VAE on both sides: a frame whose pixels all equal j encodes to table[j]."""

    temporal_stride = 1
    latent_channels = 48
    spatial_stride = 16

    def __init__(self, table):
        self.table = table  # (J, 48, h, w)

    def encode(self, frames):  # uint8 (1, T, H, W, 3) -> (1, 48, T, h, w)
        ids = torch.as_tensor(frames)[0, :, 0, 0, 0].long()
        return self.table[ids].permute(1, 0, 2, 3)[None].clone()


class _PromptEncoder:
    def __init__(self, table):
        self.table, self.dim, self.max_length = table, 64, 7

    def encode(self, texts):
        return torch.cat([self.table[t] for t in texts])


@pytest.mark.parametrize("attn_window,chunks", [(8, 2), (2, 4), (4, 5)])
def test_lerobot_policy_predicts_the_chunks_lbva_policy_predicts(tmp_path, monkeypatch, attn_window, chunks):
    """Closed-loop chunks (CFG on both streams, partial video denoising, q01/q99 with a reversed gripper) from
    LeRobot's LingBotVAPolicy and from lbva's Policy on the bundle read from LeRobot's folder, with the same initial
    noise, the same encoded frames and prompt embeddings, and each chunk's actions fed back. With attn_window 2 and 4
    LeRobot's cache (1 and 2 chunks) evicts from chunk 1 and 2 on: lbva's Policy, given the released window the
    folder's attn_window names, still predicts LeRobot's chunks after that."""
    from types import SimpleNamespace

    from lerobot.processor import PolicyProcessorPipeline
    from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action

    from lbva.embodiment import get_embodiment
    from lbva.inference import Policy
    from lbva.interop.lerobot import load_lerobot_policy

    cfg = lerobot_config(in_channels=48, out_channels=48, guidance_scale=2.0, action_guidance_scale=1.5,
                         num_inference_steps=4, video_exec_step=3, action_num_inference_steps=3, snr_shift=3.0,
                         action_snr_shift=0.5, attn_window=attn_window)
    lr = save_lerobot_policy(tmp_path / "lr", cfg, q01=[-0.5, -1.0, 0.2, 1.0], q99=[0.5, 2.0, 0.9, -1.0])
    bundle = load_lerobot_policy(tmp_path / "lr", encoders=False)
    inf = bundle.config.inference
    assert (inf.video_steps, inf.action_steps, inf.window, inf.window_size) == (2, 3, "released", attn_window - 1)

    g = torch.Generator().manual_seed(7)
    frames_tab = torch.randn(2 * chunks, 48, 4, 4, generator=g)  # frame ids 0 (conditioning), 1, 2, ...
    text, null = torch.randn(1, 7, 64, generator=g), torch.zeros(1, 7, 64)
    text[:, 5:] = 0
    zv = [torch.randn(1, 48, K, 4, 4, generator=g) for _ in range(chunks)]
    za = [torch.randn(1, K, N, A, generator=g) for _ in range(chunks)]
    real_randn = torch.randn

    def fake_randn_factory():
        count = {"v": 0, "a": 0}

        def fake(*shape, **kw):
            shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
            if shape == (1, 48, K, 4, 4):
                count["v"] += 1
                return zv[count["v"] - 1].clone()
            if shape == (1, K, N, A):
                count["a"] += 1
                return za[count["a"] - 1].clone()
            if shape == (1, A, K, N, 1):
                count["a"] += 1
                return za[count["a"] - 1].permute(0, 3, 1, 2)[..., None].clone()
            return real_randn(*shape, **kw)

        return fake

    def feedback(c):  # the real keyframes of chunk c: frame 1 after the conditioning frame 0, then two per chunk
        return [1] if c == 0 else [2 * c, 2 * c + 1]

    cam = "observation.images.corner"
    # LeRobot: its own loop with the frozen modules replaced by the frame-id table
    lr.eval()
    lr._frozen = {"streaming_vae": SimpleNamespace(clear_cache=lambda: None)}
    lr.reset()
    lr._prompt_embeds, lr._negative_prompt_embeds = text.clone(), null.clone()
    lr._encode_frames = lambda raw: torch.cat(
        [frames_tab[round(float(fb[cam].flatten()[0]) * 255)][None, :, None] for fb in raw], 2)
    post = PolicyProcessorPipeline.from_pretrained(
        str(tmp_path / "lr"), config_filename="policy_postprocessor.json",
        to_transition=policy_action_to_transition, to_output=transition_to_policy_action)
    batch = lambda j: {cam: torch.full((1, 3, 64, 64), j / 255.0)}  # noqa: E731
    monkeypatch.setattr(torch, "randn", fake_randn_factory())
    theirs = [post(lr.predict_action_chunk(batch(0)))[0].numpy()]
    for c in range(1, chunks):
        lr._obs_buffer = [batch(j) for j in feedback(c - 1)]
        theirs.append(post(lr.predict_action_chunk(None))[0].numpy())
    held = int(lr.transformer.blocks[0].attn1.attn_caches["pos"]["mask"].sum())

    # lbva: the Policy on the bundle read from LeRobot's folder
    monkeypatch.setattr(torch, "randn", fake_randn_factory())
    pol = Policy(bundle.model, get_embodiment(EMBODIMENT), _FrameIdEncoder(frames_tab),
                 _PromptEncoder({"pick": text, "": null}), bundle.config, stats=bundle.stats)
    pol.reset("pick")
    obs = lambda j: torch.full((64, 64, 3), j, dtype=torch.uint8).numpy()  # noqa: E731
    ours = [pol.predict_action_chunk({cam: obs(0)})]
    for c in range(1, chunks):
        pol.observe(np.stack([obs(j) for j in feedback(c - 1)]), ours[-1])
        ours.append(pol.predict_action_chunk())
    monkeypatch.setattr(torch, "randn", real_randn)

    cap = attn_window // 2
    assert held == pol.predictor.session.cache.size  # the two caches hold as many tokens
    if chunks > cap + 1:  # both full (8 video + 8 action tokens a chunk) and chunk 0 gone: past eviction
        assert held == cap * (8 + K * N) and min(t[0] for t in pol.predictor.session.cache.tags()) > 0
    for c, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape == ((K - 1 if c == 0 else K) * N, 4)
        torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=1e-4, atol=1e-4,
                                   msg=lambda m, c=c: f"chunk {c}: {m}")
    assert abs(ours[1] - ours[0][:1]).max() > 1e-3  # not a constant


# ------------------------------------------------------------------------------------------------ training loss
def _to_lerobot_seq(x):
    """(B, C, F, H, W) -> LeRobot's training output layout (B, F·h·w·p1·p2, C), sub-patch-major."""
    B, C, F_, H_, W_ = x.shape
    return x.reshape(B, C, F_, 1, H_ // 2, 2, W_ // 2, 2).permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(B, -1, C)


@pytest.mark.parametrize("action_loss", ["per_token", "per_frame"])
@pytest.mark.parametrize("frame0_valid", [True, False])
def test_training_loss_reduction_matches_lerobot(frame0_valid, action_loss):
    """LeRobot's training forward needs flex attention compiled in bf16, which does not run on this CPU in fp32;
    its mask equals ours (test_lerobot_training_mask.py) and its blocks equal ours (the streaming tests above).
    Here its loss (``_flow_matching_loss``, bsmntw weights from its training schedulers) is applied to lbva's
    predictions, σ and noise on a fixed batch and compared with lbva's objective (bsmntw, no text dropout, no
    noisy history — LeRobot's defaults differ there by design: it never drops the prompt and re-noises the history
    with p = 0.5 per batch). With every frame's actions valid the two losses are equal. lbva's batches mark the
    segment's first frame invalid, and LeRobot averages per (sample, frame) row with an empty row counting as 0: with
    ``action_loss=per_frame`` (the release's reduction) the two are still equal, with ``per_token`` LeRobot's action
    loss is lbva's × valid rows / all rows."""
    from lerobot.policies.lingbot_va import LingBotVAPolicy
    from lerobot.policies.lingbot_va.utils import data_seq_to_patch

    from lbva.config.objective import ObjectiveConfig
    from lbva.objectives import FlowMatchingObjective

    model = tiny_model(seed=4)
    B, C, F_, N_ = 2, model.in_channels, 3, 4
    g = torch.Generator().manual_seed(0)
    video = torch.randn(B, C, F_, H, W, generator=g)
    used = torch.zeros(A, dtype=torch.bool)
    used[[0, 1, 2, 28]] = True
    mask = used.view(1, 1, 1, A).expand(B, F_, N_, A).clone()
    if not frame0_valid:
        mask[:, 0] = False
    actions = torch.randn(B, F_, N_, A, generator=g) * used
    batch = {"video": video, "actions": actions, "action_mask": mask, "text": torch.randn(B, 7, 64, generator=g),
             "chunk_size": 1}
    seen = {}

    def recording(**kw):
        seen.update(kw)
        return model(**kw)

    obj = FlowMatchingObjective(ObjectiveConfig(video_shift=5.0, action_shift=0.05, loss_weighting="bsmntw",
                                                noisy_history_prob=0.0, text_dropout=0.0, action_loss=action_loss))
    with torch.no_grad():
        ours = obj(recording, batch, generator=torch.Generator().manual_seed(1))
        out = model(**seen)
    sv, sa = seen["video_sigma"], seen["action_sigma"]
    uv = (seen["noisy_video"] - video) / sv.view(B, 1, F_, 1, 1)  # ε − x0 from x_σ = x0 + σ(ε − x0)
    ua = (seen["noisy_actions"] - actions) / sa.view(B, F_, 1, 1)
    lr = LingBotVAPolicy(lerobot_config(snr_shift=5.0, action_snr_shift=0.05))
    lr._ensure_train_schedulers()
    seq = _to_lerobot_seq(out.video)
    torch.testing.assert_close(data_seq_to_patch((1, 2, 2), seq, F_, H, W, batch_size=B), out.video)  # layout check
    lerobot_mask = mask.permute(0, 3, 1, 2)[..., None].float()  # (B, A, F, N, 1)
    inputs = {
        "latent_dict": {"targets": uv, "timesteps": sv * 1000},
        "action_dict": {"targets": ua.permute(0, 3, 1, 2)[..., None] * lerobot_mask, "timesteps": sa * 1000,
                        "actions_mask": lerobot_mask},
    }
    latent_loss, lerobot_action_loss = lr._flow_matching_loss(inputs, (seq, out.actions.reshape(B, F_ * N_, A)))
    torch.testing.assert_close(latent_loss, ours.terms["loss_dyn"], rtol=1e-4, atol=1e-6)
    scale = 1.0 if frame0_valid or action_loss == "per_frame" else (F_ - 1) / F_  # the release's reduction is exact
    torch.testing.assert_close(lerobot_action_loss, ours.terms["loss_inv"] * scale, rtol=1e-4, atol=1e-6)
