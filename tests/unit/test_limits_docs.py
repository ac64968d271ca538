"""docs/reference/limits.md names every limit constant, and each constant holds the documented value."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "reference" / "limits.md"
ROWS = re.findall(r"^\|[^|]+\| ([^|]+) \| `(core\.[\w.]+)` \|", DOC.read_text(), re.M)

MIB = 1 << 20


def _number(text: str) -> float | None:
    m = re.match(r"(?:worst case )?([\d,.]+)(\^\d+)?\s*(MiB|GiB|s\b)?", text.strip())
    if not m:
        return None
    value = float(m.group(1).replace(",", ""))
    if m.group(2):
        value **= int(m.group(2)[1:])
    return value * {"MiB": MIB, "GiB": 1 << 30}.get(m.group(3) or "", 1)


def test_every_limit_is_documented():
    names = {path.rsplit(".", 1)[1] for _, path in ROWS}
    assert {"MAX_MANIFEST_BYTES", "MAX_MANIFEST_DEPTH", "MAX_MANIFEST_NODES", "MAX_EXPR_DEPTH", "MAX_REGEX_LENGTH",
            "DEFAULT_MAX_INSTRUCTIONS", "LUA_PATTERN_BUDGET", "MAX_TEMPLATE_OUTPUT", "MAX_TEMPLATE_STEPS",
            "MAX_TEMPLATE_NESTING", "JQ_TIMEOUT_SECONDS", "WORKER_MEMORY_BYTES"} <= names


@pytest.mark.parametrize("value, path", ROWS, ids=[p for _, p in ROWS])
def test_documented_value_matches_the_code(value, path):
    module, name = path.rsplit(".", 1)
    actual = getattr(importlib.import_module(f"airflow_argo_events.{module}"), name)
    expected = _number(value)
    if expected is not None:
        assert actual == expected, f"{path} is {actual}, docs say {value}"
