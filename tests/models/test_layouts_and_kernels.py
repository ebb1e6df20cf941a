"""Both action-stream layouts through one code path; every CPU kernel applies the same mask; diffusers' Wan
loads into the video stream; activation checkpointing changes nothing but memory."""

import pytest
import torch

from model_inputs import A, C, DT, H, N, W, tiny_model  # noqa: F401
from model_inputs import full_inputs as _inputs

from lbva.config import load_config
from lbva.models import build_model
from lbva.models.lingbot_va import rope_tables


@pytest.fixture(scope="module")
def mot():
    return tiny_model("mot")


def test_mot_has_its_own_narrower_action_experts(mot):
    a = mot.arch
    assert a.action_width < a.dim
    blk = mot.action_blocks[0]
    assert blk.attn1.to_q.weight.shape == (a.dim, a.action_width)  # projected up to the joint attention width
    assert blk.attn1.to_out[0].weight.shape == (a.action_width, a.dim)  # and back
    assert blk.ffn.net[2].weight.shape == (a.action_width, a.action_ffn_dim)
    assert mot.action_proj_out.weight.shape == (30, a.action_width)


def test_mot_mask_future_video_never_reaches_past_actions(mot):
    inp = _inputs(4)
    with torch.no_grad():
        base = mot(**inp, chunk_size=2)
        inp["clean_video"][:, :, 2:] += 3.0  # chunk 1's clean video
        out = mot(**inp, chunk_size=2)
    torch.testing.assert_close(out.actions[:, :2], base.actions[:, :2], rtol=0, atol=0)
    assert not torch.allclose(out.actions[:, 2:], base.actions[:, 2:])  # action chunk 1 decodes from video ≤ 1


@pytest.mark.parametrize("fdm,window", [(False, None), (True, 1)])
def test_flex_kernel_equals_sdpa(mot, fdm, window):
    inp = _inputs(4, seed=3)
    with torch.no_grad():
        ref = mot(**inp, chunk_size=2, fdm=fdm, window=window)
        mot.attn_kernel = "flex"
        try:
            got = mot(**inp, chunk_size=2, fdm=fdm, window=window)
        finally:
            mot.attn_kernel = "sdpa"
    torch.testing.assert_close(got.video, ref.video, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.actions, ref.actions, rtol=1e-5, atol=1e-5)


