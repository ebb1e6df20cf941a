"""``lbva config show RECIPE [k=v ...]``: print the resolved config."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="inspect recipes")
    verbs = p.add_subparsers(dest="config_verb", metavar="<verb>", required=True)
    show = verbs.add_parser("show", help="print a recipe merged with defaults and overrides")
    show.add_argument("recipe", nargs="?", default=None, help="recipe path or name under lbva/recipes/ (default: defaults only)")
    show.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.lr=1e-4")
    show.set_defaults(func=_show)


def _show(args: argparse.Namespace) -> int:
    from lbva.config import load_config, to_yaml

    recipe = args.recipe
    overrides = list(args.overrides)
    if recipe is not None and "=" in recipe:  # `lbva config show k=v` with no recipe
        overrides.insert(0, recipe)
        recipe = None
    print(to_yaml(load_config(recipe, overrides)), end="")
    return 0
