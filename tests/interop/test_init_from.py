"""``model.init_from`` starts training from every checkpoint kind the recipes name, as the recipe asks.

Each kind is written here the way its own tool writes it (the release's folder layout, LeRobot's
``save_pretrained``, diffusers' ``save_pretrained``, lbva's policy export), and the trained model must start
from exactly those tensors, read back independently with safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lerobot_interop import save_lerobot_policy, tiny_model
from safetensors.torch import load_file, save_file

from lbva.config import load_config
from lbva.models.checkpoints import CheckpointError, checkpoint_kind, released_config
from lbva.training.system import build_training_model

TINY_SHARED = ["model.size=tiny", "model.layout=shared", "model.in_channels=16", "model.text_dim=64"]


def released_folder(root: Path, model) -> Path:
    """The release's layout: ROOT/transformer/{config.json, diffusion_pytorch_model.safetensors} (+ vae/ etc.)."""
    t = root / "transformer"
    t.mkdir(parents=True)
    (t / "config.json").write_text(json.dumps(released_config(model) | {"_class_name": "WanTransformer3DModel"}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(t / "diffusion_pytorch_model.safetensors"))
    (root / "vae").mkdir()
    return root


def cfg_with(init_from, *more):
    return load_config("demo/tiny", [*TINY_SHARED, f"model.init_from={init_from}", *more])


def assert_weights(model, state: dict[str, torch.Tensor]):
    own = model.state_dict()
    assert set(own) == set(state)
    for k, v in state.items():
        torch.testing.assert_close(own[k], v.to(own[k].dtype), rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("where", ["root", "transformer"])
def test_a_released_checkpoint_root_or_transformer_folder(tmp_path, where):
    src = tiny_model(seed=3)
    root = released_folder(tmp_path / "lingbot-va-base", src)
    path = root if where == "root" else root / "transformer"
    assert checkpoint_kind(path) == ("released", root / "transformer")
    model = build_training_model(cfg_with(path))
    assert_weights(model, load_file(str(root / "transformer" / "diffusion_pytorch_model.safetensors")))


def test_a_lerobot_lingbot_va_folder(tmp_path):
    policy = save_lerobot_policy(tmp_path / "lerobot")
    assert checkpoint_kind(tmp_path / "lerobot")[0] == "lerobot"
    model = build_training_model(cfg_with(tmp_path / "lerobot"))
    raw = load_file(str(tmp_path / "lerobot" / "model.safetensors"))
    assert_weights(model, {k.removeprefix("transformer."): v for k, v in raw.items()})
    assert all(torch.equal(model.state_dict()[k], v) for k, v in policy.transformer.state_dict().items())


def test_an_lbva_policy_folder_and_a_save_pretrained_folder(tmp_path):
    from lbva.training.export import export_policy, unit_stats

    cfg = load_config("demo/tiny", ["model.layout=mot"])
    torch.manual_seed(0)
    from lbva.models import build_model

    src = build_model(cfg.model)
    export_policy(tmp_path / "policy", src, cfg, stats=unit_stats("test"))
    src.save_pretrained(tmp_path / "model")
    want = load_file(str(tmp_path / "model" / "model.safetensors"))
    for path in (tmp_path / "policy", tmp_path / "model"):
        model = build_training_model(load_config("demo/tiny", ["model.layout=mot", f"model.init_from={path}"]))
        assert model.arch.layout == "mot"
        assert_weights(model, want)


def test_a_diffusers_wan_folder_gives_the_video_stream_and_an_alpha_scaled_mot_action_stream(tmp_path):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    wan = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=24, in_channels=16,
                                out_channels=16, text_dim=64, freq_dim=32, ffn_dim=96, num_layers=2,
                                cross_attn_norm=True, eps=1e-6, rope_max_seq_len=64)
    wan.save_pretrained(tmp_path / "Wan2.2-TI2V-5B" / "transformer")  # the diffusers pipeline layout
    (tmp_path / "Wan2.2-TI2V-5B" / "model_index.json").write_text("{}")
    assert checkpoint_kind(tmp_path / "Wan2.2-TI2V-5B")[0] == "wan"
    cfg = load_config("demo/tiny", ["model.size=tiny", "model.layout=mot", "model.action_width=12",
                                    f"model.init_from={tmp_path / 'Wan2.2-TI2V-5B'}"])
    model = build_training_model(cfg)
    assert model.arch.layout == "mot" and model.arch.action_width == 12
    ref = wan.state_dict()
    torch.testing.assert_close(model.blocks[1].ffn.net[2].weight, ref["blocks.1.ffn.net.2.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.patch_embedding_mlp.weight, ref["patch_embedding.weight"].reshape(48, -1),
                               rtol=0, atol=0)
    # the paper's initialisation, computed here by hand: linear interpolation of the input axis from d_v = 48 to
    # d_a = 12 (endpoints kept), times alpha = sqrt(48 / 12) = 2
    src = ref["blocks.0.attn1.to_q.weight"]  # (48, 48): out = inner width (unchanged), in = d_v
    pos = torch.linspace(0, 47, 12)
    lo, frac = pos.floor().long(), pos - pos.floor()
    hi = (lo + 1).clamp(max=47)
    want = (src[:, lo] * (1 - frac) + src[:, hi] * frac) * 2.0
    torch.testing.assert_close(model.action_blocks[0].attn1.to_q.weight, want, rtol=1e-4, atol=1e-5)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_recipe_run_time_settings_are_honoured(tmp_path):
    root = released_folder(tmp_path / "ckpt", tiny_model(seed=1))
    model = build_training_model(cfg_with(root, "model.attn_kernel=flex", "model.activation_checkpointing=true"))
    assert model.attn_kernel == "flex" and model.activation_checkpointing is True


@pytest.mark.parametrize("override, named", [
    ("model.layout=mot", "model.layout: recipe 'mot', checkpoint 'shared'"),
    ("model.num_layers=3", "model.num_layers: recipe 3, checkpoint 2"),
    ("model.text_dim=32", "model.text_dim: recipe 32, checkpoint 64"),
])
def test_a_contradiction_with_the_checkpoint_is_refused_naming_both_values(tmp_path, override, named):
    root = released_folder(tmp_path / "ckpt", tiny_model(seed=1))
    with pytest.raises(CheckpointError, match="contradicts the recipe") as e:
        build_training_model(cfg_with(root, override))
    assert named in str(e.value)


@pytest.mark.parametrize("make, msg", [
    (lambda p: p.mkdir(), "no config.json and no transformer/"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text('{"hidden": 1}')), "describes none of"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text("{not json")), "cannot be read as JSON"),
    (lambda p: None, "does not exist"),
])
def test_what_is_not_a_checkpoint_gets_a_clear_error(tmp_path, make, msg):
    make(tmp_path / "x")
    with pytest.raises(CheckpointError, match=msg):
        build_training_model(cfg_with(tmp_path / "x"))


