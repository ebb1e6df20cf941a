"""``lbva train RECIPE [k=v ...] [--engine trainer|fabric] [--resume PATH|last]``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a recipe (Lightning Trainer or Fabric loop)")
    p.add_argument("recipe", help="recipe path or name under lbva/recipes/, e.g. demo/tiny")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.max_steps=100")
    p.add_argument("--engine", choices=["trainer", "fabric"], default=None, help="override trainer.engine")
    p.add_argument("--resume", default=None, help="checkpoint to resume from, or 'last'")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    import logging

    from lbva.cli import CLIError
    from lbva.config import load_config

    overrides = list(args.overrides)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise CLIError(f"overrides must look like key=value; got {bad}")
    if args.engine:
        overrides.append(f"trainer.engine={args.engine}")
    if args.resume:
        overrides.append(f"trainer.resume={args.resume}")
    cfg = load_config(args.recipe, overrides)
    log = logging.getLogger("lbva.train")
    from lbva.training.fit import policy_dir
    from lbva.training.system import ResumeMismatchError

    try:
        if cfg.trainer.engine == "fabric":
            from lbva.training.fabric import fabric_train

            result = fabric_train(cfg)
            log.info("fabric: %d steps, final loss %.4f", len(result.losses), result.losses[-1] if result.losses else float("nan"))
        else:
            from lbva.training.fit import fit

            trainer, _ = fit(cfg)
            log.info("done: %d steps; checkpoints in %s", trainer.global_step, cfg.trainer.output_dir)
        log.info("policy folder: %s (evaluate it with `lbva eval ENV --policy %s`)", policy_dir(cfg), policy_dir(cfg))
    except (FileNotFoundError, FileExistsError, ResumeMismatchError) as e:
        raise CLIError(str(e)) from e
    return 0
