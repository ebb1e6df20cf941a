"""Limits with defaults a user can raise: model size (``model.max_parameters``) and denoising steps
(``inference.max_denoising_steps``). A config over a limit is refused before anything is allocated, the error names
the estimated size and the key that raises the limit, and raising it lets the same config through."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from lbva.config import ConfigError, load_config
from lbva.config.model import SIZES
from lbva.models import build_model
from lbva.models.lingbot_va import count_parameters


@pytest.mark.parametrize("size, layout", [("tiny", "shared"), ("tiny", "mot"), ("small", "shared"), ("small", "mot")])
def test_the_parameter_estimate_is_the_count_of_the_built_model(size, layout):
    arch = replace(SIZES[size], layout=layout)
    with torch.device("meta"):
        from lbva.models.lingbot_va import LingBotVA

        built = sum(p.numel() for p in LingBotVA(arch).parameters())
    assert count_parameters(arch) == built


@pytest.mark.parametrize("layout, count", [("shared", 5_088_872_670), ("mot", 5_594_997_726)])
def test_the_estimate_matches_the_documented_full_size_counts(layout, count):
    assert count_parameters(replace(SIZES["wan2.2-5b"], layout=layout)) == count


def test_an_absurd_model_is_refused_before_allocating_and_the_limit_can_be_raised():
    cfg = load_config(None, ["model.size=tiny", "model.num_layers=1000000"])
    with pytest.raises(ConfigError) as e:
        build_model(cfg.model)
    message = str(e.value)
    assert "model.max_parameters" in message and "GiB" in message and "num_layers=1000000" in message
    # a small model over a lowered limit is refused; raising the limit lets the same config build
    tight = load_config(None, ["model.size=tiny", "model.num_layers=4", "model.max_parameters=100000"])
    with pytest.raises(ConfigError, match="model.max_parameters=100,000"):
        build_model(tight.model)
    raised = load_config(None, ["model.size=tiny", "model.num_layers=4", "model.max_parameters=10000000"])
    assert build_model(raised.model).arch.num_layers == 4


def test_denoising_steps_are_capped_by_a_limit_that_can_be_raised():
    with pytest.raises(ConfigError, match="inference.max_denoising_steps=1000"):
        load_config(None, ["inference.video_steps=1000000000"])
    with pytest.raises(ConfigError, match="inference.max_denoising_steps"):
        load_config(None, ["inference.action_steps=1001"])
    cfg = load_config(None, ["inference.action_steps=1500", "inference.max_denoising_steps=2000"])
    assert cfg.inference.action_steps == 1500


@pytest.mark.parametrize("override", ["model.num_layers=0", "model.ffn_dim=-3", "objective.video_shift=inf",
                                      "inference.video_cfg=nan", "trainer.lr=-1e-4"])
def test_out_of_range_config_values_are_refused(override):
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        load_config(None, [override])
