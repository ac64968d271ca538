"""The Airflow adapters: serialization round trips, watcher identity, parse-time errors, queue scheme."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

import pytest

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.triggers import EventSourceTrigger, SensorTrigger

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
DEP = {"name": "order", "eventSourceName": "shop", "eventName": "order",
       "filters": {"data": [{"path": "id", "type": "number", "value": ["1"]}]}}


def triggers():
    return [
        SensorTrigger(dependencies=[DEP], conditions="order", nats_conn_id="nats_default"),
        SensorTrigger(sensor=str(EXAMPLES / "sensors" / "trigger-conditions.yaml"), trigger="trigger02"),
        SensorTrigger(sensor=str(EXAMPLES / "sensors" / "trigger-conditions.yaml"), trigger="trigger03",
                      dag_id="consumer", airflow_conn_id="airflow_api", deliver="all"),
        EventSourceTrigger(eventsource=str(EXAMPLES / "event-sources" / "webhook.yaml"), event_name="example"),
    ]


@pytest.mark.parametrize("trigger", triggers(), ids=lambda t: type(t).__name__)
def test_serialize_round_trip_through_airflows_serializer(trigger):
    from airflow.serialization.serialized_objects import BaseSerialization

    classpath, kwargs = trigger.serialize()
    assert classpath == f"{type(trigger).__module__}.{type(trigger).__qualname__}"
    encoded = BaseSerialization.serialize(kwargs)
    decoded = BaseSerialization.deserialize(encoded)
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(import_module(module), name)(**decoded)
    assert rebuilt.serialize() == (classpath, kwargs)


@pytest.mark.parametrize("trigger", triggers(), ids=lambda t: type(t).__name__)
def test_identity_is_deterministic(trigger):
    from airflow.triggers.base import BaseEventTrigger

    a = BaseEventTrigger.hash(*trigger.serialize())
    b = BaseEventTrigger.hash(*type(trigger)(**trigger.serialize()[1]).serialize())
    assert a == b


def test_triggers_are_accepted_by_asset_watcher():
    from airflow.sdk import Asset, AssetWatcher

    for t in triggers():
        Asset("argo-events://x", watchers=[AssetWatcher(name="w", trigger=t)])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dependencies": [{"name": "a", "eventSourceName": "s"}]}, "spec.dependencies[0].eventName: field required"),
        ({"dependencies": [DEP], "conditions": "order && nope"}, "unknown dependency 'nope'"),
        ({"dependencies": [{**DEP, "filters": {"data": [{"path": "x", "type": "date", "value": ["1"]}]}}]},
         "filters.data[0].type"),
        ({}, "give a sensor manifest or at least one dependency"),
        ({"sensor": str(EXAMPLES / "sensors" / "trigger-conditions.yaml"), "trigger": "nope"}, "no trigger 'nope'"),
        ({"dependencies": [DEP], "dag_id": "x"}, "airflow_conn_id: required with dag_id"),
    ],
)
def test_bad_arguments_fail_at_parse_time_with_field_paths(kwargs, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        SensorTrigger(**kwargs)


def test_eventsource_trigger_rejects_unknown_event():
    with pytest.raises(SpecError, match="has no event 'nope'"):
        EventSourceTrigger(eventsource=str(EXAMPLES / "event-sources" / "webhook.yaml"), event_name="nope")


def test_event_sensor_validates_at_parse_time():
    from airflow_argo_events.sensors import EventSensor

    with pytest.raises(SpecError, match="eventName"):
        EventSensor(task_id="w", dependencies=[{"name": "a", "eventSourceName": "s"}])
    s = EventSensor(task_id="w", dependencies=[DEP], conditions="order", timeout=60)
    assert s.sensor_doc["spec"]["dependencies"][0]["eventSourceName"] == "shop"


def test_message_queue_trigger_with_nats_scheme(monkeypatch):
    from airflow.providers.common.messaging.triggers import msg_queue

    from airflow_argo_events.queues.nats import NatsMessageQueueProvider

    monkeypatch.setattr(msg_queue, "MESSAGE_QUEUE_PROVIDERS", [NatsMessageQueueProvider()])
    mqt = msg_queue.MessageQueueTrigger(scheme="nats", dependencies=[DEP], nats_conn_id="nats_default")
    classpath, kwargs = mqt.serialize()
    assert classpath == "airflow_argo_events.triggers.sensor.SensorTrigger"
    assert kwargs["sensor"]["spec"]["dependencies"][0]["name"] == "order"
    provider = NatsMessageQueueProvider()
    assert provider.queue_matches("nats://shop/order") and not provider.queue_matches("kafka://x")
    assert provider.trigger_kwargs("nats://shop/order")["dependencies"][0]["eventName"] == "order"
    with pytest.raises(ValueError, match="expected nats://"):
        provider.trigger_kwargs("nats://shop")


def test_queue_provider_is_registered_with_airflow(tmp_path):
    import json
    import os
    import subprocess
    import sys

    code = ("from airflow.providers_manager import ProvidersManager\n"
            "pm = ProvidersManager(); pm.initialize_providers_queues()\n"
            "import json; print(json.dumps(sorted(pm.queue_class_names)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "AIRFLOW_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "airflow_argo_events.queues.nats.NatsMessageQueueProvider" in json.loads(out.stdout.splitlines()[-1])


def test_manifest_dags_and_import_errors(tmp_path):
    from airflow_argo_events.manifests import load_dags

    dags = load_dags(EXAMPLES)
    assert "argo_events__trigger-conditions__trigger03" in dags
    watch = dags["argo_events__trigger-conditions__trigger03__watch"]
    assert type(watch.timetable).__name__ == "AssetTriggeredTimetable"
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Sensor\nmetadata: {name: s}\nspec:\n  dependencies: [{name: a, eventSourceName: e, "
                   "eventName: e}]\n  triggers: [{template: {name: t, conditions: 'a && b', log: {}}}]\n")
    with pytest.raises(SpecError, match=r"bad.yaml: spec.triggers\[0\].template.conditions: unknown dependency"):
        load_dags(tmp_path)
