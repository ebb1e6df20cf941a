"""``lbva train RECIPE [k=v ...] [--engine trainer|fabric] [--resume PATH|last]`` and ``lbva plan RECIPE [k=v ...]``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a recipe (Lightning Trainer or Fabric loop)")
    p.add_argument("recipe", help="recipe path or name under lbva/recipes/, e.g. demo/tiny")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.max_steps=100")
    p.add_argument("--engine", choices=["trainer", "fabric"], default=None, help="override trainer.engine")
    p.add_argument("--resume", default=None, help="checkpoint to resume from, or 'last'")
    p.set_defaults(func=_train)
    register_plan(sub)


def _train(args: argparse.Namespace) -> int:
    import logging

    from lbva.cli_args import output_dir
    from lbva.config import load_config
    from lbva.errors import CLIError

    overrides = list(args.overrides)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise CLIError(f"overrides must look like key=value; got {bad}")
    if args.engine:
        overrides.append(f"trainer.engine={args.engine}")
    if args.resume:
        overrides.append(f"trainer.resume={args.resume}")
    cfg = load_config(args.recipe, overrides)
    output_dir(cfg.trainer.output_dir, "trainer.output_dir")
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
    finally:  # a multi-process run (torchrun, `fabric run`, SLURM) leaves its process group for the exit to end
        from lbva.training.fabric import close_distributed

        close_distributed()
    return 0


PLAN_PHASES = ("train", "infer", "both")


def register_plan(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan", help="per-device peak memory of a recipe's training step and streaming inference (traced on fake "
                     "tensors: no memory is allocated for the model)")
    p.add_argument("recipe", help="recipe path or name under lbva/recipes/, e.g. pretrain/lingbot_va")
    p.add_argument("overrides", nargs="*",
                   help="key=value overrides: trainer.devices, trainer.num_nodes, trainer.strategy=ddp|fsdp, "
                        "trainer.precision, model.activation_checkpointing, model.size, inference.window_size, ...")
    p.add_argument("--frames", type=int, default=None, help="latent frames per training sample (default: the "
                                                            "recipe's data.window_frames)")
    p.add_argument("--batch", type=int, default=None, help="samples per device (default: the recipe's "
                                                           "data.batch_size)")
    p.add_argument("--latent", default="24x20",
                   help="latent height x width of one frame (24x20: RoboTwin's three tiled cameras through the "
                        "Wan2.2 VAE)")
    p.add_argument("--actions-per-frame", type=int, default=16, help="actions per latent frame")
    p.add_argument("--chunk-frames", type=int, default=4, help="latent frames per chunk")
    p.add_argument("--phase", choices=PLAN_PHASES, default="both", help="what to plan")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_plan)


def _latent_size(text: str) -> tuple[int, int]:
    from lbva.errors import CLIError

    parts = text.lower().split("x")
    if len(parts) != 2 or not all(s.isdigit() and int(s) >= 1 for s in parts):
        raise CLIError(f"--latent {text!r} is not a latent size; give HEIGHTxWIDTH with whole numbers >= 1, e.g. 24x20")
    return int(parts[0]), int(parts[1])


def _plan(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from lbva.cli_args import at_least
    from lbva.config import load_config
    from lbva.errors import CLIError

    for flag, value in (("--frames", args.frames), ("--batch", args.batch),
                        ("--actions-per-frame", args.actions_per_frame), ("--chunk-frames", args.chunk_frames)):
        at_least(value, flag, 1)
    height, width = _latent_size(args.latent)
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise CLIError(f"overrides must look like key=value; got {bad}")
    cfg = load_config(args.recipe, args.overrides)
    from lbva.training.plan import PlanError, TokenShape, plan_inference, plan_training

    try:
        shape = TokenShape(batch=args.batch or cfg.data.batch_size, frames=args.frames or cfg.data.window_frames,
                           height=height, width=width, actions_per_frame=args.actions_per_frame,
                           chunk_frames=args.chunk_frames)
        plans = {}
        if args.phase in ("train", "both"):
            plans["training"] = plan_training(cfg, shape, args.recipe)
        if args.phase in ("infer", "both"):
            plans["inference"] = plan_inference(cfg, shape, args.recipe)
    except PlanError as e:
        raise CLIError(str(e)) from e
    if args.json:
        print(json.dumps({k: asdict(v) for k, v in plans.items()}, indent=2))
        return 0
    for kind, plan in plans.items():
        print(_training_table(plan) if kind == "training" else _inference_table(plan))
    return 0


def _rows(rows: list[tuple[str, int]], total: int) -> list[str]:
    """One line per part and the total, in GiB (MiB when the total is below 1 GiB)."""
    unit, div = ("GiB", 2**30) if total >= 2**30 else ("MiB", 2**20)
    return [f"    {name:<26}{v / div:10.2f} {unit}" for name, v in [*rows, ("total", total)]]


def _training_table(p) -> str:
    s = p.shape
    comm = {"ddp": "gradient buckets (ddp)", "fsdp": "gathered layers (fsdp)"}[p.strategy]
    rows = [("parameters", p.parameters), ("optimizer state (AdamW)", p.optimizer_state),
            ("gradients", p.gradients), ("activations", p.activations), (comm, p.communication)]
    head = (f"training {p.recipe}: {p.size}/{p.layout}, {p.parameters_count:,} parameters, {p.precision}, "
            f"{p.strategy} on {p.devices} device(s), activation checkpointing {'on' if p.activation_checkpointing else 'off'}\n"
            f"  batch {s.batch} x {s.frames} frames of {s.height}x{s.width} latents + {s.actions_per_frame} actions "
            f"(chunks of {s.chunk_frames}): {p.tokens_per_sequence} tokens per sequence\n"
            f"  per device, at the step's peak:")
    return "\n".join([head, *_rows(rows, p.total), ""])


def _inference_table(p) -> str:
    rows = [("parameters", p.parameters), ("KV cache", p.kv_cache), ("text keys/values", p.text_context),
            ("activations (one call)", p.activations)]
    head = (f"inference {p.recipe}: {p.size}/{p.layout}, {p.dtype}, window {p.window}, {p.rows} text row(s), "
            f"KV cache of {p.cache_tokens} tokens (+ {p.cache_slack} slack for a query)\n"
            "  on one device, at the session's peak:")
    return "\n".join([head, *_rows(rows, p.total), ""])
