"""Argo v1.9.11's admission checks (``pkg/reconciler/sensor/validate.go`` and each supported
EventSource type's ``validate.go``), with the field path in every message."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import yaml

from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.sensor.engine import Engine
from airflow_argo_events.core.spec.loader import Note, load_text
from airflow_argo_events.core.spec.sensor import parse_clock

D = {"name": "d", "eventSourceName": "es", "eventName": "e"}
WF = {"source": {"resource": {"kind": "Workflow"}}}
TOKEN = {"name": "slack", "key": "token"}


def sensor_yaml(deps=None, triggers=None) -> str:
    return yaml.safe_dump({"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": "s"},
                           "spec": {"dependencies": deps if deps is not None else [D],
                                    "triggers": triggers if triggers is not None else [
                                        {"template": {"name": "t", "log": {}}}]}})


def errors_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_text(text, "s.yaml")
    return str(info.value).splitlines()


def time_dep(start: str, stop: str) -> dict:
    return {**D, "filters": {"time": {"start": start, "stop": stop}}}


# ------------------------------------------------------------------ time filters


@pytest.mark.parametrize(
    "start, stop, expected",
    [
        ("25:99:00", "10:00:00", "time.start: must be HH:MM:SS: '25:99:00': hour out of range"),
        ("24:00:00", "10:00:00", "time.start: must be HH:MM:SS: '24:00:00': hour out of range"),
        ("10:60:00", "11:00:00", "time.start: must be HH:MM:SS: '10:60:00': minute out of range"),
        ("10:00:00", "11:00:60", "time.stop: must be HH:MM:SS: '11:00:60': second out of range"),
        ("10:00", "11:00:00", "time.start: must be HH:MM:SS: '10:00' is not HH:MM:SS"),
        ("10:0:00", "11:00:00", "is not HH:MM:SS"),  # Go wants two minute digits
        ("100:00:00", "11:00:00", "is not HH:MM:SS"),
        ("10:00:00 ", "11:00:00", "is not HH:MM:SS"),  # Go: extra text
        ("١٠:00:00", "11:00:00", "is not HH:MM:SS"),  # Go's digits are ASCII
        ("9:00:00", "09:00:00", "time: start '9:00:00' and stop '09:00:00' are the same time"),
    ],
)
def test_time_filters_are_parsed_as_go_parses_them(start, stop, expected):
    (line,) = errors_of(sensor_yaml([time_dep(start, stop)]))
    assert line.startswith("s.yaml: spec.dependencies[0].filters.")
    assert expected in line


@pytest.mark.parametrize("start, stop", [("9:00:00", "17:00:00"), ("23:00:00", "01:00:00"),
                                         ("10:00:00.5", "10:00:00"), ("00:00:00", "23:59:59,999")])
def test_time_filters_go_accepts(start, stop):
    load_text(sensor_yaml([time_dep(start, stop)]))


def test_parse_clock_keeps_the_fraction():
    assert parse_clock("9:05:07.25") == (9, 5, 7, 250_000)
    assert parse_clock("23:59:59.123456789") == (23, 59, 59, 123_456)


def test_a_fractional_window_filters_at_runtime():
    """What validation accepts the time filter can evaluate (it used to split on ':' and int())."""
    (s,) = load_text(sensor_yaml([time_dep("10:00:00.5", "10:00:02")]))
    eng = Engine(s)

    def at(second: float) -> list:
        t = datetime(2024, 1, 1, 10, 0, 0, tzinfo=timezone.utc).replace(microsecond=int(second * 1e6) % 1_000_000,
                                                                        second=int(second))
        return eng.process(new_event(source="es", subject="e", type="webhook", data={}, time=t))

    assert at(0.25) == []
    assert len(at(0.75)) == 1


# ------------------------------------------------------------------ the rest of validate.go


@pytest.mark.parametrize(
    "deps, triggers, expected",
    [
        ([{**D, "filters": {"data": [{"path": "a", "type": "string", "value": ["x", ""]}]}}], None,
         "spec.dependencies[0].filters.data[0]: value[1] must not be an empty string"),
        ([{**D, "filters": {"exprs": [{"expr": "a == 1", "fields": [{"name": "a", "path": ""}]}]}}], None,
         "spec.dependencies[0].filters.exprs[0]: fields[0]: path and name must not be empty"),
        (None, [{"template": {"name": "t", "http": {"url": "", "payload": []}}}],
         "spec.triggers[0].template.http.url: url must not be empty"),
        (None, [{"template": {"name": "t", "http": {"url": "http://x", "method": "post", "payload": []}}}],
         "spec.triggers[0].template.http.method: method must be one of GET, DELETE, PATCH, POST, PUT"),
        (None, [{"template": {"name": "t", "nats": {"url": "nats://x", "subject": "s"}}}],
         "spec.triggers[0].template.nats.payload: payload is required"),
        (None, [{"template": {"name": "t", "nats": {"url": "nats://x", "subject": "", "payload": []}}}],
         "spec.triggers[0].template.nats.subject: subject must not be empty"),
        (None, [{"template": {"name": "t", "kafka": {"url": "k:9092", "topic": "t"}}}],
         "spec.triggers[0].template.kafka.payload: payload is required"),
        (None, [{"template": {"name": "t", "kafka": {"url": "", "topic": "t", "payload": []}}}],
         "spec.triggers[0].template.kafka.url: url must not be empty"),
        (None, [{"template": {"name": "t", "slack": {"channel": "c", "message": "m"}}}],
         "spec.triggers[0].template.slack.slackToken: slackToken is required"),
        (None, [{"template": {"name": "t", "argoWorkflow": {"operation": "resume"}}}],
         "spec.triggers[0].template.argoWorkflow.source: source is required"),
        (None, [{"template": {"name": "t", "k8s": {**WF, "operation": "create"}}, "policy": {"k8s": {}}}],
         "spec.triggers[0].policy.k8s.labels: labels are required"),
        (None, [{"template": {"name": "t", "log": {}}, "dlqTrigger": {"atLeastOnce": True, "template": {
            "name": "dlq", "log": {}}}}], "spec.triggers[0].atLeastOnce: must be true to use dlqTrigger"),
        (None, [{"template": {"name": "t", "log": {}}, "atLeastOnce": True, "dlqTrigger": {"template": {
            "name": "dlq", "log": {}}}}], "spec.triggers[0].dlqTrigger.atLeastOnce: must be true within the dlqTrigger"),
        (None, [{"template": {"name": "t", "log": {}}, "atLeastOnce": True, "dlqTrigger": {"atLeastOnce": True,
                                                                                       "template": {"name": "dlq",
                                                                                                    "k8s": {}}}}],
         "spec.triggers[0].dlqTrigger.template.k8s.source: source is required"),
        (None, [{"template": {"name": "t", "awsLambda": {"region": "eu-west-1", "payload": []}}}],
         "spec.triggers[0].template.awsLambda.functionName: functionName is required"),
        (None, [{"template": {"name": "t", "openWhisk": {"actionName": "a", "host": "h"}}}],
         "spec.triggers[0].template.openWhisk.payload: payload is required"),
        (None, [{"template": {"name": "t", "custom": {"serverURL": "x:1", "spec": {"a": 1}, "secure": True}}}],
         "spec.triggers[0].template.custom.certSecret: certSecret is required when secure is true"),
        (None, [{"template": {"name": "t", "email": {"host": "smtp", "port": 70000}}}],
         "spec.triggers[0].template.email.port: must be between 0 and 65535, got 70000"),
    ],
)
def test_argo_admission_checks(deps, triggers, expected):
    assert f"s.yaml: {expected}" in [line[: len(f"s.yaml: {expected}")] for line in errors_of(sensor_yaml(deps, triggers))]


@pytest.mark.parametrize(
    "triggers",
    [
        [{"template": {"name": "t", "http": {"url": "http://x", "method": "PATCH", "payload": []}}}],
        [{"template": {"name": "t", "nats": {"url": "nats://x", "subject": "s", "payload": []}}}],
        [{"template": {"name": "t", "slack": {"slackToken": TOKEN}}}],
        [{"template": {"name": "t", "k8s": {**WF, "operation": "create"}}, "policy": {"k8s": {"labels": {}}}}],
        [{"template": {"name": "t", "log": {}}, "atLeastOnce": True,
          "dlqTrigger": {"atLeastOnce": True, "template": {"name": "dlq", "log": {}}}}],
    ],
    ids=["http-method", "nats", "slack", "k8s-policy", "dlq"],
)
def test_argo_accepts(triggers):
    load_text(sensor_yaml(None, triggers))


# ------------------------------------------------------------------ parameters naming no dependency


def test_a_parameter_naming_no_dependency_is_a_warning_not_an_error():
    notes: list[Note] = []
    load_text(sensor_yaml(None, [{"template": {"name": "t", "log": {}}, "parameters": [
        {"src": {"dependencyName": "zz", "value": "x"}, "dest": "log.intervalSeconds"}]}]), "s.yaml", notes=notes)
    (note,) = notes
    assert (note.level, note.path) == ("warning", "spec.triggers[0].parameters[0].src.dependencyName")
    assert note.message.startswith("names no dependency ('zz'; known: d)")


def test_template_parameters_rewritten_by_trigger_parameters_apply_in_order():
    """Argo's THIS_WILL_BE_REPLACED tutorial: the trigger-level parameters set the template
    parameter's dependencyName, dataKey and dest; then that parameter resolves."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "manifests" / "argo_gaps" /
            "template-parameters-replaced.yaml").read_text()
    notes: list[Note] = []
    (s,) = load_text(text, notes=notes)
    assert notes == []
    (f,) = Engine(s).process(new_event(source="webhook", subject="example", type="webhook", data={"body": {
        "dependencyName": "test-dep", "dataKey": "body.message", "dest": "spec.arguments.parameters.0.value",
        "message": "from the event"}}))
    assert f.error == ""
    assert f.resolved["spec"]["arguments"]["parameters"] == [{"name": "message", "value": "from the event"}]


