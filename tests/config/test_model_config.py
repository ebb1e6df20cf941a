"""One description of the network's shape: ``ArchConfig``. The named sizes are values of it, the recipe section
resolves to it, a value is checked when it is made, and the config layer reads it without torch."""

import subprocess
import sys
from dataclasses import FrozenInstanceError, replace

import pytest

from lbva.config import ConfigError, load_config
from lbva.config.model import SIZES, ArchConfig


def test_the_named_sizes_are_arch_configs_and_the_recipe_resolves_to_one():
    assert all(isinstance(a, ArchConfig) for a in SIZES.values())
    cfg = load_config(None, ["model.size=small", "model.layout=mot", "model.num_layers=3", "model.action_dim=7"])
    assert cfg.model.arch() == replace(SIZES["small"], num_layers=3, layout="mot", action_dim=7)
    assert load_config().model.arch() == replace(SIZES["tiny"], layout="shared", action_dim=30)


@pytest.mark.parametrize("field, value", [("num_layers", 0), ("num_attention_heads", "two"), ("eps", float("nan")),
                                          ("patch_size", (1, 2)), ("layout", "stacked"), ("out_channels", -1)])
def test_a_shape_that_cannot_be_built_is_refused_when_made(field, value):
    with pytest.raises(ConfigError, match=field):
        ArchConfig(**{field: value})
    with pytest.raises(ConfigError, match=field):
        replace(SIZES["tiny"], **{field: value})


def test_a_shape_is_a_value():
    with pytest.raises(FrozenInstanceError):
        SIZES["tiny"].num_layers = 3


def test_the_model_section_resolves_its_shape_without_torch():
    code = ("import sys; from lbva.config import load_config; load_config(None, ['model.size=wan2.2-5b']).model.arch(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
