"""Typed YAML → dataclass conversion with errors that name the key and the file.

Why not a library (pydantic, omegaconf)? The configs are small, the rules are few
(unknown key = error, wrong type = error, ``--set a.b=v`` overrides) and the error
messages must name the config file, which is easiest when the converter is ours.
This module is generic: it knows nothing about `mer`'s sections.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal, Union, get_args, get_origin

import yaml


class ConfigError(ValueError):
    """A config problem; the message names the file and the dotted key."""


@dataclasses.dataclass(frozen=True)
class TaggedBy:
    """Marks a field whose dataclass is chosen by one of its keys.

    ``Annotated[object, TaggedBy("encoder", lookup)]``: the mapping's ``encoder``
    value is passed to ``lookup`` which returns the dataclass to build.
    """

    tag: str
    lookup: Callable[[str], type]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def convert(tp: Any, value: Any, key: str, source: str) -> Any:
    """Convert a YAML value to ``tp``, raising ConfigError naming ``key`` and ``source``."""
    origin = get_origin(tp)
    if origin is typing.Annotated:
        base, *meta = get_args(tp)
        tagged = next((m for m in meta if isinstance(m, TaggedBy)), None)
        if tagged is None:
            return convert(base, value, key, source)
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping with a '{tagged.tag}' key, got {value!r}")
        if tagged.tag not in value:
            raise ConfigError(f"{source}: '{key}' needs a '{tagged.tag}' key")
        try:
            cls = tagged.lookup(value[tagged.tag])
        except KeyError as exc:
            raise ConfigError(f"{source}: '{key}.{tagged.tag}': {exc.args[0]}") from None
        return from_dict(cls, value, source, prefix=key)
    if tp is Any or tp is object:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(arg, value, key, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{source}: '{key}' = {value!r} matches none of {_type_name(tp)}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{source}: '{key}' = {value!r} is not one of {list(allowed)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' must be a list, got {type(value).__name__} {value!r}")
        (item_tp, *_) = get_args(tp) or (Any,)
        items = [convert(item_tp, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {type(value).__name__} {value!r}")
        key_tp, val_tp = get_args(tp) or (str, Any)
        return {str(k): convert(val_tp, v, f"{key}.{k}", source) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {type(value).__name__} {value!r}")
        return from_dict(tp, value, source, prefix=key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: '{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: '{key}' must be a string, got {value!r}")
        return value
    raise ConfigError(f"{source}: '{key}' has an unsupported type {_type_name(tp)}")


def from_dict(cls: type, data: dict, source: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types are errors."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    retired = getattr(cls, "RETIRED_KEYS", {})
    for name in sorted(set(data) & set(retired)):
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"{source}: '{where}{name}' is no longer a key: {retired[name]}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"{source}: unknown key '{where}{unknown[0]}'"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + f"; valid keys{' of ' + prefix if prefix else ''}: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, field in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = convert(hints[name], data[name], key, source)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required key '{key}'")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # __post_init__ validation
        raise ConfigError(f"{source}: '{prefix or cls.__name__}': {exc}") from None


def to_dict(obj: Any) -> Any:
    """Plain YAML-able structure of a (nested) dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def apply_overrides(data: dict, overrides: list[str], source: str) -> dict:
    """Apply ``key.sub=value`` strings; values are parsed as YAML scalars/lists."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.sub=value")
        dotted, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = data
        parts = dotted.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: --set {dotted}: '{part}' is not a mapping")
            node = child
        node[parts[-1]] = value
    return data


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data
