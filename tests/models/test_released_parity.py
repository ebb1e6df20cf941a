"""A released-layout checkpoint loads into lbva and gives LeRobot's lingbot_va transformer's numbers."""

import json

import pytest
import torch
from safetensors.torch import save_file

from lbva.models.checkpoints import CheckpointError, load_released_transformer, released_config

TINY = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=24, in_channels=16, out_channels=16,
            action_dim=30, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2, cross_attn_norm=True, eps=1e-6,
            rope_max_seq_len=1024, attn_mode="torch")


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A tiny checkpoint written by LeRobot's own port of the released transformer, in the release's folder layout."""
    from lerobot.policies.lingbot_va.utils import WanTransformer3DModel

    torch.manual_seed(0)
    ref = WanTransformer3DModel(**TINY).eval()
    with torch.no_grad():  # the release's zero-init heads would make every output trivially equal
        for p in ref.parameters():
            p.add_(0.02 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("released") / "transformer"
    folder.mkdir()
    cfg = {k: v for k, v in TINY.items() if k != "attn_mode"}
    (folder / "config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(folder / "diffusion_pytorch_model.safetensors"))
    return ref, folder


def _lerobot_call(ref, x, t, text, action):
    from lerobot.policies.lingbot_va.utils import get_mesh_id

    if action:
        B, F, N, A = x.shape
        noisy = x.permute(0, 3, 1, 2)[..., None]  # (B, A, F, N, 1)
        grid = get_mesh_id(F, N, 1, 1, 1, 0, action=True)
    else:
        B, C, F, H, W = x.shape
        noisy = x
        grid = get_mesh_id(F, H // 2, W // 2, 0, 1, 0)
    out = ref({"noisy_latents": noisy, "timesteps": t, "grid_id": grid[None].repeat(B, 1, 1), "text_emb": text},
              update_cache=0, action_mode=action)
    if action:
        return out.reshape(B, F, N, A)
    from lerobot.policies.lingbot_va.utils import data_seq_to_patch

    return data_seq_to_patch((1, 2, 2), out, F, H, W, batch_size=B)


@pytest.mark.parametrize("action", [False, True])
def test_released_checkpoint_gives_lerobots_outputs(released, action):
    ref, folder = released
    ours = load_released_transformer(folder).eval()
    g = torch.Generator().manual_seed(1)
    text = torch.randn(2, 7, 32, generator=g)
    F = 3
    x = torch.randn(2, F, 4, 30, generator=g) if action else torch.randn(2, 16, F, 4, 6, generator=g)
    sigma = torch.rand(2, F, generator=g)
    with torch.no_grad():
        want = _lerobot_call(ref, x, sigma * 1000, text, action)
        got = ours.stream(ours.new_cache(64), ours.text_context(text), "actions" if action else "video", x, sigma,
                          chunk=0, chunk_size=F)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert want.abs().mean() > 1e-2  # a meaningful comparison, not two zero tensors


def test_round_trip_through_the_released_layout(released, tmp_path):
    _, folder = released
    ours = load_released_transformer(folder)
    (tmp_path / "config.json").write_text(json.dumps(released_config(ours)))
    save_file({k: v.contiguous() for k, v in ours.state_dict().items()}, str(tmp_path / "model.safetensors"))
    again = load_released_transformer(tmp_path)
    for k, v in ours.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])


def test_mismatched_checkpoint_lists_keys_and_shapes(released, tmp_path):
    _, folder = released
    from safetensors.torch import load_file

    state = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    state.pop("action_proj_out.weight")
    state["extra.weight"] = torch.zeros(1)
    state["proj_out.bias"] = torch.zeros(5)
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError) as e:
        load_released_transformer(tmp_path)
    msg = str(e.value)
    assert "missing keys: action_proj_out.weight" in msg and "unexpected keys: extra.weight" in msg
    assert "proj_out.bias: checkpoint (5,) vs model (64,)" in msg
