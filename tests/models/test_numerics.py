"""bf16 autocast stays close to fp32; torch.compile gives the eager numbers; RoPE matches a float64 reference."""

import pytest
import torch

from lbva.config import load_config
from lbva.models import build_model


def _tiny_and_inputs():
    torch.manual_seed(0)
    m = build_model(load_config(None, ["model.size=tiny"]).model).eval()
    g = torch.Generator().manual_seed(0)
    inp = dict(noisy_video=torch.randn(1, 16, 2, 4, 4, generator=g), video_sigma=torch.rand(1, 2, generator=g),
               noisy_actions=torch.randn(1, 2, 3, 30, generator=g), action_sigma=torch.rand(1, 2, generator=g),
               text=torch.randn(1, 5, 64, generator=g))
    return m, inp


def test_bf16_autocast_is_close_to_fp32():
    m, inp = _tiny_and_inputs()
    with torch.no_grad():
        ref = m(**inp, chunk_size=1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = m(**inp, chunk_size=1)
    err = (low.video.float() - ref.video).abs().mean() / ref.video.abs().mean()
    assert 0 < err < 0.05  # bf16 actually ran (not bit-equal) and stays within bf16 precision


def test_rope_fp32_matches_a_float64_reference():
    from lbva.models.lingbot_va import rope_angles, rope_freqs

    Dh = 128
    pos = torch.tensor([[0.0, 3, 5], [37.2, 0, 11], [60 + 7 / 17, -1, -1]])
    got = rope_angles(pos, rope_freqs(Dh))
    assert got.dtype == torch.float32
    t, hw = Dh - 2 * (Dh // 3), Dh // 3

    def inv(d):
        return 1.0 / 10000.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)

    want = torch.cat([pos[:, :1].double() * inv(t), pos[:, 1:2].double() * inv(hw), pos[:, 2:].double() * inv(hw)], 1)
    torch.testing.assert_close(got.cos().double(), want.cos(), rtol=0, atol=2e-5)
    torch.testing.assert_close(got.sin().double(), want.sin(), rtol=0, atol=2e-5)


def test_apply_rope_rotates_each_pair_as_the_pairwise_formula_does():
    """The swapped-pair form gives the bits of the pairwise rotation (a·c − b·s, a·s + b·c) written out here, in
    fp32 and in bf16, and pairs (x[2i], x[2i+1]) rotate by angle i — not any other pairing."""
    from lbva.models.lingbot_va import apply_rope, rope_tables

    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 3, 8, generator=g)  # (B, L, Hh, Dh)
    ang = torch.rand(5, 4, generator=g) * 6

    def pairwise(x):
        xf = x.float()
        out = torch.empty_like(xf)
        for i in range(4):
            a, b = xf[..., 2 * i], xf[..., 2 * i + 1]
            c, s = ang[:, i].cos()[None, :, None], ang[:, i].sin()[None, :, None]
            out[..., 2 * i], out[..., 2 * i + 1] = a * c - b * s, a * s + b * c
        return out.type_as(x)

    for t in (x, x.bfloat16()):
        got = apply_rope(t, *rope_tables(ang))
        assert got.dtype == t.dtype and torch.equal(got, pairwise(t))
    # a rotation: norms of each pair are kept, and angle 0 is the identity
    got = apply_rope(x, *rope_tables(ang)).double().unflatten(-1, (4, 2)).norm(dim=-1)
    torch.testing.assert_close(got, x.double().unflatten(-1, (4, 2)).norm(dim=-1))
    assert torch.equal(apply_rope(x, *rope_tables(torch.zeros(5, 4))), x)


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_tiny_model_gives_eager_numbers(backend):
    """aot_eager checks that dynamo traces the model (quick); inductor generates code (minutes on 2 cores)."""
    m, inp = _tiny_and_inputs()
    with torch.no_grad():
        eager = m(**inp, chunk_size=1)
        compiled = torch.compile(m, backend=backend)(**inp, chunk_size=1)
    torch.testing.assert_close(compiled.video, eager.video, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(compiled.actions, eager.actions, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["shared", "mot"])
def test_model_compile_gives_the_eager_numbers_with_one_compilation_for_all_layers(layout):
    """``model.compile=true`` runs every block's per-token parts through torch.compile (inductor, on this CPU):
    the outputs equal eager ones, and the layers and streams share the compiled graphs instead of recompiling."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    cfg = load_config(None, ["model.size=tiny", f"model.layout={layout}"]).model
    torch.manual_seed(0)
    eager = build_model(cfg).eval()
    compiled = build_model(type(cfg)(**{**vars(cfg), "compile": True})).eval()
    compiled.load_state_dict(eager.state_dict())
    _, inp = _tiny_and_inputs()
    assert compiled.compiled and not eager.compiled
    with torch.no_grad():
        want = eager(**inp, chunk_size=1)
        got = compiled(**inp, chunk_size=1)
    torch.testing.assert_close(got.video, want.video, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.actions, want.actions, rtol=1e-4, atol=1e-5)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 2, dict(counters["stats"])  # pre- and post-attention really compiled
    assert graphs <= 8, dict(counters["stats"])  # not one per layer and stream (tiny has several of each)
