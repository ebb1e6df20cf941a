"""``lbva export policy CKPT OUT`` (a training checkpoint as a policy folder) and ``lbva export lerobot
CHECKPOINT OUT`` (an lbva policy, or ``shared`` model, as a LeRobot lingbot_va folder)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write lbva checkpoints in other formats")
    formats = p.add_subparsers(dest="export_format", metavar="<format>", required=True)
    pol = formats.add_parser(
        "policy", help="a policy folder from a training checkpoint (what lbva eval / serve / rollout load)",
        description="Write the policy folder (weights, action statistics, encoders, config) of a training "
                    "checkpoint, e.g. OUTPUT_DIR/checkpoints/step-0000500.ckpt. `lbva train` writes "
                    "OUTPUT_DIR/policy from its final weights by itself; use this for an earlier step.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    pol.add_argument("checkpoint", help="a .ckpt written by `lbva train` (OUTPUT_DIR/checkpoints/*.ckpt)")
    pol.add_argument("out", help="output policy folder (replaced atomically)")
    pol.add_argument("--raw", action="store_true", help="export the trained weights even when the run kept an EMA")
    pol.set_defaults(func=_export_policy)
    lr = formats.add_parser(
        "lerobot", help="a folder LeRobot's LingBotVAPolicy.from_pretrained loads (shared layout only)",
        description="Write a LeRobot 0.6 lingbot_va policy folder (config.json, model.safetensors, processors with "
                    "q01/q99) from an lbva policy folder or a shared-layout model checkpoint. See docs/lerobot.md.",
    )
    lr.add_argument("checkpoint", help="lbva policy folder (lbva_policy.json) or model checkpoint folder")
    lr.add_argument("out", help="output folder (an earlier export there is replaced atomically; any other folder is refused)")
    lr.add_argument("--embodiment", default=None, help="embodiment of a bare model checkpoint")
    lr.add_argument("--stats", default=None, help="q01/q99 JSON (30 slot values each) for a bare model checkpoint")
    lr.add_argument("--wan-path", default=None,
                    help="wan_pretrained_path to write (a folder with vae/, text_encoder/, tokenizer/)")
    lr.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                    help="LeRobot's dtype setting and the weights' dtype on disk")
    lr.add_argument("--approximate", action="store_true",
                    help="accept LeRobot's nearest setting where lbva's has no exact equivalent (logged)")
    lr.set_defaults(func=_export_lerobot)


def _export_policy(args: argparse.Namespace) -> int:
    from lbva.training.export import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.out, ema=not args.raw)
    print(f"wrote policy folder {out}")
    return 0


def _export_lerobot(args: argparse.Namespace) -> int:
    from lbva.cli_args import input_file, output_dir

    output_dir(args.out, "OUT")
    if args.stats is not None:
        input_file(args.stats, "--stats")
    from lbva.interop.lerobot_export import export_lerobot

    out = export_lerobot(args.checkpoint, args.out, embodiment=args.embodiment, stats=args.stats,
                         wan_path=args.wan_path, dtype=args.dtype, approximate=args.approximate)
    print(f"wrote LeRobot lingbot_va policy folder {out}")
    return 0
