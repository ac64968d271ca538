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
import re
from collections.abc import Callable
from decimal import Decimal
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


# A path ending in one of these modifiers is run as the path before it, then the modifier as
# Go's gjson 1.19 defines it (the gjson package differs on values that are not strings/objects).
_TAIL_MODIFIER = re.compile(r"(?:^|(?<!\\)[.|])@(tostr|fromstr|keys)$")


def _mod_keys(v: Any) -> Any:
    """``@keys``: an object's keys; one null per element of an array, one for any other value."""
    if v is MISSING:
        return MISSING
    if isinstance(v, dict):
        return list(v)
    return [None] * len(v) if isinstance(v, list) else [None]


def _mod_tostr(v: Any) -> Any:
    """``@tostr``: the value's JSON text, as a string."""
    return MISSING if v is MISSING else to_json_text(v)


def _mod_fromstr(v: Any) -> Any:
    """``@fromstr``: a string's content read as JSON; any other value as it is (null: nothing)."""
    if v is MISSING or v is None:
        return MISSING
    if not isinstance(v, str):
        return v
    try:
        return json.loads(v)
    except ValueError:
        return MISSING


_MODIFIERS = {"keys": _mod_keys, "tostr": _mod_tostr, "fromstr": _mod_fromstr}


@lru_cache(maxsize=4096)
def compile_path(path: str) -> Getter:
    """A function returning the value at ``path`` in parsed JSON, or MISSING."""
    m = _TAIL_MODIFIER.search(path)
    if m:
        inner = compile_path(path[:m.start()]) if m.start() else (lambda obj: obj)
        modifier = _MODIFIERS[m.group(1)]
        return lambda obj: modifier(inner(obj))
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


# A named multipath key written bare (``{x:a.b}``), which Go's gjson accepts and gjson-py
# only takes quoted (``{"x":a.b}``).
_BARE_KEY = re.compile(r'(?<=[{,])([A-Za-z_][A-Za-z0-9_-]*):(?!\s*[{\[])')


_HASH_SEGMENT = re.compile(r"(?<!\\)\.#(?=$|[.(])")


def _full_gjson(path: str) -> Getter:
    path = _BARE_KEY.sub(r'"\1":', path) if "{" in path else path
    # ``x.#`` counts or maps over an array; on an object Go's gjson looks for a key "#"
    # (there is none), where the gjson package would walk the object's values.
    hash_at = _HASH_SEGMENT.search(path)
    before_hash = compile_path(path[:hash_at.start()]) if hash_at and _split(path[:hash_at.start()]) else None

    def get(obj: Any) -> Any:
        if isinstance(obj, (bytes, str)) or obj is None:
            return MISSING
        if before_hash is not None and isinstance(before_hash(obj), dict):
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
    """A JSON number as gjson's ``Result.String()`` prints it.

    Argo turns numbers into text this way (dataKey parameters, string data filters): a
    plain integer keeps its text (``100``), anything else is Go's
    ``strconv.FormatFloat(f, 'f', -1, 64)``: the shortest digits that read back as the
    same float, never an exponent (``21.0`` -> ``21``, ``1e3`` -> ``1000``, ``2.50`` ->
    ``2.5``, ``1.5e-7`` -> ``0.00000015``).
    """
    if isinstance(n, bool):
        return "true" if n else "false"
    if isinstance(n, int):
        return str(n)
    return format_float_f(n)


def format_float_f(f: float) -> str:
    """Go's ``strconv.FormatFloat(f, 'f', -1, 64)``."""
    if not math.isfinite(f):
        return "NaN" if math.isnan(f) else ("+Inf" if f > 0 else "-Inf")
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    # repr() is the shortest text that reads back as f, the digits Go picks too.
    return format(Decimal(repr(f)).normalize(), "f")


def go_json_number(f: float) -> int | float:
    """A float64 as Go's ``json.Marshal`` writes it, read back: integral values below 1e21
    are written in full with the shortest digits (``1.2345678901234567e19`` is
    ``12345678901234567000``), so they come back as that int; others stay floats."""
    if f.is_integer() and abs(f) < 1e21:
        if abs(f) < 2**53:
            return int(f)
        return int(Decimal(repr(f)))
    return f


def format_float_v(f: float) -> str:
    """Go's ``%v`` of a float64 (``strconv.FormatFloat(f, 'g', -1, 64)``): ``21``, ``2.5``,
    ``1e+06``, ``1.23456789e+08``, ``1e-05``. An exponent is used from 1e+06 on and below 1e-4."""
    if not math.isfinite(f):
        return "NaN" if math.isnan(f) else ("+Inf" if f > 0 else "-Inf")
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign, digits, exp = Decimal(repr(f)).normalize().as_tuple()
    text = "".join(map(str, digits))
    point = len(digits) + int(exp)  # digits before the decimal point
    x = point - 1
    minus = "-" if sign else ""
    if x < -4 or x >= 6:  # strconv's 'g' with the shortest precision decides with eprec 6
        mant = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{minus}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{text}"
    if point >= len(text):
        return minus + text + "0" * (point - len(text))
    return f"{minus}{text[:point]}.{text[point:]}"


def gjson_type(value: Any) -> str:
    """gjson's ``Result.Type.String()`` for a parsed value: String, Number, True, False, Null or JSON."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, (int, float)):
        return "Number"
    if isinstance(value, str):
        return "String"
    return "JSON"


def go_value(v: Any) -> Any:
    """Decoded JSON as gjson's ``Value()`` hands it to govaluate and Go templates: every number a float64."""
    if type(v) is int:
        return float(v)
    if isinstance(v, list):
        return [go_value(x) for x in v]
    if isinstance(v, dict):
        return {k: go_value(x) for k, x in v.items()}
    return v


def go_sprint(value: Any) -> str:
    """Go's ``fmt.Sprint`` (``%v``) of a JSON value as Go decodes it (every number a float64)."""
    if value is None:
        return "<nil>"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return format_float_v(float(value))
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + " ".join(go_sprint(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_sprint(value[k])}" for k in sorted(value)) + "]"
    return str(value)


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
