"""Shared pieces of the Argo manifest models: camelCase aliases, metadata, loading."""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from airflow_argo_events.core.exceptions import SpecError


def to_camel(name: str) -> str:
    """``use_raw_data`` -> ``useRawData``; unlike pydantic's, leaves ``k8s`` alone."""
    first, *rest = name.split("_")
    return first + "".join(p[:1].upper() + p[1:] for p in rest)


class ArgoModel(BaseModel):
    """A block users write: camelCase names as in Argo.

    Unknown fields are ignored, as Argo's CRDs and Go decoder do (Argo's own examples put
    ``atLeastOnce`` inside ``template``); :func:`unknown_fields` finds them so that the
    loader can warn with the field path, or refuse them in strict mode.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True,
    )

    def dump(self) -> dict[str, Any]:
        """The manifest form (camelCase, unset fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class OpenModel(ArgoModel):
    """A block we carry but do not interpret (Kubernetes pod settings and the like)."""

    model_config = ConfigDict(extra="allow")


class SecretKeySelector(ArgoModel):
    """A Kubernetes ``secretKeyRef``; resolved by ``core.secrets`` outside Kubernetes."""

    name: str = Field(description="Secret name.")
    key: str = Field(description="Key within the secret.")
    optional: bool | None = None


class ConfigMapKeySelector(SecretKeySelector):
    """A Kubernetes ``configMapKeyRef``."""


class ObjectMeta(OpenModel):
    name: str = Field(description="The object's name; EventSource names become CloudEvent sources.")
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


@dataclass
class FieldCheck:
    """What :func:`check_fields` found in a raw manifest: field paths Argo would ignore or re-case."""

    unknown: list[str] = dc_field(default_factory=list)
    """Paths of fields the model does not know (Argo's decoder drops them silently)."""
    recased: list[tuple[str, str]] = dc_field(default_factory=list)
    """(path as written, the field's name): keys that match a field only ignoring letter case."""

    def problems(self) -> list[tuple[str, str]]:
        """``(path, message)`` for each finding, worded for a warning or a strict-mode error."""
        out = [(p, "unknown field (Argo ignores it)") for p in self.unknown]
        out += [(p, f"read as {name!r}: Argo's decoder ignores letter case; write {name!r}")
                for p, name in self.recased]
        return out


def check_fields(cls: type[BaseModel], raw: Any) -> tuple[Any, FieldCheck]:
    """The raw document with keys re-cased as Go's ``encoding/json`` reads them, and the findings.

    Argo decodes manifests with Go's ``encoding/json``: a key that matches no field is
    dropped, and a key that matches a field's name ignoring letter case fills that field
    (``openwhisk`` is ``openWhisk``). The walk follows the model's declared fields, so it
    works whether or not the document validates. Blocks that keep unknown fields
    (``extra="allow"``) are not reported.
    """
    found = FieldCheck()
    return _model(cls, raw, "", found), found


def _model(cls: type[BaseModel], raw: Any, path: str, found: FieldCheck) -> Any:
    if not isinstance(raw, dict):
        return raw
    fields = _field_keys(cls)
    open_block = cls.model_config.get("extra") == "allow"
    out: dict[Any, Any] = {}
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        hint = fields.get(key) if isinstance(key, str) else None
        if hint is None and isinstance(key, str) and not open_block:
            canonical = _folded(cls).get(key.lower())
            if canonical is not None and canonical not in raw:
                found.recased.append((where, canonical))
                key, hint = canonical, fields[canonical]
        if hint is None:
            if not open_block:
                found.unknown.append(where)
            out[key] = value
            continue
        out[key] = _walk(hint, value, where, found)
    return out


def _walk(hint: Any, value: Any, where: str, found: FieldCheck) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        # Follow the member shaped like the value (a model for a mapping, a list for a list).
        for arg in typing.get_args(hint):
            if _shape_fits(arg, value):
                return _walk(arg, value, where, found)
        return value
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(hint) or (Any,)
        return [_walk(item, v, f"{where}[{i}]", found) for i, v in enumerate(value)]
    if origin is dict and isinstance(value, dict):
        args = typing.get_args(hint)
        item = args[1] if len(args) == 2 else Any
        return {k: _walk(item, v, f"{where}.{k}", found) for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return _model(hint, value, where, found)
    return value


def _shape_fits(hint: Any, value: Any) -> bool:
    origin = typing.get_origin(hint)
    if isinstance(value, dict):
        return origin is dict or (isinstance(hint, type) and issubclass(hint, BaseModel))
    if isinstance(value, list):
        return origin is list
    return False


@functools.cache
def _field_keys(cls: type[BaseModel]) -> dict[str, Any]:
    """Every key a model accepts (field name and alias) -> the field's resolved type."""
    hints = typing.get_type_hints(cls)
    keys: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        hint = hints.get(name, info.annotation)
        keys[name] = hint
        if info.alias:
            keys[info.alias] = hint
    return keys


@functools.cache
def _folded(cls: type[BaseModel]) -> dict[str, str]:
    """Lower-cased manifest name -> the manifest name (aliases win: they are what Argo spells)."""
    out: dict[str, str] = {}
    for name, info in cls.model_fields.items():
        out.setdefault((info.alias or name).lower(), info.alias or name)
    return out


def error_path(loc: tuple[Any, ...]) -> str:
    """``('spec', 'dependencies', 0, 'eventName')`` -> ``spec.dependencies[0].eventName``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and ("[" in part or part.startswith("function-")):
            continue  # pydantic's union/validator tags, not fields
        else:
            out += f".{part}" if out else str(part)
    return out


def spec_error(err: ValidationError, source: str | None = None, prefix: tuple[Any, ...] = ()) -> SpecError:
    """One ``path: message`` line per problem, no traceback."""
    errors = []
    for e in err.errors(include_url=False):
        if e["type"] == "argo_validation":
            base = error_path(prefix + tuple(e["loc"]))
            errors.extend((f"{base}.{p}" if base else p, m) for p, m in e["ctx"]["errors"])
            continue
        msg = e["msg"]
        msg = msg[0].lower() + msg[1:] if msg else msg
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif e["type"] == "missing":
            msg = "field required"
        elif msg.startswith("value error, "):
            msg = msg[len("value error, "):]
        errors.append((error_path(prefix + tuple(e["loc"])), msg))
    return SpecError(errors, source)