def test_flash_kernel_refuses_a_masked_call(mot):
    from lbva.models.attention import Attend, MaskSpec

    ids = torch.tensor([0, 0, 2, 2])
    noisy = torch.tensor([False, False, True, True])
    with pytest.raises(ValueError, match="hides some keys"):
        Attend(MaskSpec(ids, noisy, ids, noisy), "flash")
    with pytest.raises(ValueError, match="unknown"):
        Attend(MaskSpec(ids, noisy, ids, noisy), "xformers")


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    cfg = load_config(None, ["model.size=tiny", "model.layout=mot"]).model
    m = build_model(cfg).train()
    inp = _inputs(2, seed=5)
    grads = []
    for ckpt in (False, True):
        m.activation_checkpointing = ckpt
        m.zero_grad()
        out = m(**inp, chunk_size=1)
        (out.video.square().mean() + out.actions.square().mean()).backward()
        grads.append([p.grad.clone() for p in m.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout, head_dim", [("shared", 24), ("mot", 24), ("shared", 64)])  # 64: Dh//3 is odd
def test_diffusers_wan_loads_into_the_video_stream(layout, head_dim, tmp_path):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    ref = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=head_dim, in_channels=16,
                                out_channels=16, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2,
                                cross_attn_norm=True, eps=1e-6, rope_max_seq_len=64).eval()
    with torch.no_grad():  # diffusers zero-inits nothing here, but make every weight count
        for p in ref.parameters():
            p.add_(0.02 * torch.randn_like(p))
    ref.save_pretrained(tmp_path / "wan")
    from lbva.models.checkpoints import load_diffusers_wan

    ours = load_diffusers_wan(tmp_path / "wan", layout=layout).eval()
    g = torch.Generator().manual_seed(1)
    x, text = torch.randn(2, 16, 3, 4, 6, generator=g), torch.randn(2, 7, 32, generator=g)
    sigma = torch.rand(2, 3, generator=g)
    with torch.no_grad():
        t = (sigma * 1000).repeat_interleave(2 * 3, dim=1)  # per-token timesteps (Wan2.2 TI2V style)
        want = ref(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
        got = ours(noisy_video=x, video_sigma=sigma, text=text, chunk_size=3).video
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    if layout == "mot":  # interpolated from the video weights, scaled by α on shrunk inputs
        a = ours.arch
        alpha = (a.dim / a.action_width) ** 0.5
        src, dst = ours.blocks[0].attn1.to_q.weight, ours.action_blocks[0].attn1.to_q.weight
        torch.testing.assert_close(dst[:, 0], src[:, 0] * alpha)
        torch.testing.assert_close(dst[:, -1], src[:, -1] * alpha)


def test_full_size_instantiates_on_meta():
    documented = {"shared": 5_088_872_670, "mot": 5_594_997_726}  # LingBotVA's docstring / README
    for layout in ("shared", "mot"):
        with torch.device("meta"):
            m = build_model(load_config(None, ["model.size=wan2.2-5b", f"model.layout={layout}"]).model)
        assert m.arch.dim == 3072 and len(m.blocks) == 30
        assert m.blocks[0].ffn.net[0].proj.weight.shape == (14336, 3072)
        assert m.patch_embedding_mlp.weight.shape == (3072, 48 * 4)
        assert sum(p.numel() for p in m.parameters()) == documented[layout]


@pytest.mark.parametrize("fdm,window", [(False, None), (True, None), (False, 2)])
def test_flex_block_mask_skips_exactly_the_empty_blocks(fdm, window):
    """The block mask flex attention runs lists a (query block, key block) pair iff the dense table has a visible
    cell in it (empty blocks cost nothing, the window included), and a block it marks full (mask not evaluated)
    has every cell visible; the interior blocks with every cell visible are all marked full."""
    from lbva.models.attention import Attend, MaskSpec

    # a training sequence: 6 chunks, clean copies then noisy copies, 40 tokens per video chunk, 8 per action chunk
    ids, noisy = [], []
    for flag in (False, True):
        for c in range(6):
            ids += [2 * c] * 40 + [2 * c + 1] * 8
            noisy += [flag] * 48
    ids, noisy = torch.tensor(ids), torch.tensor(noisy)
    att = Attend(MaskSpec(ids, noisy, ids, noisy, fdm=fdm, window=window), "flex")
    bm, dense = att.block_mask, att.mask
    qb, kb = bm.BLOCK_SIZE
    L = dense.shape[0]
    nq, nk = -(-L // qb), -(-L // kb)
    padded = torch.zeros(nq * qb, nk * kb, dtype=torch.bool)
    padded[:L, :L] = dense
    cells = padded.view(nq, qb, nk, kb).permute(0, 2, 1, 3)
    listed = bm.to_dense()[0, 0].bool()  # (nq, nk): blocks flex visits (partial or full)
    assert torch.equal(listed, cells.any(dim=(-1, -2)))
    full = torch.zeros(nq, nk, dtype=torch.bool)
    fi, fn = bm.full_kv_indices[0, 0], bm.full_kv_num_blocks[0, 0]
    for r in range(nq):
        full[r, fi[r, : fn[r]]] = True
    whole = cells.all(dim=(-1, -2))  # blocks with every cell visible (edge blocks hold padding: never whole)
    assert not (full & ~whole).any()  # never skips the mask where a cell is hidden
    assert torch.equal(full[: L // qb, : L // kb], whole[: L // qb, : L // kb])
    assert full.any() or window is not None  # without a window, whole blocks exist and run unmasked
    assert (~listed).sum() > 0  # the table really has empty blocks here


def _full_attention(q, k, v):
    return torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


def _layer_inputs(model, lengths, seed=0):
    """One hidden state, modulation and RoPE per expert (video, action); None where ``lengths`` has None."""
    g = torch.Generator().manual_seed(seed)
    widths = (model.arch.dim, model.arch.action_width)
    xs, mods, ropes = [None, None], [None, None], [None, None]
    for e, (L, d) in enumerate(zip(lengths, widths)):
        if L is not None:
            xs[e] = torch.randn(1, L, d, generator=g)
            mods[e] = torch.randn(1, L, 6, d, generator=g) * 0.1
            ang = torch.rand(L, model.arch.attention_head_dim // 2, generator=g)
            ropes[e] = rope_tables(ang)
    text_kv = model.text_context(torch.randn(1, 5, DT, generator=g))[0]
    return xs, mods, ropes, text_kv


def test_a_layer_takes_one_hidden_state_per_expert_and_none_for_an_absent_one(mot):
    shared = tiny_model("shared")
    assert shared._experts(0)[1] is None  # shared: the action tokens use the video expert's blocks
    assert mot._experts(0) == (mot.blocks[0], mot.action_blocks[0])
    with torch.no_grad():
        for model, lengths in ((shared, (6, None)), (mot, (6, None)), (mot, (None, 4)), (mot, (6, 4))):
            xs, mods, ropes, tkv = _layer_inputs(model, lengths)
            out = model._layer(0, xs, mods, ropes, tkv, _full_attention, None)
            assert [None if y is None else y.shape for y in out] == [None if x is None else x.shape for x in xs]
        # the experts meet in one attention: the action expert's tokens change the video expert's output
        xs, mods, ropes, tkv = _layer_inputs(mot, (6, 4))
        both = mot._layer(0, xs, mods, ropes, tkv, _full_attention, None)
        alone = mot._layer(0, [xs[0], None], mods[:1] + [None], ropes[:1] + [None], tkv, _full_attention, None)
    assert not torch.allclose(both[0], alone[0])
