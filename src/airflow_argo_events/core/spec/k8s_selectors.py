"""Kubernetes label selectors as Argo's resource event source builds them from its ``filter.labels``.

Argo turns each ``{key, operation, value}`` into a ``labels.Requirement`` (the operation
defaults to ``=``; ``in``/``notin`` split the value on commas; ``exists``/``!`` take no
value) and sends the selector's string form to the API server, which filters the list and
the watch. The checks here are the ones ``labels.NewRequirement`` makes, so a selector
Argo would fail on at start is refused when the manifest loads, naming the field.

>>> label_selector([("app", "==", "my-workflow"), ("tier", "in", "web,api"), ("gone", "!", "")])
'app==my-workflow,!gone,tier in (api,web)'
"""

from __future__ import annotations

import re

LABEL_OPERATIONS = ("=", "==", "!=", "in", "notin", "exists", "!", "gt", "lt")
"""``selection.Operator`` values (``!`` is DoesNotExist)."""
FIELD_OPERATIONS = ("", "=", "==", "!=")
"""What Argo's ``filter.fields`` compares with (the value is a regular expression)."""

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_INT = re.compile(r"^[+-]?[0-9]+$")


def _check_key(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise ValueError(f"invalid label key {key!r}: the prefix must be a DNS subdomain (e.g. example.com/name)")
    if not name or len(name) > 63 or not _NAME.match(name):
        raise ValueError(f"invalid label key {key!r}: a name of at most 63 letters, digits, '-', '_' or '.', "
                         "starting and ending with a letter or digit")


def _check_value(value: str) -> None:
    if value and (len(value) > 63 or not _NAME.match(value)):
        raise ValueError(f"invalid label value {value!r}: at most 63 letters, digits, '-', '_' or '.', "
                         "starting and ending with a letter or digit")


def requirement(key: str, operation: str, value: str) -> str:
    """One requirement's string form (``labels.Requirement.String()``); ValueError when Kubernetes refuses it."""
    op = operation or "="
    if op not in LABEL_OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; use one of {', '.join(LABEL_OPERATIONS)}")
    _check_key(key)
    if op in ("exists", "!") and value == "":
        values: list[str] = []
    elif op in ("in", "notin"):
        values = value.split(",")
    else:
        values = [value]
    if op in ("in", "notin") and not values:
        raise ValueError(f"{op} needs at least one value")
    if op in ("=", "==", "!=") and len(values) != 1:
        raise ValueError(f"{op} needs exactly one value")
    if op in ("exists", "!") and values:
        raise ValueError(f"{op} takes no value (got {value!r})")
    if op in ("gt", "lt"):
        if not _INT.match(value):
            raise ValueError(f"{op} needs an integer value, got {value!r}")
    else:
        for v in values:
            _check_value(v)
    if op == "!":
        return f"!{key}"
    if op == "exists":
        return key
    text = ",".join(sorted(values))
    return {"in": f"{key} in ({text})", "notin": f"{key} notin ({text})", "gt": f"{key}>{text}",
            "lt": f"{key}<{text}"}.get(op, f"{key}{op}{text}")


def label_selector(selectors: list[tuple[str, str, str]]) -> str:
    """``labelSelector`` for ``(key, operation, value)`` triples: requirements sorted by key, comma-joined."""
    reqs = sorted(((key, requirement(key, op, value)) for key, op, value in selectors), key=lambda kv: kv[0])
    return ",".join(text for _, text in reqs)
