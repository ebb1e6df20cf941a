"""A block's hot path calls its submodules' functional ops on their parameters: the numbers must be those of the
submodules themselves (diffusers' FeedForward and FP32LayerNorm, torch's Linear and RMSNorm), in both layouts."""

import pytest
import torch

from model_inputs import tiny_model

from lbva.models import lingbot_va as lv


@pytest.mark.parametrize("layout", ["shared", "mot"])
def test_every_block_takes_the_lean_ffn_and_it_equals_the_module(layout):
    model = tiny_model(layout)
    blocks = list(model.blocks) + list(model.action_blocks or [])
    assert blocks and all(b._ffn_lean for b in blocks)
    for b in blocks:
        h = torch.randn(2, 5, b.ffn.net[2].out_features, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(lv._ffn(b.ffn, h), b.ffn(h), rtol=0, atol=0)


def test_attention_and_norms_equal_their_modules():
    block = tiny_model().blocks[0]
    g = torch.Generator().manual_seed(2)
    dim = block.norm1.normalized_shape[0]
    x = torch.randn(1, 6, dim, generator=g)
    a = block.attn1
    q, k, v = a.qkv(x, None)
    torch.testing.assert_close(q, a.norm_q(a.to_q(x)).unflatten(-1, (a.heads, -1)), rtol=0, atol=0)
    torch.testing.assert_close(k, a.norm_k(a.to_k(x)).unflatten(-1, (a.heads, -1)), rtol=0, atol=0)
    torch.testing.assert_close(v, a.to_v(x).unflatten(-1, (a.heads, -1)), rtol=0, atol=0)
    torch.testing.assert_close(a.out(q), a.to_out[1](a.to_out[0](q.flatten(-2))), rtol=0, atol=0)
    for norm in (block.norm1, block.norm2, block.norm3):
        torch.testing.assert_close(lv._norm32(norm, x), norm(x.float()), rtol=0, atol=0)
    assert torch.equal(lv._norm32(torch.nn.Identity(), x), x)


def test_an_ffn_of_another_shape_falls_back_to_the_module():
    from diffusers.models.attention import FeedForward

    assert lv._lean_ffn(FeedForward(8, inner_dim=16, activation_fn="gelu-approximate"))
    assert not lv._lean_ffn(FeedForward(8, inner_dim=16, activation_fn="gelu"))  # exact GELU: not the lean path
    assert not lv._lean_ffn(FeedForward(8, inner_dim=16, activation_fn="gelu-approximate", dropout=0.1))
    assert not lv._lean_ffn(FeedForward(8, inner_dim=16, activation_fn="gelu-approximate", final_dropout=True))
