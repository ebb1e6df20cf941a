"""Every ``lbva …`` command that the README, the docs, the plugin READMEs, the recipes and the messages in the code
name exists: its verb, its sub-verb and each ``--option`` it shows. A message that tells a user to run a verb
that was renamed or never written is a dead end."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from lbva.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "embodiments").glob("*/README.md")),
           *sorted((ROOT / "lbva").rglob("*.py")), *sorted((ROOT / "lbva").rglob("*.yaml")),
           *sorted((ROOT / "embodiments").rglob("*.py")), *sorted((ROOT / "examples").rglob("*.py"))]
# `lbva …` inside backticks (docs, messages), or a recipe's first-line comment
COMMAND = re.compile(r"`(lbva [^`\n]+)`|^# (lbva \S.*)$", re.M)


def commands() -> list[tuple[str, str]]:
    found = []
    for path in SOURCES:
        if "egg-info" in path.parts or "__pycache__" in path.parts:
            continue
        for m in COMMAND.finditer(path.read_text(errors="replace")):
            found.append((str(path.relative_to(ROOT)), (m.group(1) or m.group(2)).strip()))
    return found


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def check(command: str) -> str | None:
    """None if the verb path and options exist, else what is wrong."""
    tokens = command.split()[1:]
    parser = build_parser()
    path = []
    while tokens and subparsers(parser):
        word = tokens[0]
        if not re.fullmatch(r"[a-z][a-z0-9-]*", word):
            break  # a placeholder (RECIPE, ENV, <verb>) where the next verb would be
        choices = subparsers(parser)
        if word not in choices:
            if path and not any(isinstance(a, argparse._SubParsersAction) and a.required for a in parser._actions):
                break  # a positional argument of a verb with optional sub-verbs
            return f"`lbva {' '.join(path + [word])}`: no such verb (have {sorted(choices)})"
        path.append(word)
        parser = choices[word]
        tokens = tokens[1:]
    known = options(parser)
    for t in tokens:
        opt = t.split("=", 1)[0].rstrip(",.;:)")
        opt = opt.strip("[]()|")
        if opt.startswith("--") and re.fullmatch(r"--[a-z][a-z0-9-]*", opt) and opt not in known:
            return f"`lbva {' '.join(path)}` has no option {opt} (has {sorted(known)})"
    return None


def test_the_scan_finds_the_commands_it_should():
    found = {c for _, c in commands()}
    assert any(c.startswith("lbva train") for c in found) and any(c.startswith("lbva prepare") for c in found)
    assert check("lbva nosuchverb") and check("lbva export nosuch x y") and check("lbva train demo/tiny --nosuch")
    assert check("lbva export policy CKPT OUT --raw") is None


@pytest.mark.parametrize("where, command", commands(), ids=lambda x: x if len(x) < 60 else x[:57] + "...")
def test_every_named_command_exists(where, command):
    problem = check(command)
    assert problem is None, f"{where}: {problem}"


def test_config_show_doc_explains_each_key(capsys):
    from lbva.cli import main

    assert main(["config", "show", "demo/tiny", "--doc"]) == 0
    out = capsys.readouterr().out
    assert "  size: tiny  # named size preset; one of tiny | small | wan2.2-5b" in out
    assert "  init_from: null  # start from this checkpoint" in out
    assert "  max_steps: 4  # optimizer steps; range [1, inf]" in out
