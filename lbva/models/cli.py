"""``lbva model init --size S --layout L [--embodiment E] OUT``: a randomly initialised checkpoint."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="model checkpoints")
    verbs = p.add_subparsers(dest="model_verb", metavar="<verb>", required=True)
    init = verbs.add_parser("init", help="write a randomly initialised model (smoke tests, serving tests)")
    init.add_argument("out", help="output folder")
    init.add_argument("--size", default="tiny", help="tiny | small | wan2.2-5b")
    init.add_argument("--layout", default="shared", help="shared | mot")
    init.add_argument("--embodiment", default=None,
                      help="also write a policy folder for this embodiment (embedded encoders, unit statistics)")
    init.add_argument("--seed", type=int, default=0)
    init.add_argument("overrides", nargs="*", help="config overrides, e.g. model.num_layers=4")
    init.set_defaults(func=_init)


def _init(args: argparse.Namespace) -> int:
    from lbva.cli_args import output_dir

    output_dir(args.out, "OUT")
    import torch

    from lbva.config import load_config
    from lbva.models import build_model

    overrides = [f"model.size={args.size}", f"model.layout={args.layout}", *args.overrides]
    if args.embodiment:
        overrides.append(f"embodiment.name={args.embodiment}")
    cfg = load_config(None, overrides)
    torch.manual_seed(args.seed)
    if args.embodiment is None:
        model = build_model(cfg.model)
        model.save_pretrained(args.out)
        print(f"wrote a random {args.size}/{args.layout} model ({sum(p.numel() for p in model.parameters()):,} "
              f"parameters) to {args.out}")
        return 0

    from lbva.data.embedded_vae import EmbeddedVAE, EmbeddedVAEConfig
    from lbva.data.encoders import EmbeddedTextEncoder, EmbeddedVideoEncoder
    from lbva.embodiment import get_embodiment
    from lbva.training.export import export_policy, unit_stats

    get_embodiment(args.embodiment)  # a wrong name fails here with the valid ones listed
    text = EmbeddedTextEncoder(cfg.data.embedded_text_dim, cfg.data.embedded_text_max_length, cfg.data.embedded_text_seed)
    vae = EmbeddedVAE(EmbeddedVAEConfig())
    cfg.model.text_dim, cfg.model.in_channels = text.dim, vae.config.latent_channels
    model = build_model(cfg.model)
    export_policy(args.out, model, cfg, stats=unit_stats("lbva model init (unit range)"),
                  video_encoder=EmbeddedVideoEncoder(vae), text_encoder=text, embodiment=args.embodiment)
    print(f"wrote a random {args.size}/{args.layout} policy for {args.embodiment} to {args.out}")
    return 0
