"""``lbva config show RECIPE [k=v ...]``: print the resolved config."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="inspect recipes")
    verbs = p.add_subparsers(dest="config_verb", metavar="<verb>", required=True)
    show = verbs.add_parser("show", help="print a recipe merged with defaults and overrides")
    show.add_argument("recipe", nargs="?", default=None, help="recipe path or name under lbva/recipes/ (default: defaults only)")
    show.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.lr=1e-4")
    show.add_argument("--doc", action="store_true",
                      help="after each key, what it means and what it allows (choices, range)")
    show.set_defaults(func=_show)


def _show(args: argparse.Namespace) -> int:
    from lbva.config import load_config, to_yaml

    recipe = args.recipe
    overrides = list(args.overrides)
    if recipe is not None and "=" in recipe:  # `lbva config show k=v` with no recipe
        overrides.insert(0, recipe)
        recipe = None
    cfg = load_config(recipe, overrides)
    text = to_yaml(cfg)
    print(annotate(text, cfg) if args.doc else text, end="")
    return 0


def annotate(yaml_text: str, cfg) -> str:
    """The YAML of ``cfg`` with each documented key followed by ``# doc [choices / range]``."""
    import dataclasses

    notes: dict[str, str] = {}

    def walk(obj, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
                continue
            meta = f.metadata
            parts = [meta.get("doc", "")]
            if "choices" in meta:
                parts.append("one of " + " | ".join(map(str, meta["choices"])))
            if "range" in meta:
                lo, hi = meta["range"]
                parts.append(f"range [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]")
            note = "; ".join(p for p in parts if p)
            if note:
                notes[f"{prefix}{f.name}"] = note

    walk(cfg, "")
    out, stack = [], []
    for line in yaml_text.splitlines():
        stripped = line.lstrip()
        depth = (len(line) - len(stripped)) // 2
        key = stripped.split(":", 1)[0] if ":" in stripped and not stripped.startswith("- ") else None
        if key is not None:
            stack = stack[:depth] + [key]
            note = notes.get(".".join(stack))
            if note:
                line = f"{line}  # {note}"
        out.append(line)
    return "\n".join(out) + "\n"
