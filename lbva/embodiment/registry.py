"""Find embodiments, simulators and real-robot factories through pluggy plugins.

Plugins are modules published in the entry-point group ``lbva.embodiments``; lbva's own
(:mod:`lbva.embodiment.builtin`, entry point ``builtin``) is one of them; every entry point of the
``lbva`` distribution itself is always loaded. ``LBVA_PLUGINS=name1,name2`` limits which *other* entry points load (entry-point or distribution names;
an empty value loads none), so tests see exactly what they ask for.

The registry is built on first use and cached per value of ``LBVA_PLUGINS``;
:func:`reset_registry` forgets it (after installing a plugin in the same process).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from lbva.embodiment import hookspecs
from lbva.embodiment.spec import EmbodimentSpec
from lbva.errors import UserError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "lbva.embodiments"
PLUGINS_ENV = "LBVA_PLUGINS"
BUILTIN_PLUGIN = "builtin"


class UnknownEmbodimentError(UserError, KeyError):
    """A name that no installed plugin registered. ``valid`` lists the names that exist."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        hint = {
            "embodiment": "see `lbva embodiments`, or install the plugin that provides it",
            "env": "install the plugin (or extra) that provides this simulator",
            "robot": "install the plugin (or extra) that provides this robot",
        }[kind]
        super().__init__(f"unknown {kind} {name!r}; valid names: {', '.join(valid) or '(none installed)'} ({hint})")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class PluginError(UserError, RuntimeError):
    """A plugin failed to load or registered something inconsistent."""


@dataclass(frozen=True)
class Registered:
    """A factory a plugin registered: for an env or a real robot."""

    name: str
    embodiment: str
    factory: Callable
    source: str


@dataclass
class Registry:
    """Everything the loaded plugins registered, with the package each came from."""

    embodiments: dict[str, EmbodimentSpec] = field(default_factory=dict)
    embodiment_sources: dict[str, str] = field(default_factory=dict)
    envs: dict[str, Registered] = field(default_factory=dict)
    robots: dict[str, Registered] = field(default_factory=dict)
    plugins: dict[str, str] = field(default_factory=dict)  # plugin name -> package (distribution) it comes from


