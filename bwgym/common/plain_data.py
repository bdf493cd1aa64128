"""Dataclasses from plain data (YAML, ``--set`` values, ``kwargs``): every key and type checked.

One converter serves the scenario schema (:mod:`bwgym.scenarios.config`) and every registry
entry's options (:mod:`bwgym.common.registry`), so a bad value reads the same wherever it is
given: ``<path>: expected <type>, got <value>`` and ``<path>: unknown key. Did you mean ...?``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Union

__all__ = ["FLOAT_TEXT", "MAX_ECHO_CHARS", "coerce", "from_plain", "resolved_hints", "short", "type_name"]

#: Longest echo of a value in an error message (characters); the rest is elided.
MAX_ECHO_CHARS = 200
#: Numbers YAML 1.1 leaves as strings but YAML 1.2 (and every user) reads as floats: ``1e7``,
#: ``1.0e7`` (1.1 wants a dot and a signed exponent).
FLOAT_TEXT = re.compile(r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+")


def short(value: Any, limit: int = MAX_ECHO_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters with the count of those left out."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more chars)"


def type_name(tp: Any) -> str:
    """A type as a user reads it: ``int or null``, ``float``, ``list``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        return "list"
    if origin in (dict, Mapping) or tp is dict:
        return "mapping"
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    if isinstance(tp, str):  # an annotation left unresolved
        return tp
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _scalar(value: Any, tp: Any) -> tuple[bool, Any]:
    """``(True, value as tp)`` for the scalar types, ``(False, None)`` when it is not one."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # a numpy scalar
        value = value.item()
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is str:
        return isinstance(value, str), value
    if tp is float:
        if isinstance(value, str) and FLOAT_TEXT.fullmatch(value.strip()):
            value = value.replace("_", "")  # "1e7": YAML 1.1 (and YAML from other tools) gives text
        elif not isinstance(value, (int, float)) or isinstance(value, bool):
            return False, None
        try:
            return True, float(value)
        except OverflowError:  # an integer beyond float range
            return False, None
    return False, None


def coerce(value: Any, tp: Any, path: str, error: type[Exception] = ValueError) -> Any:
    """``value`` checked against the annotation ``tp`` (ints widen to float, lists to tuples).

    Nested dataclasses are filled by :func:`from_plain`; an annotation this does not know (or a
    string left unresolved) passes the value through for the dataclass to validate.

    Raises:
        error: ``<path>: expected <type>, got <value>``.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        section = [a for a in args if a is not type(None)]
        if len(section) == 1 and dataclasses.is_dataclass(section[0]):  # an optional section
            return None if value is None else from_plain(section[0], value, path, error)
        for option in args:
            try:
                return coerce(value, option, path, error)
            except error:
                continue
    elif tp is type(None):
        if value is None:
            return None
    elif tp is Any or tp is object or isinstance(tp, str):
        return value
    elif dataclasses.is_dataclass(tp):
        return from_plain(tp, value, path, error)
    elif origin in (dict, Mapping) or tp is dict:
        if isinstance(value, Mapping):
            value_tp = args[1] if len(args) == 2 else Any
            return {str(k): coerce(v, value_tp, f"{path}.{k}", error) for k, v in value.items()}
    elif origin in (tuple, list, Sequence) or tp in (tuple, list):
        if isinstance(value, (list, tuple)):
            homogeneous = len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis)
            inner = args[0] if homogeneous else Any
            items = [coerce(v, inner, f"{path}[{i}]", error) for i, v in enumerate(value)]
            return list(items) if (origin or tp) is list else tuple(items)
    elif tp in (bool, int, float, str):
        ok, out = _scalar(value, tp)
        if ok:
            return out
    else:  # a class this does not know: the dataclass validates it
        return value
    raise error(f"{path}: expected {type_name(tp)}, got {short(value)}")


def from_plain(cls: type, data: Any, path: str, error: type[Exception] = ValueError) -> Any:
    """The dataclass ``cls`` filled from the mapping ``data`` (None: all defaults).

    Raises:
        error: a key ``cls`` does not have (with the closest one and every allowed key), a
            missing required key, a value of the wrong type (:func:`coerce`), or a ``ValueError`` /
            ``TypeError`` of the dataclass's own ``__post_init__``; each naming its ``path``.
    """
    if data is None:
        data = {}
    where = path or "scenario"
    if not isinstance(data, Mapping):
        raise error(f"{where}: expected a mapping of {cls.__name__} keys, got {short(data)}")
    hints = resolved_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields]
    for key in data:
        if key not in names:
            near = difflib.get_close_matches(str(key)[:MAX_ECHO_CHARS], names, n=1)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            shown = str(key) if len(str(key)) <= MAX_ECHO_CHARS else short(key)
            allowed = ", ".join(names) if names else "none"
            raise error(f"{f'{path}.' if path else ''}{shown}: unknown key.{hint} Allowed keys: {allowed}")
    kwargs = {}
    for f in fields:
        if f.name in data:
            kwargs[f.name] = coerce(
                data[f.name], hints.get(f.name, Any), f"{path}.{f.name}" if path else f.name, error
            )
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise error(f"{where}: missing required key {f.name!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, error):
            raise
        raise error(f"{where}: {exc}") from None


def resolved_hints(cls: type) -> dict[str, Any]:
    """The annotations of ``cls`` as types (all strings when one names a type-checking-only import)."""
    try:
        return typing.get_type_hints(cls)
    except Exception:
        return dict(getattr(cls, "__annotations__", {}))
