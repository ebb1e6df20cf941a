"""`lbva model init` writes a loadable random checkpoint; `lbva bench model` is registered."""

import torch

from lbva.cli import build_parser, main


def test_model_init_writes_a_checkpoint_that_loads(tmp_path):
    from lbva.models import LingBotVA

    assert main(["model", "init", "--size", "tiny", "--layout", "mot", str(tmp_path / "m")]) == 0
    m = LingBotVA.from_pretrained(tmp_path / "m")
    assert m.arch.layout == "mot" and m.action_blocks is not None
    assert all(torch.isfinite(p).all() for p in m.parameters())


def test_bench_model_is_a_subcommand():
    args = build_parser().parse_args(["bench", "model", "--quick", "--json", "x.json"])
    assert args.quick and str(args.json) == "x.json"
    from lbva.bench import model

    assert args.func.__wrapped__ is model.run  # behind the shared argument checks of lbva.bench.cli
