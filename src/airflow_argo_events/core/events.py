"""CloudEvents as Argo Events puts them on the bus, and their NATS wire form.

Argo's EventSources wrap each payload in a CloudEvent (``pkg/eventsources/eventing.go``):
``id`` is the hex of a random UUID, ``source`` the EventSource name, ``subject`` the event
name, ``type`` the source type, ``datacontenttype`` ``application/json``. The bus carries
it in structured JSON mode. We also read binary mode (CloudEvents NATS binding: ``ce-*``
headers, the body is the data) so events from other CloudEvents producers work.

>>> ev = new_event(source="shop", subject="order", type="webhook", data={"id": 1})
>>> decode(encode(ev)).data
{'id': 1}
"""

from __future__ import annotations

import base64
import json
import re
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from cloudevents.core.bindings.common import get_event_factory_for_version
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from airflow_argo_events.core.exceptions import EventDecodeError
from airflow_argo_events.core.limits import InputLimitError, loads_strict, loads_strict_noting

JSON_CONTENT_TYPE = "application/json"
_FORMAT = JSONFormat()
_CONTEXT_KEYS = ("id", "source", "specversion", "type", "datacontenttype", "subject", "time")


@dataclass(frozen=True, slots=True)
class Event:
    """One CloudEvent, decoded once and shared by every dependency that reads it.

    ``data`` is the parsed JSON payload (dict, list, str, number, bool or None); a payload
    that is not JSON stays ``bytes``.
    """

    id: str
    source: str
    subject: str
    type: str
    time: datetime
    data: Any = None
    datacontenttype: str = JSON_CONTENT_TYPE
    specversion: str = "1.0"
    extensions: Mapping[str, Any] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        """The event context as Argo's filters and ``contextKey`` parameters see it."""
        return {
            "id": self.id,
            "source": self.source,
            "specversion": self.specversion,
            "type": self.type,
            "datacontenttype": self.datacontenttype,
            "subject": self.subject,
            "time": self.time,
        }

    def with_data(self, data: Any) -> Event:
        """A copy carrying transformed data (Argo's transform replaces the whole data)."""
        return Event(
            self.id, self.source, self.subject, self.type, self.time, data,
            self.datacontenttype, self.specversion, self.extensions,
        )

    def to_json(self) -> dict[str, Any]:
        """Structured-mode JSON object (one line of a ``sensor test`` events file)."""
        out: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "subject": self.subject,
            "type": self.type,
            "time": format_time(self.time),
            "datacontenttype": self.datacontenttype,
        }
        out.update(self.extensions)
        if isinstance(self.data, bytes):
            out["data"] = self.data.decode("utf-8", "replace")
        else:
            out["data"] = self.data
        return out


def new_event_id() -> str:
    """Argo's id: the hex of a random UUID, 32 characters, no dashes."""
    return uuid.uuid4().hex


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as Go's CloudEvents SDK writes it."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def new_event(
    *,
    source: str,
    subject: str,
    type: str,
    data: Any = None,
    id: str | None = None,
    time: datetime | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> Event:
    """Build an event the way an Argo EventSource does."""
    return Event(
        id=id or new_event_id(),
        source=source,
        subject=subject,
        type=type,
        time=time or datetime.now(timezone.utc),
        data=data,
        extensions=dict(extensions or {}),
    )


def to_cloudevent(event: Event) -> CloudEvent:
    """The SDK's CloudEvent for an Event (validates the attributes)."""
    attrs: dict[str, Any] = {
        "specversion": event.specversion,
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "datacontenttype": event.datacontenttype,
        "time": event.time if event.time.tzinfo else event.time.replace(tzinfo=timezone.utc),
    }
    attrs.update(event.extensions)
    return CloudEvent(attrs, event.data)


