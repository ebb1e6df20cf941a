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

from lbva.errors import CLIError, UserError, one_line

__all__ = ["COMMANDS", "CLIError", "build_parser", "main"]

logger = logging.getLogger(__name__)

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
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one verb. A :class:`~lbva.errors.UserError` (bad input) or an ``OSError`` (a path that cannot be used, a
    refused connection, a full disk) prints one line ``error: ...`` and returns 2; with ``-v`` the traceback is
    logged too. Anything else is a bug and keeps its traceback."""
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
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        logger.debug("the command failed on bad input", exc_info=True)
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        logger.debug("the command failed on a file or connection", exc_info=True)
        print(f"error: {one_line(e)}; check the path or address given, its permissions and the free disk space",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
