"""Every recipe loads with load_config and starts with the command that runs it."""

from pathlib import Path

import pytest

from lbva.config import load_config
from lbva.config.loader import recipes_dir

RECIPES = sorted(recipes_dir().rglob("*.yaml"))


def test_the_expected_recipes_exist():
    names = {str(p.relative_to(recipes_dir()).with_suffix("")) for p in RECIPES}
    assert {"pretrain/lingbot_va", "posttrain/robotwin", "posttrain/libero", "posttrain/real_50_demos",
            "demo/metaworld", "demo/tiny"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(recipes_dir())))
def test_recipe_loads_and_names_its_command(path: Path):
    cfg = load_config(str(path))
    first = path.read_text().splitlines()[0]
    name = str(path.relative_to(recipes_dir()).with_suffix(""))
    assert first.startswith(f"# lbva train {name}"), first
    assert cfg.trainer.max_steps >= 1


def test_paper_hyperparameters():
    pre = load_config("pretrain/lingbot_va")
    assert (pre.trainer.lr, pre.trainer.weight_decay, pre.trainer.schedule, pre.trainer.precision,
            pre.trainer.grad_clip, pre.objective.text_dropout) == (1e-4, 0.01, "cosine", "bf16-mixed", 2.0, 0.1)
    assert pre.trainer.warmup_steps > 0
    rt = load_config("posttrain/robotwin")
    assert (rt.trainer.lr, rt.trainer.max_steps) == (1e-5, 50000) and rt.trainer.weight_decay == 0.1
    lb = load_config("posttrain/libero")
    assert (lb.trainer.lr, lb.trainer.max_steps) == (1e-5, 4000)
    real = load_config("posttrain/real_50_demos")
    assert (real.trainer.lr, real.trainer.max_steps) == (1e-4, 500)
    demo = load_config("demo/metaworld")
    assert demo.trainer.accelerator == "cpu" and 100 <= demo.trainer.max_steps <= 3000 and demo.model.size == "small"
    assert load_config("demo/tiny").model.size == "tiny"
