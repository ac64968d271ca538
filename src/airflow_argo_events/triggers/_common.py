"""Helpers shared by the triggers: manifest arguments as plain data, firing payloads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.sensor.engine import Firing
from airflow_argo_events.core.spec.loader import load_one, parse_manifest


def manifest_dict(value: str | dict[str, Any] | Any, kind: str) -> dict[str, Any]:
    """A manifest given as a path, a dict or a model -> its validated plain-dict form.

    Trigger kwargs must be plain, deterministic data (the triggerer rebuilds the trigger
    from them, and Airflow hashes them to identify watchers), so manifests are loaded at
    DAG parse time, validated there (errors name the field), and passed on as dicts.
    """
    if isinstance(value, (str, Path)):
        model = load_one(value, kind)
    elif isinstance(value, dict):
        model = parse_manifest(value, None, kind)
    elif getattr(value, "kind", None) == kind:
        model = value
    else:
        raise SpecError([("", f"expected a {kind} manifest path, dict or model, got {type(value).__name__}")])
    return model.dump()  # type: ignore[no-any-return]


def firing_payload(firing: Firing) -> dict[str, Any]:
    """A firing as the JSON a TriggerEvent carries (and a DAG run's conf / XCom)."""
    out = {
        "firing_id": firing.id,
        "sensor": firing.sensor,
        "trigger": firing.trigger,
        "events": {d: e.to_json() for d, e in firing.events.items()},
        "resolved": json.loads(json.dumps(firing.resolved, default=str)),
    }
    if firing.key is not None:  # correlation extension: the key the events share
        out["key"] = firing.key
    if firing.counted:
        out["counted"] = firing.counted
    return out


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]
