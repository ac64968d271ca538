"""GJSON paths, compiled once, and GJSON's conversions of a value to string, number and bool.

Simple paths (``body.items.0.name``, with ``\\.`` escapes) walk the parsed data
directly; anything using GJSON's richer syntax (``#``, queries, wildcards, modifiers)
goes through the ``gjson`` package. A missing path is ``MISSING``, which Argo treats
as an error.

>>> get = compile_path("body.items.1")
>>> get({"body": {"items": ["a", "b"]}})
'b'
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import gjson
from gjson import GJSONError

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING", "__bool__": lambda self: False})()
_SPECIAL = set('*?#@|()[]{}!=<>%,"\'~')

Getter = Callable[[Any], Any]


def _split(path: str) -> list[str] | None:
    """Segments of a simple path, or None when GJSON's full syntax is needed."""
    parts, cur, i = [], [], 0
    while i < len(path):
        c = path[i]
        if c == "\\" and i + 1 < len(path):
            cur.append(path[i + 1])
            i += 2
            continue
        if c in _SPECIAL:
            return None
        if c == ".":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


@lru_cache(maxsize=4096)
def compile_path(path: str) -> Getter:
    """A function returning the value at ``path`` in parsed JSON, or MISSING."""
    parts = _split(path)
    if parts is None:
        return _full_gjson(path)
    keys = tuple((p, int(p) if p.isdigit() else None) for p in parts)

    def get(obj: Any) -> Any:
        for key, index in keys:
            if type(obj) is dict:
                if key not in obj:
                    return MISSING
                obj = obj[key]
            elif type(obj) is list and index is not None:
                if index >= len(obj):
                    return MISSING
                obj = obj[index]
            else:
                return MISSING
        return obj

    return get


def _full_gjson(path: str) -> Getter:
    def get(obj: Any) -> Any:
        if isinstance(obj, (bytes, str)) or obj is None:
            return MISSING
        try:
            return gjson.GJSON(obj).get(path, quiet=False)
        except GJSONError:
            return MISSING

    return get


def get_path(obj: Any, path: str) -> Any:
    return compile_path(path)(obj)


def to_json_text(value: Any) -> str:
    """Compact JSON in the original key order, as Argo slices raw bytes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def format_number(n: float | int) -> str:
    """A JSON number as gjson prints it: ``100``, ``2.5``."""
    if isinstance(n, bool):
        return "true" if n else "false"
    if isinstance(n, int) or not math.isfinite(n):
        return str(n)
    return repr(n)


def gjson_string(value: Any) -> str:
    """gjson ``Result.String()``: strings as they are, null as "", others as JSON text."""
    if isinstance(value, str):
        return value
    if value is None or value is MISSING:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return format_number(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return to_json_text(value)


def gjson_float(value: Any) -> float:
    """gjson ``Result.Float()``: numbers, numeric strings, true as 1; otherwise 0."""
    if value is True:
        return 1.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return 0.0
    return 0.0


def gjson_bool(value: Any) -> bool:
    """gjson ``Result.Bool()``: true, non-zero numbers, and strings Go's ParseBool accepts."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        return value in ("1", "t", "T", "TRUE", "true", "True")
    return False


def parse_go_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``; ValueError for anything else."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"invalid boolean {text!r}")


def parse_go_float(text: str) -> float:
    """Go's ``strconv.ParseFloat`` (accepts ``1e3``, ``Inf``, ``NaN``, underscores refused)."""
    t = text.strip()
    if t != text or not t or "_" in t:
        raise ValueError(f"invalid number {text!r}")
    return float(t)
