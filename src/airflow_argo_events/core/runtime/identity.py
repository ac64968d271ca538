"""A sensor's state name: derived from its whole definition, so different sensors never share state.

The state name names the sensor's KV bucket and prefixes its durable consumers. It is

    <prefix>-<sanitized metadata.name, cut>-<sanitized stream, cut>-<16 hex of sha256(prefix, definition)>

where the canonical definition is the sorted-key JSON of ``metadata.name``, the whole
``spec`` (dependencies, filters, transforms, triggers, conditions, ...) as the model dumps
it without defaults, the stream, and any ``extra`` the caller adds (the DAG a
``SensorTrigger`` creates runs of). Hence:

1. Two sensors that differ anywhere in ``spec`` (or by name, stream or extra) get
   different buckets and consumers: neither takes the other's events.
2. The same definition keeps its name across re-serialisation (trigger kwargs, DAG
   re-parse, YAML vs dict) and restarts: nothing in it comes from time or randomness.
3. Writing a default explicitly (``atLeastOnce: false``) is not a change, and a provider
   release that adds a field with a default does not move every sensor to new state.

A changed definition is a new sensor: its state starts empty and the old bucket and
consumers stay until ``argo-events state delete`` removes them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from airflow_argo_events.core.exceptions import SpecError

HASH_CHARS = 16
NAME_CHARS = 24
PREFIX_CHARS = 20
STREAM_CHARS = 16
MAX_STATE_NAME = 80
"""Well under NATS's limits: a bucket is the stream ``KV_<name>`` (a directory on disk)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_VALID = re.compile(rf"^[A-Za-z0-9_-]{{1,{MAX_STATE_NAME}}}$")


def _sensor_dict(sensor_doc: Mapping[str, Any] | Any) -> dict[str, Any]:
    """The definition as data, defaults left out (see 3. above)."""
    from airflow_argo_events.core.spec.sensor import Sensor

    model = sensor_doc
    if not isinstance(model, Sensor):
        from airflow_argo_events.core.spec.loader import parse_manifest

        try:
            model = parse_manifest(dict(sensor_doc), None, "Sensor", notes=[])  # warned when loaded
        except SpecError:
            # Not a loadable Sensor (a hand-made document in a test, say): hash it as given.
            return json.loads(json.dumps(sensor_doc, default=str))
    doc: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_defaults=True, exclude_none=True)
    return doc


def canonical_definition(sensor_doc: Mapping[str, Any] | Any, stream: str,
                         extra: Mapping[str, Any] | None = None) -> bytes:
    """The bytes a state name is a hash of: name, spec, stream and extra as sorted-key JSON."""
    return _canonical(_sensor_dict(sensor_doc), stream, extra)


def _canonical(doc: dict[str, Any], stream: str, extra: Mapping[str, Any] | None) -> bytes:
    name = (doc.get("metadata") or {}).get("name", "")
    body: dict[str, Any] = {"name": name, "spec": doc.get("spec") or {}, "stream": stream}
    if extra:
        body["extra"] = dict(extra)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str).encode()


def definition_hash(sensor_doc: Mapping[str, Any] | Any, stream: str, extra: Mapping[str, Any] | None = None) -> str:
    """sha256 hex of the canonical definition (the ``definition`` field of a bucket's ``meta``)."""
    return hashlib.sha256(canonical_definition(sensor_doc, stream, extra)).hexdigest()


def sanitize(text: str, limit: int) -> str:
    """``[A-Za-z0-9_-]`` only, runs of anything else as one ``_``, cut to ``limit``."""
    return _UNSAFE.sub("_", text).strip("_-")[:limit].rstrip("_-")


def state_name(sensor_doc: Mapping[str, Any] | Any, stream: str, prefix: str,
               extra: Mapping[str, Any] | None = None) -> str:
    """The KV bucket and durable-consumer prefix for this sensor definition on ``stream``,
    e.g. ``sensor-orders-default-3f2a9c0d5e6b7a81``."""
    doc = _sensor_dict(sensor_doc)
    name = str((doc.get("metadata") or {}).get("name", ""))
    parts = [p for p in (sanitize(prefix, PREFIX_CHARS), sanitize(name, NAME_CHARS), sanitize(stream, STREAM_CHARS))
             if p]
    # The whole prefix goes into the hash too: cutting it for readability never makes two names meet.
    digest = hashlib.sha256(prefix.encode() + b"\x00" + _canonical(doc, stream, extra)).hexdigest()
    parts.append(digest[:HASH_CHARS])
    return "-".join(parts)


def is_valid_state_name(name: str) -> bool:
    """Usable as a KV bucket and durable name (and short enough for NATS)."""
    return bool(_VALID.match(name))


def check_state_name(name: str) -> str:
    """An explicit ``state_name=`` / ``--state-name``, checked; SpecError naming what to fix otherwise."""
    if not is_valid_state_name(name):
        raise SpecError([("state_name", f"{name!r} is not a valid state name: use 1-{MAX_STATE_NAME} characters "
                                        "of A-Z, a-z, 0-9, '_' and '-'")])
    return name
