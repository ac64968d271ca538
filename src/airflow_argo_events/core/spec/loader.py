"""Load Argo manifests (several YAML documents per file) into typed models.

>>> [m.kind for m in load_text("kind: EventBus\\nmetadata: {name: default}\\nspec: {jetstream: {}}")]
['EventBus']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.spec.base import spec_error


def _kinds() -> dict[str, type[BaseModel]]:
    from airflow_argo_events.core.spec.eventbus import EventBus

    kinds: dict[str, type[BaseModel]] = {"EventBus": EventBus}
    try:
        from airflow_argo_events.core.spec.sensor import Sensor

        kinds["Sensor"] = Sensor
    except ImportError:  # pragma: no cover - during bootstrap only
        pass
    try:
        from airflow_argo_events.core.spec.eventsource import EventSource

        kinds["EventSource"] = EventSource
    except ImportError:  # pragma: no cover
        pass
    return kinds


def parse_manifest(doc: Any, source: str | None = None, expect: str | None = None) -> Any:
    """One manifest dict -> its model; SpecError with field paths otherwise."""
    if not isinstance(doc, dict):
        raise SpecError([("", f"a manifest must be a mapping, got {type(doc).__name__}")], source)
    kind = doc.get("kind")
    kinds = _kinds()
    if expect and kind is None:
        kind = expect
    if kind not in kinds:
        raise SpecError([("kind", f"unknown kind {kind!r}; expected one of {', '.join(sorted(kinds))}")], source)
    if expect and kind != expect:
        raise SpecError([("kind", f"expected {expect}, got {kind}")], source)
    try:
        return kinds[kind].model_validate(doc)
    except ValidationError as err:
        raise spec_error(err, source) from None


def load_text(text: str, source: str | None = None, expect: str | None = None) -> list[Any]:
    """Every manifest in a YAML text; errors of all documents are reported together."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError([("", f"invalid YAML: {where}{getattr(err, 'problem', err)}")], source) from None
    if not docs:
        raise SpecError([("", "no manifest in file")], source)
    out, errors = [], []
    for i, doc in enumerate(docs):
        label = source if len(docs) == 1 else f"{source or '<text>'}#{i}"
        try:
            out.append(parse_manifest(doc, label, expect))
        except SpecError as err:
            errors.extend((label, path, msg) for path, msg in err.errors)
    if errors:
        first = errors[0][0]
        raise SpecError([(p, m) if lbl == first else (f"{lbl}: {p}", m) for lbl, p, m in errors], first)
    return out


def load_file(path: str | Path, expect: str | None = None) -> list[Any]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise SpecError([("", f"cannot read: {err.strerror}")], str(path)) from None
    return load_text(text, str(path), expect)


def load_one(path: str | Path, expect: str) -> Any:
    """The single manifest of ``kind: expect`` in a file."""
    items = [m for m in load_file(path, None) if getattr(m, "kind", None) == expect]
    if len(items) != 1:
        raise SpecError([("kind", f"expected exactly one {expect} in the file, found {len(items)}")], str(path))
    return items[0]