# ------------------------------------------------------------------ EventSources


def es_yaml(spec: dict) -> str:
    return yaml.safe_dump({"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource", "metadata": {"name": "es"},
                           "spec": spec})


HDFS = {"directory": "/tmp", "type": "CREATE", "path": "x", "addresses": ["nn:9870"], "hdfsUser": "root"}
SECRET = {"name": "s", "key": "k"}


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"file": {"ex": {"eventType": "CREATE", "watchPathConfig": {"directory": "rel", "path": "x"}}}},
         "spec.file.ex.watchPathConfig.directory: must be an absolute path, got 'rel'"),
        ({"file": {"ex": {"eventType": "CREATE", "watchPathConfig": {"directory": "/d", "path": "x",
                                                                     "pathRegexp": "y"}}}},
         "spec.file.ex.watchPathConfig: path and pathRegexp cannot be set together"),
        ({"file": {"ex": {"eventType": "CREATE", "watchPathConfig": {"directory": "/d", "path": "/abs"}}}},
         "spec.file.ex.watchPathConfig.path: must be relative to directory"),
        ({"hdfs": {"ex": {**HDFS, "hdfsUser": ""}}},
         "spec.hdfs.ex: one of hdfsUser, krbCCacheSecret or krbKeytabSecret is required"),
        ({"hdfs": {"ex": {**HDFS, "krbKeytabSecret": SECRET, "krbServicePrincipalName": "hdfs/nn",
                          "krbUsername": "u", "krbRealm": "R"}}},
         "spec.hdfs.ex.krbConfigConfigMap: is required with krbKeytabSecret"),
        ({"hdfs": {"ex": {**HDFS, "krbCCacheSecret": SECRET, "krbConfigConfigMap": SECRET}}},
         "spec.hdfs.ex.krbServicePrincipalName: is required with krbCCacheSecret"),
        ({"nats": {"ex": {"url": "nats://x", "subject": ""}}}, "spec.nats.ex.subject: must not be empty"),
        ({"nats": {"ex": {"url": "nats://x", "subject": "s", "queue": ""}}},
         "spec.nats.ex.queue: must not be empty when set"),
        ({"nats": {"ex": {"url": "nats://x", "subject": "s", "tls": {}}}},
         "spec.nats.ex.tls: set caCertSecret, or clientCertSecret and clientKeySecret, or enabled: true"),
        ({"nats": {"ex": {"url": "nats://x", "subject": "s", "tls": {"clientCertSecret": SECRET}}}},
         "spec.nats.ex.tls: clientCertSecret and clientKeySecret go together"),
        ({"amqp": {"ex": {"url": "amqp://x", "urlSecret": SECRET, "exchangeName": "e", "exchangeType": "fanout",
                          "routingKey": "r"}}}, "spec.amqp.ex.urlSecret: only one of url or urlSecret may be set"),
        ({"amqp": {"ex": {"url": "amqp://x", "exchangeName": "e", "exchangeType": "fanout", "routingKey": ""}}},
         "spec.amqp.ex.routingKey: must not be empty"),
        ({"amqp": {"ex": {"url": "amqp://x", "exchangeName": "e", "exchangeType": "fanout", "routingKey": "r",
                          "auth": {"username": SECRET}}}}, "spec.amqp.ex.auth.password: is required"),
        ({"mqtt": {"ex": {"url": "tcp://x:1883", "topic": "t"}}}, "spec.mqtt.ex.clientId: must not be empty"),
        ({"redis": {"ex": {"hostAddress": "r:6379", "channels": ["c"], "password": SECRET}}},
         "spec.redis.ex.namespace: is required with password"),
        ({"redisStream": {"ex": {"hostAddress": "", "streams": ["s"]}}},
         "spec.redisStream.ex.hostAddress: must not be empty"),
    ],
)
def test_eventsource_admission_checks(spec, expected):
    assert f"s.yaml: {expected}" in [line[: len(f"s.yaml: {expected}")] for line in errors_of(es_yaml(spec))]


