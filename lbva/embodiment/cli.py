"""``lbva embodiments`` (table of installed robots) and ``lbva embodiments show NAME`` (full detail)."""

from __future__ import annotations

import argparse


def _num(v) -> str:
    """A limit as a person reads it: float32 values rounded to 4 significant digits (0.9 rather than
    0.8999999761581421)."""
    return f"{float(v):.4g}"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embodiments", help="list installed robots (embodiment plugins)",
                       description="List the embodiments the installed plugins register, and where each comes from.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    verbs = p.add_subparsers(dest="embodiments_verb", metavar="<verb>")
    show = verbs.add_parser("show", help="everything one embodiment declares")
    show.add_argument("name", help="embodiment name (see `lbva embodiments`)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _slots(used) -> str:
    """Compact ranges: (0, 1, 2, 28) -> '0-2,28'."""
    out, run = [], []
    for s in list(used) + [None]:
        if run and (s is None or s != run[-1] + 1):
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 2 else ",".join(map(str, run)))
            run = []
        if s is not None:
            run.append(s)
    return ",".join(out)


def _run(args: argparse.Namespace) -> int:
    import json

    from lbva.cli import CLIError
    from lbva.embodiment import registry as reg_mod

    try:
        reg = reg_mod.registry()
    except reg_mod.PluginError as e:
        raise CLIError(str(e)) from e
    if getattr(args, "embodiments_verb", None) == "show":
        try:
            spec = reg_mod.get_embodiment(args.name)
        except reg_mod.UnknownEmbodimentError as e:
            raise CLIError(str(e)) from e
        info = spec.describe()
        info["package"] = reg.embodiment_sources[spec.name]
        info["envs"] = sorted(n for n, r in reg.envs.items() if r.embodiment == spec.name)
        info["robots"] = sorted(n for n, r in reg.robots.items() if r.embodiment == spec.name)
        if args.json:
            print(json.dumps(info, indent=2))
            return 0
        print(f"{spec.name}  (from {info['package']})")
        if spec.description:
            print(f"  {spec.description}")
        print(f"  cameras ({spec.camera_layout}, tiled {spec.frame_size[0]}x{spec.frame_size[1]}):")
        for c in spec.cameras:
            print(f"    {c.key}  {c.height}x{c.width}")
        print(f"  control {spec.control_hz:g} Hz, {spec.actions_per_frame} actions per latent frame, "
              f"{spec.chunk_frames} latent frames per chunk")
        for what, fields, dim in (("action", spec.action_fields, spec.native_action_dim),
                                  ("state", spec.state_fields, spec.native_state_dim)):
            print(f"  {what} ({dim} dims, key {spec.action_key if what == 'action' else spec.state_key}):")
            for f in fields:
                extra = {"quat": f" order={f.order}", "euler": f" seq={f.euler_seq}",
                         "gripper": f" closed={f.closed:g} open={f.open:g}"}.get(f.kind, "")
                print(f"    {f.name:<14} {f.kind:<10} {', '.join(f.dim_names)} -> slots {_slots(f.slots)}{extra}")
        print(f"  used action slots: {_slots(spec.used_slots)}")
        names = [n for f in spec.action_fields for n in f.dim_names]
        width = max(len(n) for n in names)
        print("  action limits (native units):")
        for n, lo, hi in zip(names, spec.action_low, spec.action_high):
            print(f"    {n:<{width}}  {_num(lo):>8} .. {_num(hi)}")
        print(f"  statistics: {info['stats'] or 'none (computed by `lbva prepare`)'}")
        print(f"  simulators: {', '.join(info['envs']) or 'none registered'}; robots: {', '.join(info['robots']) or 'none registered'}")
        if spec.notes:
            print(f"  notes: {spec.notes}")
        return 0

    specs = [reg.embodiments[n] for n in sorted(reg.embodiments)]
    if args.json:
        print(json.dumps([{"name": s.name, "package": reg.embodiment_sources[s.name],
                           "cameras": [c.key for c in s.cameras], "native_action_dim": s.native_action_dim,
                           "used_slots": list(s.used_slots)} for s in specs], indent=2))
        return 0
    rows = [[s.name, reg.embodiment_sources[s.name], ",".join(c.name for c in s.cameras), str(s.native_action_dim),
             _slots(s.used_slots)] for s in specs]
    print(_table(rows, ["name", "package", "cameras", "action dim", "used slots"]))
    return 0
