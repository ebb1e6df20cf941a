"""Load a recipe: typed defaults ← recipe YAML (and the recipes it extends) ← ``key=value`` overrides.

Every failure is a :class:`ConfigError` naming the full key path, the value given and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from lbva.config.base import ConfigError
from lbva.config.schema import LbvaConfig

# A recipe may extend another with a top-level ``extends: <relative path or recipe name>``.
EXTENDS_KEY = "extends"


def recipes_dir() -> Path:
    """The recipes shipped inside the package (``lbva/recipes``), so a wheel install has them too."""
    return Path(__file__).resolve().parents[1] / "recipes"


def resolve_recipe(recipe: str | Path, relative_to: Path | None = None) -> Path:
    """Find a recipe by path, or by name shipped with lbva (``demo/metaworld`` → ``lbva/recipes/demo/metaworld.yaml``)."""
    raw = str(recipe)
    candidates: list[Path] = []
    for base in ([relative_to] if relative_to else []) + [Path.cwd(), recipes_dir()]:
        p = Path(raw) if Path(raw).is_absolute() else base / raw
        candidates += [p, p.with_suffix(".yaml")] if p.suffix != ".yaml" else [p]
    for c in candidates:
        if c.is_file():
            return c
    known = sorted(str(p.relative_to(recipes_dir()).with_suffix("")) for p in recipes_dir().rglob("*.yaml"))
    hint = difflib.get_close_matches(raw, known, n=3)
    raise ConfigError(
        f"recipe {raw!r} not found (looked for a file, then under {recipes_dir()}). "
        f"Known recipes: {', '.join(known) or 'none'}." + (f" Did you mean: {', '.join(hint)}?" if hint else "")
    )


def _load_yaml_chain(path: Path, seen: tuple[Path, ...] = ()) -> DictConfig:
    if path in seen:
        raise ConfigError(f"recipe {path} extends itself through {' -> '.join(map(str, seen))}")
    try:
        node = OmegaConf.load(path)
    except Exception as e:  # yaml errors carry line numbers; keep them
        raise ConfigError(f"recipe {path} is not valid YAML: {e}") from e
    if not isinstance(node, DictConfig):
        raise ConfigError(f"recipe {path} must be a mapping of sections (model:, trainer:, ...), got a list")
    parent = node.pop(EXTENDS_KEY, None)
    if parent is None:
        return node
    base = _load_yaml_chain(resolve_recipe(str(parent), relative_to=path.parent), seen + (path,))
    return OmegaConf.merge(base, node)


def _allowed_keys(schema: DictConfig, full_key: str) -> list[str]:
    parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
    node = OmegaConf.select(schema, parent) if parent else schema
    return list(node.keys()) if isinstance(node, DictConfig) else []


def _field_type(full_key: str) -> str | None:
    """The declared type of a dotted key in :class:`LbvaConfig`, as written in the dataclass."""
    cls: Any = LbvaConfig
    for part in full_key.split("."):
        fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        if part not in fields:
            return None
        f = fields[part]
        cls = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        last = f.type
    return last if isinstance(last, str) else getattr(last, "__name__", str(last))


def _rewrap(e: OmegaConfBaseException, schema: DictConfig, source: str) -> ConfigError:
    key = getattr(e, "full_key", None) or "?"
    if isinstance(e, ConfigKeyError):
        allowed = _allowed_keys(schema, key)
        leaf = key.rsplit(".", 1)[-1]
        close = difflib.get_close_matches(leaf, allowed, n=1)
        return ConfigError(
            f"unknown config key {key!r} (from {source}). Allowed keys here: {', '.join(allowed)}."
            + (f" Did you mean {close[0]!r}?" if close else "")
        )
    if isinstance(e, ValidationError):
        expected = _field_type(key)
        return ConfigError(
            f"bad value for {key!r} (from {source}): {getattr(e, 'msg', str(e)).splitlines()[0]}"
            + (f"; expected a value of type {expected}" if expected else "")
        )
    return ConfigError(f"config error at {key!r} (from {source}): {str(e).splitlines()[0]}")


def _check_metadata(obj: Any, prefix: str = "") -> None:
    """Enforce ``choice``/``bounded`` metadata on the merged, typed config."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_metadata(value, key + ".")
            continue
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            raise ConfigError(
                f"bad value for {key!r}: {value!r}. Allowed values: {', '.join(map(repr, choices))}."
                + (f" Did you mean {close[0]!r}?" if close else "")
            )
        lo, hi = f.metadata.get("range", (None, None))
        limit_key = None
        if isinstance(hi, str):  # the bound is another field of this section: a limit the user can raise
            limit_key, hi = f"{prefix}{hi}", getattr(obj, hi)
        if isinstance(value, float) and not math.isfinite(value) and (lo is not None or hi is not None):
            raise ConfigError(f"bad value for {key!r}: {value!r} is not a finite number; give a value in the allowed range.")
        if value is not None and limit_key is not None and value > hi:
            raise ConfigError(
                f"bad value for {key!r}: {value!r} is above the limit {limit_key}={hi!r}; if you mean it, raise the "
                f"limit too ({limit_key}=N)."
            )
        if value is not None and ((lo is not None and value < lo) or (hi is not None and value > hi)):
            bounds = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
            raise ConfigError(f"bad value for {key!r}: {value!r} is outside the allowed range {bounds}.")


def load_config(recipe: str | Path | None = None, overrides: Iterable[str] = ()) -> LbvaConfig:
    """Merge defaults, a recipe and ``key=value`` overrides into a validated :class:`LbvaConfig`."""
    schema = OmegaConf.structured(LbvaConfig)
    merged = schema
    if recipe is not None:
        path = resolve_recipe(recipe)
        try:
            merged = OmegaConf.merge(merged, _load_yaml_chain(path))
        except OmegaConfBaseException as e:
            raise _rewrap(e, schema, f"recipe {path}") from None
    overrides = list(overrides)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (for example trainer.lr=1e-4)")
    try:
        if overrides:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(overrides))
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise _rewrap(e, schema, "command-line overrides" if overrides else "recipe") from None
    _check_metadata(cfg)
    return cfg


def to_yaml(cfg: LbvaConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_dict(cfg: Any) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def from_dict(data: dict) -> LbvaConfig:
    """Rebuild a validated config from a plain dict (e.g. stored in a checkpoint)."""
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(LbvaConfig), OmegaConf.create(data)))
    except OmegaConfBaseException as e:
        raise _rewrap(e, OmegaConf.structured(LbvaConfig), "stored config") from None
    _check_metadata(cfg)
    return cfg
