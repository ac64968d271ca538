"""Shared pieces of the Argo manifest models: camelCase aliases, metadata, loading."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from airflow_argo_events.core.exceptions import SpecError


def to_camel(name: str) -> str:
    """``use_raw_data`` -> ``useRawData``; unlike pydantic's, leaves ``k8s`` alone."""
    first, *rest = name.split("_")
    return first + "".join(p[:1].upper() + p[1:] for p in rest)


class ArgoModel(BaseModel):
    """A block users write: camelCase names as in Argo, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True,
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
