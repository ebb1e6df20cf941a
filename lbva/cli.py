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
import warnings

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
    "plan": "lbva.training.cli",
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
    for p in _all_parsers(parser):
        if p.formatter_class is argparse.HelpFormatter:  # a verb's own RawDescription formatter etc. is kept
            p.formatter_class = DefaultsHelpFormatter
        for action in p._actions:
            if action.help is None and action.option_strings:  # argparse would print nothing, not even the default
                action.help = "x"
                action.help = "(default: %(default)s)" if shows_default(action) else None
    return parser


def _all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                yield from _all_parsers(child)


def shows_default(action: argparse.Action) -> bool:
    """Whether ``--help`` should state the option's default: it has one worth stating and its text does not
    already say it."""
    d = action.default
    if action.help in (None, argparse.SUPPRESS) or d is None or d is False or d is argparse.SUPPRESS or d in ([], ()):
        return False  # (identity: 0 and 0.0 equal False, and are defaults worth showing)
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._StoreConstAction)):
        return False
    return "default" not in action.help.lower() and (bool(action.option_strings)
                                                     or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text already gives it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = (action.help or "").strip()
        return f"{text} (default: %(default)s)".lstrip() if shows_default(action) else text


OWN_LOGGERS = ("lbva", "lbva_client", "lbva_metaworld", "lbva_libero", "lbva_lerobot_arms", "lbva_robotwin")


class _DropLightningTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.msg)  # Lightning advertises a cloud logger on every fit


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (a handler holding the stream it was made with
    writes into a closed one after a test's capture, or a daemon's redirection, replaced it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _NotPrintedBelow(logging.Filter):
    """Passes a record only if no logger between its own and the root has a handler (none printed it yet)."""

    def filter(self, record: logging.LogRecord) -> bool:
        log: logging.Logger | None = logging.getLogger(record.name)
        while log is not None and log is not logging.root:
            if log.handlers:
                return False
            if not log.propagate:
                return True
            log = log.parent
        return True


def _lbva_handler(level: int = logging.NOTSET) -> logging.Handler:
    handler = _StderrHandler()
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler._lbva = True  # type: ignore[attr-defined]  # replaced, not stacked, when main() runs again in a process
    return handler


def _replace_lbva_handler(log: logging.Logger, handler: logging.Handler) -> None:
    log.handlers = [h for h in log.handlers if not getattr(h, "_lbva", False)] + [handler]


def configure_logging(verbose: bool = False) -> None:
    """Give lbva's own loggers (and its plugins') one handler each, once, and the root logger one for other
    libraries' warnings that nobody printed yet.

    ``logging.basicConfig`` printed every Lightning message twice: Lightning adds its own handler to its loggers
    when it is imported, and its records also reached the root handler. Leaving the root without a handler was not
    enough: a library that logs through the ``logging`` module's functions at import (LeRobot's dataset module
    does) makes Python call ``basicConfig`` itself, and from then on every lbva line printed twice. The root's
    handler here prints only what no handler below it printed."""
    for name in OWN_LOGGERS:
        log = logging.getLogger(name)
        _replace_lbva_handler(log, _lbva_handler())
        log.setLevel(logging.DEBUG if verbose else logging.INFO)
    root = _lbva_handler(logging.DEBUG if verbose else logging.WARNING)
    root.addFilter(_NotPrintedBelow())
    _replace_lbva_handler(logging.getLogger(), root)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropLightningTips) for f in log.filters):
            log.addFilter(_DropLightningTips())
    # Lightning's own pytree helper trips a torch deprecation on every fit; nothing a user can act on
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    if verbose:
        logging.getLogger().setLevel(logging.DEBUG)


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
    configure_logging(args.verbose)
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
