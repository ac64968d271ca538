from __future__ import annotations

import pytest

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.spec.loader import load_text

NATIVE = """
apiVersion: argoproj.io/v1alpha1
kind: EventBus
metadata:
  name: default
spec:
  jetstream:
    version: latest
    replicas: 3
    persistence:
      accessMode: ReadWriteOnce
      volumeSize: 10Gi
    streamConfig: |
      maxMsgs: 10000
      maxAge: 72h
      duplicates: 600s
"""

EXOTIC = """
apiVersion: argoproj.io/v1alpha1
kind: EventBus
metadata: {name: default}
spec:
  jetstreamExotic:
    url: nats://nats.example:4222
    accessSecret: {name: nats-creds, key: token}
    streamConfig: ""
"""


def test_native_jetstream_bus_gives_stream_settings():
    (bus,) = load_text(NATIVE)
    s = bus.stream_settings()
    assert (s.name, s.max_msgs, s.max_age_seconds, s.duplicate_window_seconds, s.replicas) == (
        "default", 10000, 72 * 3600, 600, 3)
    assert bus.nats_settings() is None


def test_exotic_bus_gives_servers():
    (bus,) = load_text(EXOTIC)
    assert bus.nats_settings().servers == ("nats://nats.example:4222",)
    assert bus.stream_settings().max_msgs == 50_000


@pytest.mark.parametrize(
    "text, path",
    [
        ("kind: EventBus\nmetadata: {name: x}\nspec: {jetstreamExotic: {}}", "spec.jetstreamExotic.url: field required"),
        ("kind: EventBus\nmetadata: {name: x}\nspec: {}", "spec: exactly one of"),
        ("kind: EventBus\nspec: {jetstream: {}}", "metadata: field required"),
        ("kind: Nope\nmetadata: {name: x}", "kind: unknown kind 'Nope'"),
        ("kind: [unclosed", "invalid YAML: line 1"),
    ],
)
def test_errors_name_the_field(text, path):
    with pytest.raises(SpecError) as info:
        load_text(text, "bus.yaml")
    assert str(info.value).startswith("bus.yaml: " + path), str(info.value)


def test_unknown_fields_warn_and_strict_refuses():
    text = "kind: EventBus\nmetadata: {name: x}\nspec: {jetstreamExotic: {url: u, bogus: 1}}"
    notes = []
    (bus,) = load_text(text, "bus.yaml", notes=notes)
    assert [n.line() for n in notes] == ["bus.yaml: warning: spec.jetstreamExotic.bogus: unknown field (Argo ignores it)"]
    with pytest.raises(SpecError, match=r"^bus.yaml: spec.jetstreamExotic.bogus: unknown field"):
        load_text(text, "bus.yaml", strict=True)
