"""Trigger parameters (``pkg/sensors/triggers/params.go``): values from events into templates and payloads.

Resolution, when the dependency is in the firing (numbered as in Argo's ResolveParamValue):

1. no key and no template: ``value`` if set, else the whole event as JSON;
2. data (``dataTemplate``, then ``dataKey``) wins over context when both are set;
3. a template that errors or renders "" / "<no value>" falls back to the key, a missing
   key falls back to ``value``; with none of them it is an error.

When the dependency is not in the firing (``||`` conditions): ``value`` if set, else the
parameter is skipped. Any other parameter that cannot be resolved stops the trigger: the
engine turns the firing into a failed one (``Firing.error``) and the action is not run.

Values are strings; with ``useRawData`` a non-string value (number, bool, null, object,
array) is inserted as raw JSON.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from airflow_argo_events.core.events import Event, format_time
from airflow_argo_events.core.sensor.gotemplate import NO_VALUE, GoTemplate, TemplateError
from airflow_argo_events.core.sensor.paths import MISSING, compile_path, gjson_string, gjson_type, to_json_text
from airflow_argo_events.core.spec.sensor import TriggerParameter, TriggerParameterSource

log = logging.getLogger(__name__)

STRING = "String"
JSON = "JSON"


class ParameterError(ValueError):
    """A parameter could not be resolved (and has no default): Argo does not run the trigger."""


@dataclass(frozen=True, slots=True)
class Resolved:
    text: str
    kind: str  # gjson type name: String, Number, True, False, Null, JSON


def context_json(event: Event) -> dict[str, Any]:
    """The event context as Argo marshals it (metav1.Time: UTC, whole seconds)."""
    t = event.time.replace(microsecond=0)
    return {
        "id": event.id, "source": event.source, "specversion": event.specversion, "type": event.type,
        "datacontenttype": event.datacontenttype, "subject": event.subject, "time": format_time(t),
    }


def _event_json(event: Event) -> str:
    data = event.data
    raw = data if isinstance(data, bytes) else to_json_text(data).encode()
    return to_json_text({"context": context_json(event), "data": base64.b64encode(raw).decode()})


@dataclass
class CompiledSource:
    src: TriggerParameterSource
    data_template: GoTemplate | TemplateError | None
    context_template: GoTemplate | TemplateError | None
    simple_key: Any = None
    """The getter of ``dataKey`` when it is the only way in (no template)."""

    @classmethod
    def compile(cls, src: TriggerParameterSource) -> CompiledSource:
        def tpl(text: str) -> GoTemplate | TemplateError | None:
            if not text:
                return None
            try:
                return GoTemplate(text)
            except TemplateError as err:
                return err

        simple = (compile_path(src.data_key) if src.data_key and not (src.data_template or src.context_template)
                  else None)
        return cls(src, tpl(src.data_template), tpl(src.context_template), simple)

    def resolve(self, events: dict[str, Event]) -> Resolved | None:
        src = self.src
        event = events.get(src.dependency_name)
        if event is not None and self.simple_key is not None and type(event.data) is dict:
            # The common case, a dataKey alone into a JSON object: step 3 below, directly.
            value = self.simple_key(event.data)
            if value is not MISSING:
                kind = gjson_type(value)
                if kind in (JSON, "Null"):
                    return Resolved(to_json_text(value), kind)
                return Resolved(gjson_string(value), kind)
        if event is None:
            return Resolved(src.value, STRING) if src.value is not None else None
        if not (src.context_key or src.data_key or src.data_template or src.context_template):
            return Resolved(src.value if src.value is not None else _event_json(event), STRING)
        failure = ""
        if src.data_key or src.data_template:
            key, template = src.data_key, self.data_template
            if isinstance(event.data, bytes):
                payload: Any = MISSING
                failure = f"the data of dependency {src.dependency_name!r} is not valid JSON"
            else:
                payload = event.data
        else:
            key, template = src.context_key, self.context_template
            payload = context_json(event)
        if payload is MISSING:
            if src.value is not None:
                return Resolved(src.value, STRING)
            raise ParameterError(f"{failure}, and the parameter has no value")
        if template is not None:
            if isinstance(template, TemplateError):
                failure = f"template on dependency {src.dependency_name!r}: {template}"
            else:
                try:
                    out = template.render({"Input": payload})
                    if out and out != NO_VALUE:
                        return Resolved(out, STRING)
                    failure = f"template on dependency {src.dependency_name!r} evaluated to empty string or no value"
                except TemplateError as err:
                    failure = f"template on dependency {src.dependency_name!r}: {err}"
        if key:
            value = compile_path(key)(payload)
            if value is not MISSING:
                kind = gjson_type(value)
                if kind in (JSON, "Null"):
                    return Resolved(to_json_text(value), kind)
                return Resolved(gjson_string(value), kind)
            failure = f"key {key!r} is not in the event of dependency {src.dependency_name!r}"
        if src.value is not None:
            return Resolved(src.value, STRING)
        raise ParameterError(f"{failure}, and the parameter has no value")


class CompiledParameter:
    def __init__(self, p: TriggerParameter, label: str = "parameter") -> None:
        self.spec = p
        self.label = label
        """Where the parameter is written, e.g. ``argoWorkflow.parameters[0]`` (for error lines)."""
        self.dest = p.dest
        self.operation = p.operation
        self.use_raw = bool(p.src and p.src.use_raw_data)
        self.source = CompiledSource.compile(p.src) if p.src else None

    def resolve(self, events: dict[str, Event]) -> Resolved | None:
        return self.source.resolve(events) if self.source else None


def compile_parameters(params: list[TriggerParameter] | None, label: str = "parameters") -> list[CompiledParameter]:
    return [CompiledParameter(p, f"{label}[{i}]") for i, p in enumerate(params or [])]


def _failed(p: CompiledParameter, err: ParameterError) -> ParameterError:
    """One line naming the parameter, its dest and what is missing (Argo: the trigger does not run)."""
    dest = f" (dest {p.dest!r})" if p.dest else ""
    return ParameterError(f"parameter {p.label}{dest}: {err}")


def _value_of(r: Resolved, use_raw: bool) -> Any:
    if use_raw and r.kind != STRING:
        return json.loads(r.text)
    return r.text


def apply_params(doc: Any, params: list[CompiledParameter], events: dict[str, Event], firing_id: str = "",
                 *, strict: bool = False) -> Any:
    """ApplyParams: set each resolved value at its dest in a copy of ``doc``.

    A parameter that cannot be resolved raises ParameterError when ``strict`` (the trigger
    is not run, as in Argo); otherwise it is logged and skipped.
    """
    doc = copy.deepcopy(doc)
    for p in params:
        r = _resolve(p, events, firing_id, strict, "parameter")
        if r is None:
            continue
        if p.operation in ("append", "prepend"):
            current = compile_path(p.dest)(doc) if p.dest else MISSING
            if current is not MISSING:
                cur = gjson_string(current)
                r = Resolved(cur + r.text if p.operation == "append" else r.text + cur, STRING)
        doc = _set(doc, p, _value_of(r, p.use_raw), firing_id, strict)
    return doc


def _skip(p: CompiledParameter, err: ParameterError, firing_id: str, strict: bool, what: str) -> None:
    """A parameter that cannot be resolved or set: raise when ``strict`` (Argo returns the
    error and does not run the trigger), else log it; the caller skips it."""
    if strict:
        raise _failed(p, err) from None
    log.error("firing %s: %s %s skipped: %s", firing_id or "-", what, p.dest, err)


def _resolve(p: CompiledParameter, events: dict[str, Event], firing_id: str, strict: bool,
             what: str) -> Resolved | None:
    """The parameter's value; None when it has none or could not be resolved (see :func:`_skip`)."""
    try:
        return p.resolve(events)
    except ParameterError as err:
        _skip(p, err, firing_id, strict, what)
        return None


