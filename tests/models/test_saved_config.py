"""A model folder's ``config.json`` keeps its format: one written by an earlier version loads into the same network,
and today's save writes the same keys."""

import json

import torch
from safetensors.torch import save_file

from lbva.config import load_config
from lbva.models import LingBotVA, build_model

# what save_pretrained wrote for `model.size=tiny model.layout=mot model.action_width=12` before ArchConfig moved to
# the config layer
EARLIER = {
    "lbva_arch": {"num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 24, "ffn_dim": 96, "in_channels": 16,
                  "out_channels": None, "text_dim": 64, "freq_dim": 32, "action_dim": 30, "patch_size": [1, 2, 2],
                  "cross_attn_norm": True, "eps": 1e-06, "rope_theta": 10000.0, "layout": "mot", "action_width": 12},
    "model_config": {"size": "tiny", "layout": "mot", "attn_kernel": "sdpa", "action_dim": 30,
                     "activation_checkpointing": False, "compile": False, "init_from": None, "num_layers": None,
                     "num_attention_heads": None, "attention_head_dim": None, "ffn_dim": None, "in_channels": None,
                     "text_dim": None, "action_width": 12, "max_parameters": 16000000000},
}


def test_a_folder_written_by_an_earlier_version_loads_and_today_writes_the_same_keys(tmp_path):
    torch.manual_seed(0)
    cfg = load_config(None, ["model.size=tiny", "model.layout=mot", "model.action_width=12"]).model
    model = build_model(cfg).eval()
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "config.json").write_text(json.dumps(EARLIER, indent=2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(earlier / "model.safetensors"))

    loaded = LingBotVA.from_pretrained(earlier)
    assert loaded.arch == model.arch and loaded.config == cfg
    for (k, v), (k2, v2) in zip(loaded.state_dict().items(), model.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)

    written = json.loads((model.save_pretrained(tmp_path / "today") / "config.json").read_text())
    assert written == EARLIER
