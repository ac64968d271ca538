"""New EventSource types (kafka, ...): bad configuration is one error line naming the field path."""

from __future__ import annotations

import pytest
import yaml

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.spec.loader import load_text


def load(spec: dict):
    (es,) = load_text(yaml.safe_dump({"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource",
                                      "metadata": {"name": "es"}, "spec": spec}))
    return es


KAFKA = {"url": "k:9092", "topic": "t", "consumerGroup": {"groupName": "g"}}
SECRET = {"name": "s", "key": "k"}


@pytest.mark.parametrize("block, error", [
    ({**KAFKA, "url": ""}, "spec.kafka.ev.url: must not be empty"),
    ({**KAFKA, "topic": ""}, "spec.kafka.ev.topic: must not be empty"),
    ({"url": "k:9092", "topic": "t"}, "spec.kafka.ev: consumerGroup or partition must be specified"),
    ({"url": "k:9092", "topic": "t", "partition": "first"}, "spec.kafka.ev.partition: must be a partition number"),
    ({**KAFKA, "consumerGroup": {"groupName": ""}}, "spec.kafka.ev.consumerGroup.groupName: must not be empty"),
    ({**KAFKA, "consumerGroup": {"groupName": "g", "rebalanceStrategy": "greedy"}},
     "spec.kafka.ev.consumerGroup.rebalanceStrategy: must be range, roundrobin or sticky"),
    ({**KAFKA, "limitEventsPerSecond": -1}, "spec.kafka.ev.limitEventsPerSecond: must not be negative"),
    ({**KAFKA, "sasl": {"mechanism": "MD5", "userSecret": SECRET, "passwordSecret": SECRET}},
     "spec.kafka.ev.sasl.mechanism: must be one of PLAIN"),
    ({**KAFKA, "sasl": {"userSecret": SECRET}}, "spec.kafka.ev.sasl.passwordSecret: is required"),
    ({**KAFKA, "tls": {"clientCertSecret": SECRET}}, "spec.kafka.ev.tls: clientCertSecret and clientKeySecret go"),
    ({**KAFKA, "awsMskIamAuth": {}}, "spec.kafka.ev.awsMskIamAuth.region: must be specified"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_kafka_config_errors_name_the_field(block, error):
    with pytest.raises(SpecError) as info:
        load({"kafka": {"ev": block}})
    assert error in str(info.value)
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)


def test_kafka_loads_argos_example_fields():
    es = load({"kafka": {"ev": {"url": "kafka.argo-events:9092", "topic": "topic-2", "jsonBody": True,
                                "partition": "1", "connectionBackoff": {"duration": "10s", "steps": 5,
                                                                        "factor": 2, "jitter": 0.2},
                                "limitEventsPerSecond": 1, "version": "2.5.0",
                                "sasl": {"mechanism": "PLAIN", "userSecret": SECRET, "passwordSecret": SECRET}}}})
    (cfg,) = es.events()
    assert cfg.supported and cfg.spec.partition == "1" and cfg.spec.sasl.get_mechanism() == "PLAIN"


def test_kafka_warns_about_what_it_cannot_apply():
    es = load({"kafka": {"ev": {**KAFKA, "config": "consumer:\n  fetch:\n    min: 1\n",
                                "schemaRegistry": {"url": "http://sr"}}}})
    assert [p for p, _ in es.warnings()] == ["spec.kafka.ev.config", "spec.kafka.ev.schemaRegistry"]


SQS = {"region": "us-east-1", "queue": "q"}


@pytest.mark.parametrize("block, error", [
    ({**SQS, "region": ""}, "spec.sqs.ev.region: must not be empty"),
    ({**SQS, "queue": ""}, "spec.sqs.ev.queue: must not be empty"),
    ({**SQS, "waitTimeSeconds": 30}, "spec.sqs.ev.waitTimeSeconds: must be 0 to 20"),
    ({**SQS, "accessKey": SECRET}, "spec.sqs.ev.secretKey: accessKey and secretKey go together"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_sqs_config_errors_name_the_field(block, error):
    with pytest.raises(SpecError) as info:
        load({"sqs": {"ev": block}})
    assert error in str(info.value) and "\n" not in str(info.value)


def test_sqs_loads_argos_example_fields():
    es = load({"sqs": {"ev": {"region": "us-east-1", "queue": "test", "waitTimeSeconds": 20, "jsonBody": True,
                              "roleARN": "arn:aws:iam::1:role/r", "queueAccountId": "1", "dlq": True,
                              "accessKey": SECRET, "secretKey": SECRET, "sessionToken": SECRET}}})
    (cfg,) = es.events()
    assert cfg.supported and cfg.spec.role_arn == "arn:aws:iam::1:role/r" and cfg.spec.dlq


SNS = {"topicArn": "arn:aws:sns:us-east-1:1:t", "region": "us-east-1",
       "webhook": {"port": "12000", "endpoint": "/sns", "method": "POST", "url": "https://hooks.example.com"}}


@pytest.mark.parametrize("block, error", [
    ({**SNS, "topicArn": ""}, "spec.sns.ev.topicArn: must not be empty"),
    ({**SNS, "region": ""}, "spec.sns.ev.region: must not be empty"),
    ({k: v for k, v in SNS.items() if k != "webhook"}, "spec.sns.ev.webhook: is required"),
    ({**SNS, "webhook": {**SNS["webhook"], "endpoint": "sns"}}, "spec.sns.ev.webhook.endpoint: must start with '/'"),
    ({**SNS, "webhook": {**SNS["webhook"], "port": "http"}}, "spec.sns.ev.webhook.port: must be a port number"),
    ({**SNS, "secretKey": SECRET}, "spec.sns.ev.accessKey: accessKey and secretKey go together"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_sns_config_errors_name_the_field(block, error):
    with pytest.raises(SpecError) as info:
        load({"sns": {"ev": block}})
    assert error in str(info.value) and "\n" not in str(info.value)


RESOURCE = {"namespace": "argo-events", "group": "argoproj.io", "version": "v1alpha1", "resource": "workflows",
            "eventTypes": ["ADD"]}


def labels(*selectors):
    return {**RESOURCE, "filter": {"labels": [dict(zip(("key", "operation", "value"), s, strict=True)) for s in selectors]}}


def fields(*selectors):
    return {**RESOURCE, "filter": {"fields": [dict(zip(("key", "operation", "value"), s, strict=True)) for s in selectors]}}


@pytest.mark.parametrize("block, error", [
    ({**RESOURCE, "version": ""}, "spec.resource.ev.version: must not be empty"),
    ({**RESOURCE, "resource": ""}, "spec.resource.ev.resource: must not be empty"),
    ({k: v for k, v in RESOURCE.items() if k != "eventTypes"}, "spec.resource.ev.eventTypes: is required"),
    ({**RESOURCE, "eventTypes": []}, "spec.resource.ev.eventTypes: must list at least one"),
    ({**RESOURCE, "eventTypes": ["ADD", "ADDED"]}, "spec.resource.ev.eventTypes[1]: unknown event type 'ADDED'"),
    (labels(("", "==", "x")), "spec.resource.ev.filter.labels[0].key: must not be empty"),
    (labels(("app", "~=", "x")), "spec.resource.ev.filter.labels[0]: unknown operation '~='"),
    (labels(("app", "in", "a,b c")), "spec.resource.ev.filter.labels[0]: invalid label value 'b c'"),
    (labels(("app", "exists", "x")), "spec.resource.ev.filter.labels[0]: exists takes no value"),
    (labels(("n", "gt", "x")), "spec.resource.ev.filter.labels[0]: gt needs an integer value"),
    (labels(("bad key", "==", "x")), "spec.resource.ev.filter.labels[0]: invalid label key 'bad key'"),
    (labels(("app", "==", "a" * 64)), "spec.resource.ev.filter.labels[0]: invalid label value"),
    (fields(("metadata.name", "in", "x")), "spec.resource.ev.filter.fields[0].operation: must be =, == or !="),
    (fields(("metadata.name", "==", "(x")), "spec.resource.ev.filter.fields[0].value: invalid regex"),
    (fields(("", "==", "x")), "spec.resource.ev.filter.fields[0].key: must not be empty"),
    ({**RESOURCE, "filter": {"createdBy": "yesterday"}}, "spec.resource.ev.filter.createdBy: not an RFC 3339 time"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_resource_config_errors_name_the_field(block, error):
    with pytest.raises(SpecError) as info:
        load({"resource": {"ev": block}})
    assert error in str(info.value) and "\n" not in str(info.value)


def test_resource_loads_argos_example_fields():
    text = """
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: resource}
spec:
  resource:
    example:
      namespace: argo-events
      group: argoproj.io
      version: v1alpha1
      resource: workflows
      eventTypes: [ADD, UPDATE, DELETE]
      metadata: {team: data}
      filter:
        afterStart: true
        prefix: my-workflow
        createdBy: 2019-04-06T12:52:11Z
        labels:
          - {key: app, operation: "==", value: my-workflow}
          - {key: workflows.argoproj.io/completed, operation: in, value: "true,false"}
        fields:
          - {key: metadata.name, operation: "!=", value: "my*"}
"""
    (es,) = load_text(text)
    (cfg,) = es.events()
    f = cfg.spec.filter
    assert cfg.supported and cfg.type == "resource" and cfg.spec.event_types == ["ADD", "UPDATE", "DELETE"]
    assert f.after_start and f.prefix == "my-workflow" and f.created_by == "2019-04-06T12:52:11Z"  # YAML read a time
    assert f.labels[1].key == "workflows.argoproj.io/completed" and f.fields[0].operation == "!="


@pytest.mark.parametrize("selectors, rendered", [
    ([("app", "", "x")], "app=x"),
    ([("app", "==", "x")], "app==x"),
    ([("app", "!=", "x")], "app!=x"),
    ([("tier", "in", "web,api")], "tier in (api,web)"),
    ([("tier", "notin", "web")], "tier notin (web)"),
    ([("app", "exists", "")], "app"),
    ([("app", "!", "")], "!app"),
    ([("n", "gt", "3"), ("m", "lt", "-1")], "m<-1,n>3"),
    ([("z", "", ""), ("example.com/a", "==", "b")], "example.com/a==b,z="),
])
def test_label_selector_is_kubernetes_string_form(selectors, rendered):
    from airflow_argo_events.core.spec.k8s_selectors import label_selector

    assert label_selector(selectors) == rendered


def test_event_time_follows_argos_get_event_time():
    from datetime import datetime, timezone

    from airflow_argo_events.core.sources.resource import GO_ZERO, event_time

    obj = {"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z", "managedFields": [
        {"operation": "Update", "time": "2024-03-01T00:00:00Z"},
        {"operation": "Apply", "time": "2025-01-01T00:00:00Z"},  # Argo counts Update entries only
        {"operation": "Update"}]}}
    assert event_time(obj, "ADD") == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert event_time(obj, "UPDATE") == datetime(2024, 3, 1, tzinfo=timezone.utc)
    assert event_time({"metadata": {"deletionTimestamp": "2024-05-01T00:00:00+02:00"}}, "DELETE") == \
        datetime(2024, 4, 30, 22, tzinfo=timezone.utc)
    assert event_time({"metadata": {}}, "DELETE") > datetime(2024, 6, 1, tzinfo=timezone.utc)  # now
    assert event_time({"metadata": {}}, "ADD") == GO_ZERO
