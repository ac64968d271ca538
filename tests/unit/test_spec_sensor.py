"""Sensor/EventSource manifests: Argo's admission checks with field paths, and the examples as fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.spec.loader import load_file, load_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def sensor_yaml(deps=None, triggers=None):
    deps = deps if deps is not None else [{"name": "d", "eventSourceName": "es", "eventName": "e"}]
    triggers = triggers if triggers is not None else [{"template": {"name": "t", "log": {}}}]
    return yaml.safe_dump({"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": "s"},
                           "spec": {"dependencies": deps, "triggers": triggers}})


def errors_of(text):
    with pytest.raises(SpecError) as info:
        load_text(text, "s.yaml")
    return str(info.value)


D = {"name": "d", "eventSourceName": "es", "eventName": "e"}
WF = {"source": {"resource": {"kind": "Workflow"}}}


@pytest.mark.parametrize(
    "deps, triggers, expected",
    [
        ([], None, "spec.dependencies: at least one dependency is required"),
        ([{"name": "d", "eventName": "e"}], None, "spec.dependencies[0].eventSourceName: field required"),
        ([{"name": "", "eventSourceName": "es", "eventName": "e"}], None, "spec.dependencies[0]: name must not be empty"),
        ([D, D], None, "spec.dependencies[1].name: duplicate dependency name 'd'"),
        ([{**D, "filtersLogicalOperator": "xor"}], None, "spec.dependencies[0].filtersLogicalOperator"),
        ([{**D, "filters": {"data": [{"path": "a", "type": "number", "value": ["1"], "comparator": "=="}]}}], None,
         "spec.dependencies[0].filters.data[0].comparator"),
        ([{**D, "filters": {"data": [{"path": "a", "type": "string"}]}}], None,
         "spec.dependencies[0].filters.data[0].value: field required"),
        ([{**D, "filters": {"data": [{"path": "a", "type": "date", "value": ["x"]}]}}], None,
         "spec.dependencies[0].filters.data[0].type"),
        ([{**D, "filters": {"exprs": [{"expr": "a == 1", "fields": []}]}}], None, "fields must not be empty"),
        ([{**D, "filters": {"context": {}}}], None, "spec.dependencies[0].filters.context: context filter must set"),
        ([{**D, "filters": {"time": {"start": "10:00:00", "stop": "10:00:00"}}}], None, "are the same time"),
        ([{**D, "filters": {"time": {"start": "10:00", "stop": "11:00:00"}}}], None,
         "spec.dependencies[0].filters.time.start: must be HH:MM:SS"),
        (None, [], "spec.triggers: at least one trigger is required"),
        (None, [{"template": {"name": "t", "log": {}}}, {"template": {"name": "t", "log": {}}}],
         "spec.triggers[1].template.name: duplicate trigger name 't'"),
        (None, [{"template": {"name": "t", "conditions": "d && nope", "log": {}}}],
         "spec.triggers[0].template.conditions: unknown dependency 'nope'"),
        (None, [{"template": {"name": "t", "conditions": "d &&", "log": {}}}],
         "spec.triggers[0].template.conditions: invalid expression"),
        (None, [{"template": {"name": "t", "log": {}, "conditionsReset": [{"byTime": {"cron": "bad"}}]}}],
         "spec.triggers[0].template.conditionsReset[0].byTime.cron: invalid cron"),
        (None, [{"template": {"name": "t", "log": {}, "conditionsReset": [{"byTime": {"cron": "0 * * * *",
                                                                                      "timezone": "Mars/Base"}}]}}],
         "byTime.timezone: unknown timezone 'Mars/Base'"),
        (None, [{"template": {"name": "t", "log": {}, "conditionsReset": [{}]}}], "byTime is required"),
        (None, [{"template": {"name": "t", "k8s": {"operation": "create"}}}], "spec.triggers[0].template.k8s.source"),
        (None, [{"template": {"name": "t", "k8s": {**WF, "operation": "explode"}}}], "unknown operation 'explode'"),
        (None, [{"template": {"name": "t", "argoWorkflow": WF}}],
         "spec.triggers[0].template.argoWorkflow.operation: operation must be one of"),
        (None, [{"template": {"name": "t", "argoWorkflow": {**WF, "operation": "launch"}}}], "got 'launch'"),
        (None, [{"template": {"name": "t"}}], "exactly one trigger type"),
        (None, [{"template": {"name": "t", "http": {"url": "u", "payload": [{"src": {"dependencyName": "d"}}]}}}],
         None),  # http payload may have an empty dest
        (None, [{"template": {"name": "t", "nats": {"url": "u", "subject": "s", "payload": [
            {"src": {"dependencyName": "d"}}]}}}], "nats.payload[0].dest: dest is required"),
        (None, [{"template": {"name": "t", "log": {}}, "parameters": [{"dest": "x"}]}],
         "spec.triggers[0].parameters[0].src: src is required"),
        (None, [{"template": {"name": "t", "log": {}}, "parameters": [
            {"src": {"dependencyName": "zz"}, "dest": "x"}]}], None),  # a warning (test_spec_argo_admission)
        (None, [{"template": {"name": "t", "log": {}}, "parameters": [
            {"src": {"dependencyName": "d"}, "dest": "x", "operation": "multiply"}]}], "parameters[0].operation"),
    ],
)
def test_validation_errors_name_the_field(deps, triggers, expected):
    text = sensor_yaml(deps, triggers)
    if expected is None:
        load_text(text)
        return
    assert expected in errors_of(text)


def test_all_problems_reported_at_once():
    text = sensor_yaml([D, D], [{"template": {"name": "t", "conditions": "x", "log": {}}},
                                {"template": {"name": "t", "log": {}}}])
    msg = errors_of(text)
    assert msg.count("\n") >= 2
    assert all(line.startswith("s.yaml: spec.") for line in msg.splitlines())


def test_trigger_types_we_do_not_run_still_load():
    (s,) = load_text(sensor_yaml(None, [{"template": {"name": "t", "awsLambda": {
        "functionName": "f", "region": "us-east-1", "payload": []}}}]))
    assert s.spec.triggers[0].template.kind == "awsLambda"


def test_dump_round_trips_with_argo_names():
    (s,) = load_file(EXAMPLES / "sensors" / "trigger-conditions.yaml")
    dumped = s.dump()
    assert "argoWorkflow" in dumped["spec"]["triggers"][2]["template"]
    assert dumped["spec"]["dependencies"][0]["eventSourceName"] == "webhook-a"
    assert type(s).model_validate(dumped) == s


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_examples_are_valid(path):
    assert load_file(path)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"webhook": {"ex": {"endpoint": "nope", "method": "POST", "port": "12000"}}}, "spec.webhook.ex.endpoint"),
        ({"webhook": {"ex": {"endpoint": "/x", "method": "POST", "port": "http"}}}, "spec.webhook.ex.port"),
        ({"calendar": {"ex": {}}}, "spec.calendar.ex: one of schedule or interval"),
        ({"calendar": {"ex": {"schedule": "61 * * * *"}}}, "spec.calendar.ex.schedule: invalid cron"),
        ({"calendar": {"ex": {"interval": "10 seconds"}}}, "spec.calendar.ex.interval: invalid duration"),
        ({"hdfs": {"ex": {"directory": "/tmp", "type": "CREATE", "path": "x", "addresses": []}}},
         "spec.hdfs.ex.addresses"),
        ({"hdfs": {"ex": {"directory": "/tmp", "type": "MAKE", "path": "x", "addresses": ["a:1"]}}},
         "spec.hdfs.ex.type: unknown operation MAKE"),
        ({"hdfs": {"ex": {"directory": "/tmp", "type": "CREATE", "addresses": ["a:1"]}}}, "one of path or pathRegexp"),
        ({"file": {"ex": {"eventType": "CREATE", "watchPathConfig": {"directory": "/d", "pathRegexp": "("}}}},
         "spec.file.ex.watchPathConfig.pathRegexp: invalid regexp"),
        ({"file": {"ex": {"eventType": "CREATE", "watchPathConfig": {"directory": "/d", "path": "x"}},
          }, "calendar": {"ex": {"interval": "1s"}}}, "duplicate event name 'ex'"),
        ({}, "spec: at least one event source"),
    ],
)
def test_eventsource_validation(spec, expected):
    text = yaml.safe_dump({"kind": "EventSource", "metadata": {"name": "es"}, "spec": spec})
    assert expected in errors_of(text)
