"""Fields that go beyond Argo Events, and how ``validate`` finds them in a manifest.

An extension field is marked where it is declared, ``Field(..., json_schema_extra=extension("name"))``;
:func:`extensions_used` walks a loaded manifest and names every marked field it sets. A
manifest that uses none is plain Argo and behaves as in Argo; ``validate --argo-only``
refuses the others, for users who want to stay portable.

>>> from airflow_argo_events.core.spec.loader import load_text
>>> (s,) = load_text('''
... kind: Sensor
... metadata: {name: s}
... spec:
...   dependencies: [{name: a, eventSourceName: es, eventName: a}, {name: b, eventSourceName: es, eventName: b}]
...   triggers:
...     - template: {name: t, conditions: a && b, log: {}, correlation: {keys: {a: id, b: id}}}
... ''')
>>> extensions_used(s)
[('spec.triggers[0].template.correlation.keys', 'correlation keys')]
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

MARK = "x-argo-events-extension"


def extension(name: str) -> dict[str, Any]:
    """The ``json_schema_extra`` marking a field as an extension called ``name``."""
    return {MARK: name}


def extension_name(model: type[BaseModel], field: str) -> str | None:
    """The extension a model's field is, or None for a field Argo has too."""
    extra = model.model_fields[field].json_schema_extra
    return extra.get(MARK) if isinstance(extra, dict) else None  # type: ignore[return-value]


def extensions_used(manifest: BaseModel) -> list[tuple[str, str]]:
    """``(field path, extension name)`` for every extension field the manifest sets, in document order."""
    out: list[tuple[str, str]] = []
    _walk(manifest, "", out)
    return out


def _walk(value: Any, path: str, out: list[tuple[str, str]]) -> None:
    if isinstance(value, BaseModel):
        cls = type(value)
        for name in cls.model_fields:
            if name not in value.model_fields_set:
                continue
            child = getattr(value, name)
            if child is None:
                continue
            alias = cls.model_fields[name].alias or name
            where = f"{path}.{alias}" if path else alias
            ext = extension_name(cls, name)
            if ext is not None:
                out.append((where, ext))
            _walk(child, where, out)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _walk(item, f"{path}[{i}]", out)
    elif isinstance(value, dict):
        for k, item in value.items():
            if isinstance(item, (BaseModel, list, dict)):
                _walk(item, f"{path}.{k}", out)