def _set(doc: Any, p: CompiledParameter, value: Any, firing_id: str, strict: bool) -> Any:
    """``set_path`` for one parameter; sjson's errors fail the firing like an unresolvable parameter."""
    try:
        return set_path(doc, p.dest, value)
    except ParameterError as err:
        _skip(p, err, firing_id, strict, "parameter")
        return doc


def construct_payload(params: list[CompiledParameter], events: dict[str, Event], firing_id: str = "",
                      *, strict: bool = False) -> Any:
    """ConstructPayload: a fresh document from payload parameters (empty dest = whole payload)."""
    doc: Any = None
    for p in params:
        r = _resolve(p, events, firing_id, strict, "payload parameter")
        if r is None:
            continue
        if not p.dest:
            try:
                return json.loads(r.text)
            except ValueError:
                return r.text
        doc = _set(doc, p, _value_of(r, p.use_raw), firing_id, strict)
    return doc if doc is not None else {}


@lru_cache(maxsize=4096)
def _split_dest(path: str) -> tuple[tuple[str, bool], ...]:
    """sjson path segments: (key, forced_object_key). ``\\.`` escapes, ``:0`` forces a key.
    Remembered: a trigger's dests are few and set on every firing."""
    parts: list[tuple[str, bool]] = []
    cur: list[str] = []
    i = 0
    while i < len(path):
        c = path[i]
        if c == "\\" and i + 1 < len(path):
            cur.append(path[i + 1])
            i += 2
            continue
        if c == ".":
            parts.append(("".join(cur), False))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append(("".join(cur), False))
    return tuple((k[1:], True) if k.startswith(":") else (k, False) for k, _ in parts)