@pytest.mark.parametrize(
    "spec",
    [
        {"hdfs": {"ex": HDFS}},
        {"nats": {"ex": {"url": "nats://x", "subject": "s", "tls": {"enabled": True}}}},
        {"nats": {"ex": {"url": "nats://x", "subject": "s", "tls": {"insecureSkipVerify": True}}}},
        {"mqtt": {"ex": {"url": "tcp://x:1883", "topic": "t", "clientId": "c"}}},
    ],
    ids=["hdfs-user", "tls-enabled", "tls-insecure", "mqtt"],
)
def test_eventsource_argo_accepts(spec):
    load_text(es_yaml(spec))


def test_eventsource_warnings():
    notes: list[Note] = []
    load_text(es_yaml({"hdfs": {"ex": {**HDFS, "addresses": ["nn-0:8020", "nn-1:9870"]}},
                       "webhook": {"hook": {"endpoint": "/x", "method": "POST", "port": "12000"}}}), "es.yaml",
              notes=notes)
    assert [(n.path, n.message.split(":")[0]) for n in notes] == [
        ("spec", "Argo refuses webhook and hdfs in one EventSource (their Deployments update differently); it "
                 "runs here, split it to deploy on Argo"),
        ("spec.hdfs.ex.addresses[0]", "port 8020 is the namenode's Hadoop RPC port, which this provider does not "
                                      "speak"),
    ]