def test_the_cli_trains_from_a_released_root_and_refuses_a_contradiction_in_one_line(tmp_path):
    from lbva.cli import main

    root = released_folder(tmp_path / "ckpt", tiny_model(seed=1))
    out = tmp_path / "run"
    assert main(["train", "demo/tiny", *TINY_SHARED, f"model.init_from={root}", f"trainer.output_dir={out}"]) == 0
    assert (out / "policy" / "lbva_policy.json").is_file()
    assert main(["train", "demo/tiny", "model.layout=mot", f"model.init_from={root}",
                 f"trainer.output_dir={tmp_path / 'run2'}"]) == 2


def test_loading_in_bf16_keeps_bf16_tensors(tmp_path):
    from lbva.models.checkpoints import load_pretrained

    root = released_folder(tmp_path / "ckpt", tiny_model(seed=1))
    model = load_pretrained(root, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any(p.is_meta for p in model.parameters())
    want = load_file(str(root / "transformer" / "diffusion_pytorch_model.safetensors"))
    torch.testing.assert_close(model.blocks[0].attn1.to_k.weight, want["blocks.0.attn1.to_k.weight"].bfloat16())


def test_training_a_loaded_model_never_writes_to_the_checkpoint(tmp_path):
    from lbva.models.checkpoints import load_pretrained

    src = tiny_model(seed=2)
    src.save_pretrained(tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()
    model = load_pretrained(tmp_path / "m")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    torch.testing.assert_close(model.proj_out.weight, src.proj_out.weight + 1.0)


PEAK_SCRIPT = r"""
import resource, sys, torch
from lbva.models.checkpoints import load_pretrained
import lbva.models.lingbot_va, safetensors.torch  # imports first: their memory is not the model's
torch.ones(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model = load_pretrained(sys.argv[1])
with torch.no_grad():
    touched = [float(p.sum()) for p in model.parameters()]  # every page of every weight resident
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = sum(p.numel() * p.element_size() for p in model.parameters())
print((after - before) * 1024, n)
"""


def test_loading_a_scaled_up_model_peaks_at_about_one_copy_of_the_weights(tmp_path):
    """Built on the meta device and given the file's tensors: the peak resident memory added by loading stays
    close to the weights' own size (a random init followed by a load would need two copies)."""
    import subprocess
    import sys

    cfg = load_config(None, ["model.size=small", "model.num_layers=12", "model.attention_head_dim=96",
                             "model.ffn_dim=4608", "model.layout=shared"]).model
    from lbva.models import build_model

    build_model(cfg).save_pretrained(tmp_path / "big")
    size = (tmp_path / "big" / "model.safetensors").stat().st_size
    assert size > 250e6  # big enough that allocator noise does not matter
    r = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(tmp_path / "big")], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    added, weights = (int(x) for x in r.stdout.split())
    assert weights == pytest.approx(size, rel=0.01)
    assert added < 1.35 * weights, f"loading added {added / 1e6:.0f} MB for {weights / 1e6:.0f} MB of weights"


@pytest.mark.parametrize("recipe", ["posttrain/robotwin", "posttrain/libero", "posttrain/real_50_demos"])
def test_the_post_training_recipes_fit_the_released_5b_checkpoint(recipe):
    """Every post-training recipe names the released base as init_from: its model section must describe it."""
    from lbva.models import build_model
    from lbva.models.checkpoints import arch_conflicts, arch_from_released_config

    with torch.device("meta"):
        released = build_model(load_config(None, ["model.size=wan2.2-5b", "model.layout=shared"]).model)
    have = arch_from_released_config(released_config(released))
    assert arch_conflicts(load_config(recipe).model.arch(), have) == []