def from_cloudevent(ce: Any) -> Event:
    """An Event from the SDK's CloudEvent; JSON data given as bytes or text is parsed once."""
    attrs = dict(ce.get_attributes())
    ctype = attrs.pop("datacontenttype", None) or JSON_CONTENT_TYPE
    data = _parse_data(ce.get_data(), ctype)
    t = attrs.pop("time", None) or datetime.now(timezone.utc)
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return Event(
        id=str(attrs.pop("id")),
        source=str(attrs.pop("source")),
        subject=str(attrs.pop("subject", "") or ""),
        type=str(attrs.pop("type")),
        time=t,
        data=data,
        datacontenttype=ctype,
        specversion=str(attrs.pop("specversion", "1.0")),
        extensions=attrs,
    )


def _parse_data(data: Any, ctype: str) -> Any:
    # Structured mode hands us parsed JSON (a str is a JSON string); binary mode hands bytes.
    if isinstance(data, bytes) and JSONFormat.JSON_CONTENT_TYPE_PATTERN.match(ctype):
        try:
            return loads_strict(data)
        except InputLimitError as err:
            if "nested deeper" in str(err):
                raise
            return data
    return data


def encode(event: Event) -> bytes:
    """Structured JSON mode, as Argo's JetStream bus carries events."""
    return _FORMAT.write(to_cloudevent(event))


def decode(payload: bytes, headers: Mapping[str, str] | None = None) -> Event:
    """Decode a bus message: structured JSON, or binary mode when ``ce-*`` headers are set.

    Raises EventDecodeError with a one-line reason; never anything else.
    """
    return decode_keeping(payload, headers)[0]


def decode_keeping(payload: bytes, headers: Mapping[str, str] | None = None) -> tuple[Event, bytes | None]:
    """:func:`decode`, and ``payload`` itself when it reads back as this very Event (a plain
    structured CloudEvent with its time; else None): the live path stores it as it came
    instead of serializing the event again."""
    try:
        if headers and _has_binary_headers(headers):
            return _decode_binary(payload, headers), None
        return _decode_structured(payload)
    except EventDecodeError:
        raise
    except (BaseCloudEventException, ValueError, KeyError, TypeError, AttributeError, OverflowError) as err:
        raise _not_a_cloudevent(payload, err) from err


def _not_a_cloudevent(payload: bytes, err: Exception) -> EventDecodeError:
    head = payload[:80].decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)[:80]
    return EventDecodeError(f"not a CloudEvent ({type(err).__name__}: {err}): {head!r}")


_PLAIN_KEYS = frozenset(("specversion", "id", "source", "type", "subject", "datacontenttype", "time", "data"))


def _decode_structured(payload: bytes) -> tuple[Event, bytes | None]:
    # Our strict reader in place of json.loads: bounded depth and no NaN, so a hostile
    # message fails here, once, and not in a later stage.
    attrs, standard = loads_strict_noting(payload)
    if not isinstance(attrs, dict):
        raise EventDecodeError(f"not a CloudEvent (a JSON {type(attrs).__name__}, not an object)")
    ev = _plain_event(attrs)
    if ev is not None:
        # Read again, the same bytes give the same Event, unless its time was "now"; and only
        # text orjson read itself is spliced into stored JSON (invalid UTF-8 in a string, which
        # our fallback reads, would make the journal entry unreadable to other tools).
        return ev, payload if standard and "time" in attrs and type(payload) is bytes else None
    return from_cloudevent(_read_structured(attrs)), None


def _plain_event(attrs: dict[str, Any]) -> Event | None:
    """The fast path for what Argo's EventSources publish (CloudEvents 1.0, JSON data, no
    extensions): the Event the SDK path would build, without building the SDK's object
    on the way (about 4x cheaper). None for anything else (extensions, base64 data,
    another specversion, an attribute the SDK would refuse): the SDK path decides, and
    words the error. tests/unit/test_events_fast_path.py checks both paths agree."""
    if not _PLAIN_KEYS.issuperset(attrs):
        return None
    get = attrs.get
    ev_id, source, kind = get("id"), get("source"), get("type")
    subject, ctype, spec = get("subject", _MISSING), get("datacontenttype", _MISSING), get("specversion", "1.0")
    if not (type(ev_id) is str and ev_id and type(source) is str and source and type(kind) is str and kind
            and spec == "1.0" and type(spec) is str):
        return None
    if subject is not _MISSING and not (type(subject) is str and subject):
        return None
    if ctype is not _MISSING and not (type(ctype) is str and ctype):
        return None
    when = get("time")
    if "time" in attrs:
        if type(when) is not str:
            return None
        t = _parse_time(when)
    else:
        t = datetime.now(timezone.utc)
    return Event(ev_id, source, subject if subject is not _MISSING else "", kind, t, get("data"),
                 ctype if ctype is not _MISSING else JSON_CONTENT_TYPE)