def _numeric(key: str, forced: bool) -> bool:
    """sjson's ``atoui``: digits only (the empty key too), never a forced ``:`` key."""
    return not forced and all("0" <= c <= "9" for c in key)


def _build(parts: tuple[tuple[str, bool], ...], value: Any) -> Any:
    """sjson's ``appendBuild``: the rest of a path that does not exist yet. A numeric key makes
    an array padded with nulls up to it, ``-1`` an array of one; any other key an object."""
    if not parts:
        return value
    key, forced = parts[0]
    if _numeric(key, forced):
        return [None] * int(key or 0) + [_build(parts[1:], value)]
    if key == "-1" and not forced:
        return [_build(parts[1:], value)]
    return {key: _build(parts[1:], value)}


def set_path(doc: Any, path: str, value: Any) -> Any:
    """sjson ``SetBytes`` (``appendRawPaths``) on a decoded document; returns the new document.

    Each key is looked up as gjson would (an object member; an array element when the key is
    a number, even a forced ``:0``). Found: the walk goes on into it, or the value replaces it.
    Not found: a scalar in the way becomes ``[]`` when the key is numeric, else ``{}``; an
    object gets the key appended; an array is padded with nulls up to a numeric key, appended
    to for ``-1``, and refuses any other key (ParameterError, as sjson's error).

    >>> set_path({"a": "x"}, "a.1", 5)
    {'a': [None, 5]}
    """
    if not path:
        raise ParameterError("path cannot be empty")
    parts = _split_dest(path)

    def put(node: Any, i: int) -> Any:
        key, forced = parts[i]
        if isinstance(node, dict):
            if key in node:
                node = dict(node)
                node[key] = put(node[key], i + 1) if i + 1 < len(parts) else value
                return node
            return {**node, key: _build(parts[i + 1:], value)}
        if isinstance(node, list) and key and _numeric(key, False) and int(key) < len(node):
            node = list(node)
            node[int(key)] = put(node[int(key)], i + 1) if i + 1 < len(parts) else value
            return node
        numeric = _numeric(key, forced)
        if isinstance(node, list):
            if numeric:
                return [*node, *[None] * (int(key or 0) - len(node)), _build(parts[i + 1:], value)]
            if key == "-1" and not forced:
                return [*node, _build(parts[i + 1:], value)]
            raise ParameterError(f"cannot set array element for non-numeric key '{key}'")
        return put([] if numeric else {}, i)

    return put(doc, 0)
