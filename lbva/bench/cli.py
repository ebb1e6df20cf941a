"""``lbva bench <name>``: benchmarks that print ratios measured in the same run (never timing assertions).

:data:`BENCHES` maps a name to a module exposing ``add_arguments(parser)`` and ``run(args) -> int``. Their shared
options (``--repeats``, ``--json``, ``--device``) are checked here before any benchmark starts.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import re

BENCHES: dict[str, str] = {"model": "lbva.bench.model", "inference": "lbva.bench.inference"}

# device strings a benchmark can run on: cpu, cuda, cuda:N
DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d+)?)$")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: ratios measured in one run")
    names = p.add_subparsers(dest="bench_name", metavar="<name>", required=True)
    for name, module in BENCHES.items():
        mod = importlib.import_module(module)
        q = names.add_parser(name, help=(mod.__doc__ or name).strip().splitlines()[0])
        mod.add_arguments(q)
        q.set_defaults(func=_checked(mod.run))


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse options a benchmark would only fail on later (or silently replace): a clear error now."""
    from lbva.cli_args import at_least, output_file
    from lbva.errors import CLIError

    at_least(getattr(args, "repeats", None), "--repeats", 1)
    if getattr(args, "json", None) is not None:
        output_file(args.json, "--json")
    device = getattr(args, "device", None)
    if device is not None and not DEVICE_PATTERN.match(device):
        raise CLIError(f"--device {device!r} is not a device the benchmarks run on; use cpu, cuda or cuda:N")


def _checked(run):
    @functools.wraps(run)
    def checked_run(args: argparse.Namespace) -> int:
        check_arguments(args)
        return run(args)

    return checked_run