_MISSING: Any = object()


def _decode_with_sdk(payload: bytes) -> Event:
    """The SDK path alone (what :func:`decode` does for structured mode without the fast
    path): the reference the fast path is checked against."""
    try:
        attrs = loads_strict(payload)
        if not isinstance(attrs, dict):
            raise EventDecodeError(f"not a CloudEvent (a JSON {type(attrs).__name__}, not an object)")
        return from_cloudevent(_read_structured(attrs))
    except EventDecodeError:
        raise
    except (BaseCloudEventException, ValueError, KeyError, TypeError, AttributeError, OverflowError) as err:
        raise _not_a_cloudevent(payload, err) from err


def _read_structured(attrs: dict[str, Any]) -> Any:
    # The SDK's JSONFormat.read on an already parsed object.
    if "time" in attrs:
        attrs["time"] = _parse_time(str(attrs["time"]))
    data = attrs.pop("data", None)
    if data is None and attrs.get("data_base64") is not None:
        data = base64.b64decode(attrs.pop("data_base64"), validate=True)
    attrs.pop("data_base64", None)
    return get_event_factory_for_version(str(attrs.get("specversion", "1.0")))(attrs, data)


def _has_binary_headers(headers: Mapping[str, str]) -> bool:
    return "ce-id" in headers or any(len(k) == 5 and k.lower() == "ce-id" for k in headers)


def _decode_binary(payload: bytes, headers: Mapping[str, str]) -> Event:
    attrs: dict[str, Any] = {}
    ctype = None
    for key, value in headers.items():
        low = key.lower()
        if low.startswith("ce-"):
            attrs[low[3:]] = value
        elif low == "content-type":
            ctype = value
    for required in ("id", "source", "type"):
        if required not in attrs:
            raise EventDecodeError(f"binary-mode CloudEvent without ce-{required} header")
    if ctype:
        attrs["datacontenttype"] = ctype
    if "time" in attrs:
        attrs["time"] = _parse_time(attrs["time"])
    return from_cloudevent(CloudEvent(attrs, payload or None))


_FRACTION = re.compile(r"(T\d\d:\d\d:\d\d)\.(\d+)")
_ISO_ANY = sys.version_info >= (3, 11)


def _parse_time(value: str) -> datetime:
    # RFC 3339 as Go writes it (nanoseconds, "Z"). Python 3.11's fromisoformat reads it as it is
    # (fractions cut to microseconds, as below); 3.10's takes only 3 or 6 fraction digits and no
    # "Z", so normalise there first. (The normalising costs ~1.7 us per event, on the live path.)
    text = value if _ISO_ANY else _FRACTION.sub(lambda m: f"{m.group(1)}.{(m.group(2) + '000000')[:6]}",
                                                value.replace("Z", "+00:00"), 1)
    try:
        t = datetime.fromisoformat(text)
        t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
        t.astimezone(timezone.utc)  # 9999-12-31T23:59-14:00 is past what UTC can hold
    except (ValueError, OverflowError) as err:
        raise EventDecodeError(f"invalid CloudEvent time {value!r}") from err
    return t


def event_from_json(obj: Mapping[str, Any]) -> Event:
    """An Event from a structured-mode JSON object (one line of an events file)."""
    return decode(json.dumps(obj).encode())
