"""``lbva <verb>``: one entry point; each verb lives beside the code it drives.

Each entry of :data:`COMMANDS` names a module with ``register(subparsers)``, which adds its parser and
sets ``func`` to a handler taking the parsed ``argparse.Namespace`` and returning an exit code. Those
modules import nothing heavy at module level, so ``lbva --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS: dict[str, str] = {
    "config": "lbva.config.cli",
    "embodiments": "lbva.embodiment.cli",
    "doctor": "lbva.doctor",
    "model": "lbva.models.cli",
    "bench": "lbva.bench.cli",
    "train": "lbva.training.cli",
    "prepare": "lbva.data.cli",
    "dataset": "lbva.data.cli",
    "serve": "lbva.serving.cli",
    "eval": "lbva.eval.cli",
    "collect": "lbva.eval.cli",
    "rollout": "lbva.robots.cli",
    "demo": "lbva.demo",
    "export": "lbva.interop.cli",
}


class CLIError(Exception):
    """A user-facing failure: printed without a traceback, exit code 2."""


# Errors that describe bad input (a wrong name, a damaged folder, a mismatched checkpoint): the message says
# what was wrong and what to do, so the CLI prints it without a traceback. Only modules already imported are
# consulted, so this costs nothing.
USER_ERRORS = (
    "lbva.embodiment.registry:UnknownEmbodimentError",
    "lbva.embodiment.registry:PluginError",
    "lbva.inference.policy:PolicyError",
    "lbva.inference.bundle:PolicyFolderError",
    "lbva.models.checkpoints:CheckpointError",
    "lbva.data.errors:DataError",
)


def _is_user_error(e: BaseException) -> bool:
    for ref in USER_ERRORS:
        module, name = ref.split(":")
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(e, cls):
            return True
    return False


def build_parser() -> argparse.ArgumentParser:
    from lbva import __version__

    parser = argparse.ArgumentParser(prog="lbva", description="Causal video-action world models for robot control.")
    parser.add_argument("--version", action="version", version=f"lbva {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    seen: set[str] = set()
    for module in COMMANDS.values():
        if module in seen:
            continue
        seen.add(module)
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("lbva"):
                continue  # a verb whose module is not written yet
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # ``key=value`` overrides may follow the options too (``lbva prepare DS --embodiment E data.x=1``): argparse
    # only gathers a trailing positional list before the first option, so collect the stragglers here
    if extra and isinstance(getattr(args, "overrides", None), list) and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides.extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    from lbva.config import ConfigError

    try:
        return int(args.func(args) or 0)
    except (CLIError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if not _is_user_error(e):
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
