"""Every field that goes beyond Argo Events is marked, so ``validate`` names it and ``--argo-only`` refuses it."""

from __future__ import annotations

import inspect

import pytest
from pydantic import BaseModel

from airflow_argo_events.core.spec import eventbus, eventsource, sensor
from airflow_argo_events.core.spec.extensions import extension_name, extensions_used
from airflow_argo_events.core.spec.loader import load_text


def _fields():
    for module in (sensor, eventsource, eventbus):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseModel) and cls.__module__ == module.__name__:
                for name, f in cls.model_fields.items():
                    yield cls, name, f


DESCRIBED = [(cls, name) for cls, name, f in _fields() if "xtension" in (f.description or "")
             and (cls.__name__, name) != ("TriggerTemplate", "correlation")]  # the block: its fields are marked


@pytest.mark.parametrize("cls, name", DESCRIBED, ids=[f"{c.__name__}.{n}" for c, n in DESCRIBED])
def test_a_field_described_as_an_extension_is_marked(cls, name):
    assert extension_name(cls, name), f"{cls.__name__}.{name}: mark it with json_schema_extra=extension(...)"


def test_the_walker_finds_extensions_in_event_sources_and_dlq_triggers():
    (es,) = load_text("""
kind: EventSource
metadata: {name: hooks}
spec:
  webhook:
    push: {port: "12000", endpoint: /push, method: POST, signature: {kind: github, secret: {name: s, key: k}}}
""")
    assert extensions_used(es) == [("spec.webhook.push.signature", "webhook signature")]
    (s,) = load_text("""
kind: Sensor
metadata: {name: s}
spec:
  dependencies: [{name: a, eventSourceName: es, eventName: a}]
  triggers:
    - template: {name: t, log: {}}
      atLeastOnce: true
      dlqTrigger: {atLeastOnce: true, template: {name: d, airflow: {dagId: x, url: "http://a"}}}
""")
    assert extensions_used(s) == [("spec.triggers[0].dlqTrigger.template.airflow", "airflow trigger")]
