"""What untrusted input may cost: JSON nesting, and a strict JSON reader shared by every seam.

Every place that reads JSON from outside (a webhook body, a bus message, an events file)
goes through :func:`loads_strict`, so one rule holds everywhere: standard JSON only (no
``NaN``/``Infinity``), nested at most ``MAX_JSON_DEPTH`` deep. Deeper documents would reach
Python's recursion limit later (in a filter, a state write, a template) where the error
is far from its cause; here it is refused where it enters, with one line.

>>> loads_strict(b'{"a": [1, 2.5]}')
{'a': [1, 2.5]}
>>> loads_strict(b'[' * 200 + b']' * 200)
Traceback (most recent call last):
...
airflow_argo_events.core.limits.InputLimitError: JSON nested deeper than 128 levels
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import orjson

MAX_JSON_DEPTH = 128
"""Go's encoding/json allows 10,000; real payloads stay far below 128 (see docs/compatibility.md)."""


class InputLimitError(ValueError):
    """Input refused because it is malformed or exceeds a limit; the message is one line."""


def _reject_constant(name: str) -> Any:
    raise InputLimitError(f"{name} is not valid JSON")


def depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``value`` nests lists/dicts more than ``limit`` deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        if depth > limit:
            return True
        for child in children:
            if isinstance(child, (dict, list, tuple)):
                stack.append((child, depth + 1))
    return False


def loads_strict(data: bytes | bytearray | memoryview | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse standard JSON from an untrusted source; ``InputLimitError`` with one line otherwise."""
    return loads_strict_noting(data, max_depth=max_depth)[0]


def loads_strict_noting(data: bytes | bytearray | memoryview | str, *,
                        max_depth: int = MAX_JSON_DEPTH) -> tuple[Any, bool]:
    """:func:`loads_strict`, and whether orjson read the text itself (True: well-formed UTF-8
    JSON that any reader takes; False: only our lenient fallback did, e.g. lone surrogates,
    or invalid UTF-8 inside a string)."""
    standard = True
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        value = _fallback(data, err)
        standard = False
    # Every level opens with "[" or "{": a text with no more of them than the limit cannot
    # nest deeper (brackets inside strings only count extra), so most messages skip the walk.
    text = data.encode() if isinstance(data, str) else bytes(data) if not isinstance(data, bytes) else data
    if text.count(b"[") + text.count(b"{") > max_depth and depth_exceeds(value, max_depth):
        raise InputLimitError(f"JSON nested deeper than {max_depth} levels")
    return value, standard


def _fallback(data: bytes | bytearray | memoryview | str, err: orjson.JSONDecodeError) -> Any:
    # orjson refuses two things Go's encoding/json accepts: lone UTF-16 surrogates in
    # escapes and (as Python's json does) nothing else we care about. Those go through the
    # standard library, still strict about constants and depth.
    msg = str(err)
    if "depth limit" in msg:
        raise InputLimitError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    if "surrogate" not in msg:
        raise InputLimitError(f"invalid JSON: {msg}") from None
    text = data.decode("utf-8", "replace") if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise InputLimitError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as err2:
        raise InputLimitError(f"invalid JSON: {err2}") from None


def dumps_compact(value: Any) -> bytes:
    """Compact JSON bytes for state and the bus (keys kept in insertion order)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        # Values orjson does not know (e.g. Decimal from a YAML loader): the slow, general path.
        return json.dumps(value, separators=(",", ":"), default=str).encode()


class RecentIds:
    """The last ``size`` ids seen, oldest forgotten first: memory stays bounded however long
    a process runs. ``first(id)`` is True the first time an id comes (within that memory).

    >>> seen = RecentIds(2)
    >>> [seen.first(i) for i in ("a", "a", "b", "c", "a")]
    [True, False, True, True, True]
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first(self, item: str) -> bool:
        if item in self._ids:
            return False
        self._ids[item] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True