def _allowed() -> set[str] | None:
    raw = os.environ.get(PLUGINS_ENV)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _dist_name(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None and dist.metadata is not None else "?"


def plugin_manager() -> tuple[pluggy.PluginManager, dict[str, str]]:
    """A fresh PluginManager with the built-in plugin and the allowed entry points registered."""
    pm = pluggy.PluginManager("lbva")
    pm.add_hookspecs(hookspecs)
    sources: dict[str, str] = {}
    builtin = importlib.import_module("lbva.embodiment.builtin")
    pm.register(builtin, name=BUILTIN_PLUGIN)
    sources[BUILTIN_PLUGIN] = "lbva"
    allowed = _allowed()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = _dist_name(ep)
        if ep.name == BUILTIN_PLUGIN and dist == "lbva":
            continue  # registered above, whatever LBVA_PLUGINS says
        # lbva's own entry points (e.g. its simulators) always load; LBVA_PLUGINS limits third-party ones
        if dist != "lbva" and allowed is not None and ep.name not in allowed and dist not in allowed:
            logger.debug("skipping plugin %s from %s (not in %s)", ep.name, dist, PLUGINS_ENV)
            continue
        if pm.get_plugin(ep.name) is not None:
            raise PluginError(
                f"two plugins are named {ep.name!r} (entry point group {ENTRY_POINT_GROUP}, packages "
                f"{sources.get(ep.name)} and {dist}); uninstall one or rename its entry point"
            )
        try:
            module = ep.load()
        except Exception as e:
            raise PluginError(
                f"plugin {ep.name!r} from package {dist} ({ep.value}) failed to import: {type(e).__name__}: {e}. "
                f"Fix or uninstall it, or limit plugins with {PLUGINS_ENV}=name1,name2"
            ) from e
        pm.register(module, name=ep.name)
        sources[ep.name] = dist
    return pm, sources


def build_registry() -> Registry:
    """Load the plugins and call their hooks (uncached; see :func:`registry`)."""
    pm, sources = plugin_manager()
    reg = Registry(plugins=dict(sources))

    def source_of(impl) -> str:
        name = pm.get_name(impl.plugin) or "?"
        return sources.get(name, name)  # the distribution (package) the plugin comes from

    for impl in pm.hook.lbva_register_embodiments.get_hookimpls():
        src = source_of(impl)

        def register(spec: EmbodimentSpec, _src=src) -> None:
            if not isinstance(spec, EmbodimentSpec):
                raise PluginError(f"plugin {_src} registered {type(spec).__name__}, not an EmbodimentSpec")
            if spec.name in reg.embodiments:
                raise PluginError(
                    f"embodiment {spec.name!r} is registered twice: by {reg.embodiment_sources[spec.name]} and by {_src}; "
                    f"uninstall one, or limit plugins with {PLUGINS_ENV}"
                )
            reg.embodiments[spec.name] = spec
            reg.embodiment_sources[spec.name] = _src

        impl.function(register=register)

    for hook, table, kind in (
        (pm.hook.lbva_register_envs, reg.envs, "env"),
        (pm.hook.lbva_register_robots, reg.robots, "robot"),
    ):
        for impl in hook.get_hookimpls():
            src = source_of(impl)

            def register(name: str, embodiment: str, factory: Callable, _src=src, _table=table, _kind=kind) -> None:
                if not callable(factory):
                    raise PluginError(f"plugin {_src} registered {_kind} {name!r} with a factory that is not callable")
                if name in _table:
                    raise PluginError(f"{_kind} {name!r} is registered twice: by {_table[name].source} and by {_src}")
                _table[name] = Registered(name=name, embodiment=embodiment, factory=factory, source=_src)

            impl.function(register=register)

    for table, kind in ((reg.envs, "env"), (reg.robots, "robot")):
        for item in table.values():
            if item.embodiment not in reg.embodiments:
                raise PluginError(
                    f"{kind} {item.name!r} from {item.source} is for embodiment {item.embodiment!r}, which no plugin "
                    f"registered (known: {', '.join(sorted(reg.embodiments))})"
                )
    return reg


_CACHE: dict[str | None, Registry] = {}


def registry() -> Registry:
    """The registry for the current ``LBVA_PLUGINS`` value (built once, then cached)."""
    key = os.environ.get(PLUGINS_ENV)
    if key not in _CACHE:
        _CACHE[key] = build_registry()
    return _CACHE[key]


def reset_registry() -> None:
    """Forget cached registries (after installing or removing a plugin in this process)."""
    _CACHE.clear()


def list_embodiments() -> list[EmbodimentSpec]:
    """Every registered embodiment, sorted by name."""
    reg = registry()
    return [reg.embodiments[n] for n in sorted(reg.embodiments)]


def embodiment_source(name: str) -> str:
    """The package (and plugin) an embodiment comes from."""
    get_embodiment(name)
    return registry().embodiment_sources[name]


def get_embodiment(name: str) -> EmbodimentSpec:
    """The embodiment registered as ``name``; :class:`UnknownEmbodimentError` lists the valid names."""
    if isinstance(name, EmbodimentSpec):
        return name
    reg = registry()
    if name not in reg.embodiments:
        raise UnknownEmbodimentError("embodiment", str(name), sorted(reg.embodiments))
    return reg.embodiments[name]


def get_env_factory(env_name: str) -> tuple[str, Callable]:
    """``(embodiment_name, factory)`` of a registered simulator; unknown names list the valid ones."""
    reg = registry()
    if env_name not in reg.envs:
        raise UnknownEmbodimentError("env", str(env_name), sorted(reg.envs))
    item = reg.envs[env_name]
    return item.embodiment, item.factory


def get_robot_factory(robot_name: str) -> tuple[str, Callable]:
    """``(embodiment_name, factory)`` of a registered real robot; unknown names list the valid ones."""
    reg = registry()
    if robot_name not in reg.robots:
        raise UnknownEmbodimentError("robot", str(robot_name), sorted(reg.robots))
    item = reg.robots[robot_name]
    return item.embodiment, item.factory


def list_envs() -> dict[str, Registered]:
    return dict(sorted(registry().envs.items()))


def list_robots() -> dict[str, Registered]:
    return dict(sorted(registry().robots.items()))
