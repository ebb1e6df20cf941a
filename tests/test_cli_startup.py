"""`lbva --help` (every verb registered) stays light: no torch, no diffusers, no simulators at import time."""

import os
import subprocess
import sys

HEAVY = ("torch", "diffusers", "lerobot", "mujoco", "lightning", "transformers")


def test_building_the_cli_imports_nothing_heavy():
    code = ("import sys, lbva.cli; lbva.cli.build_parser(); "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"imported at CLI start-up: {out}"


def test_every_verb_in_the_table_registers():
    from lbva.cli import COMMANDS, build_parser

    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "command").choices
    missing = sorted(v for v in COMMANDS if v not in verbs)
    assert missing == [], missing  # build_parser imports every verb module; none may vanish silently


LOGGING_SNIPPET = """
import logging
from lbva.cli import configure_logging
configure_logging()
configure_logging()  # a second main() in the same process must not stack handlers
import lightning.pytorch  # noqa: F401  (adds its own handler to its loggers, as it does in `lbva train`)
logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False")
logging.getLogger("lightning.pytorch.utilities.rank_zero").info("💡 Tip: try a cloud logger")
logging.getLogger("lbva.train").info("policy folder: run/policy")
logging.getLogger("lbva_metaworld.env").warning("a plugin speaks")
logging.getLogger("lbva.train").debug("not shown without -v")
import lerobot.datasets.lerobot_dataset  # noqa: F401  (logs through logging.info at import: Python's basicConfig)
logging.info("a library's root info")  # would also call basicConfig on a root without a handler
logging.getLogger("lbva.demo").info("phase 2/4")
logging.getLogger("some_library").warning("a library warns")
"""


def test_each_log_line_is_printed_once_and_lightning_tips_are_dropped():
    """`lbva train` printed every Lightning line twice (Lightning's own handler, then the root handler the CLI set
    up with basicConfig); the CLI now configures only lbva's loggers."""
    r = subprocess.run([sys.executable, "-c", LOGGING_SNIPPET], capture_output=True, text=True, timeout=900, check=False,
                       env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert out.count("GPU available: False") == 1, out
    assert out.count("INFO lbva.train: policy folder: run/policy") == 1, out
    assert out.count("WARNING lbva_metaworld.env: a plugin speaks") == 1, out
    assert "Tip:" not in out and "not shown" not in out, out
    # after a library's import made Python configure the root logger, lbva's lines still print once, and other
    # libraries' warnings (nobody else prints them) still print, once
    assert out.count("phase 2/4") == 1, out
    assert out.count("a library warns") == 1, out
    assert "root info" not in out, out


def test_every_option_with_a_default_shows_it_in_help():
    """`--help` of every verb names each option's default (stated by the option's own text or appended)."""
    import argparse

    from lbva.cli import _all_parsers, build_parser, shows_default

    parser = build_parser()
    checked = 0
    for p in _all_parsers(parser):
        text = p.format_help()
        for action in p._actions:
            d = action.default
            if (not action.option_strings or d is None or d is False or d is argparse.SUPPRESS or d in ([], ())
                    or isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._StoreConstAction))):
                continue
            checked += 1
            flag = action.option_strings[-1]
            entry = text[text.index(flag, text.index("options:")):]
            entry = entry[:entry.find("\n  -", 1) if "\n  -" in entry[1:] else len(entry)]
            assert "default" in entry.lower(), f"{p.prog} {flag}: no default in its help:\n{entry}"
            squeezed = "".join(entry.split())  # help wraps at spaces and hyphens
            assert not shows_default(action) or "".join(f"(default: {d})".split()) in squeezed, (p.prog, flag, entry)
    assert checked > 30, checked  # every verb's options, not a handful
