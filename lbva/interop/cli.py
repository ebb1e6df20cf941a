"""``lbva export lerobot CHECKPOINT OUT``: an lbva policy (or ``shared`` model) as a LeRobot lingbot_va folder."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write lbva checkpoints in other formats")
    formats = p.add_subparsers(dest="export_format", metavar="<format>", required=True)
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


def _export_lerobot(args: argparse.Namespace) -> int:
    from lbva.cli_args import input_file, output_dir

    output_dir(args.out, "OUT")
    if args.stats is not None:
        input_file(args.stats, "--stats")
    from lbva.interop.lerobot import export_lerobot

    out = export_lerobot(args.checkpoint, args.out, embodiment=args.embodiment, stats=args.stats,
                         wan_path=args.wan_path, dtype=args.dtype, approximate=args.approximate)
    print(f"wrote LeRobot lingbot_va policy folder {out}")
    return 0
