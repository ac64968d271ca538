"""Trigger parameters (params.go, params_test.go behaviour)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from airflow_argo_events.core.sensor.engine import Engine
from airflow_argo_events.core.sensor.params import apply_params, compile_parameters, construct_payload
from airflow_argo_events.core.spec.sensor import TriggerParameter

from .helpers import dep, ev, sensor

DATA = {"body": {"message": "hi", "n": 100, "f": 2.5, "ok": False, "obj": {"message": "hi", "n": 1}, "nul": None,
                 "name": "john smith"}}
EVENT = ev("es", "e", data=DATA, id="id-1", at=datetime(2024, 1, 1, 10, 0, 0, 123000, tzinfo=timezone.utc))


def param(dest="x", op="", **src):
    src.setdefault("dependencyName", "d")
    p = {"src": src, "dest": dest}
    if op:
        p["operation"] = op
    return TriggerParameter.model_validate(p)


def payload(*params, events=None):
    return construct_payload(compile_parameters(list(params)), {"d": EVENT} if events is None else events)


@pytest.mark.parametrize(
    "src, expected",
    [
        ({"dataKey": "body.message"}, "hi"),
        ({"dataKey": "body.n"}, "100"),
        ({"dataKey": "body.f"}, "2.5"),
        ({"dataKey": "body.ok"}, "false"),
        ({"dataKey": "body.obj"}, '{"message":"hi","n":1}'),
        ({"dataKey": "body.nul"}, "null"),
        ({"dataKey": "body.n", "useRawData": True}, 100),
        ({"dataKey": "body.ok", "useRawData": True}, False),
        ({"dataKey": "body.obj", "useRawData": True}, {"message": "hi", "n": 1}),
        ({"dataKey": "body.nul", "useRawData": True}, None),
        ({"dataKey": "body.message", "useRawData": True}, "hi"),
        ({"dataTemplate": "{{ .Input.body.name | title }}"}, "John Smith"),
        ({"dataTemplate": "{{ .Input.body.missing }}", "dataKey": "body.message"}, "hi"),  # <no value> -> key
        ({"dataTemplate": "{{ .Input.body.missing }}", "value": "dflt"}, "dflt"),
        ({"dataKey": "body.missing", "value": "dflt"}, "dflt"),
        ({"dataTemplate": "{{ nosuch }}", "dataKey": "body.message"}, "hi"),  # broken template -> key
        ({"contextKey": "id"}, "id-1"),
        ({"contextKey": "time"}, "2024-01-01T10:00:00Z"),  # metav1.Time: no fractional seconds
        ({"contextTemplate": "{{ .Input.source }}/{{ .Input.subject }}"}, "es/e"),
        ({"contextKey": "type", "dataKey": "body.message"}, "hi"),  # data wins over context
        ({"value": "literal"}, "literal"),
    ],
)
def test_resolution(src, expected):
    assert payload(param(**src)) == {"x": expected}


def test_no_key_and_no_value_gives_the_whole_event():
    out = payload(param())
    import base64
    import json

    whole = json.loads(out["x"])
    assert whole["context"]["id"] == "id-1"
    assert json.loads(base64.b64decode(whole["data"])) == DATA


def test_missing_dependency_uses_value_or_skips():
    assert payload(param(value="v"), events={}) == {"x": "v"}
    assert payload(param(), events={}) == {}


def test_unresolvable_parameter_is_skipped_with_a_log(caplog):
    out = payload(param(dest="a", dataKey="body.missing"), param(dest="b", dataKey="body.message"))
    assert out == {"b": "hi"}
    assert "parameter a skipped" in caplog.text


def test_http_empty_dest_is_the_whole_payload():
    assert payload(param(dest="", dataKey="body.obj"), param(dest="ignored", value="x")) == {"message": "hi", "n": 1}


@pytest.mark.parametrize(
    "doc, dest, op, src, expected",
    [
        ({"a": "Years: "}, "a", "append", {"dataKey": "body.n"}, {"a": "Years: 100"}),
        ({"a": "x"}, "a", "prepend", {"value": "pre-"}, {"a": "pre-x"}),
        ({"a": 42}, "a", "append", {"value": "!"}, {"a": "42!"}),
        ({}, "a", "append", {"dataKey": "body.n", "useRawData": True}, {"a": 100}),
        ({"a": "x"}, "a", "overwrite", {"value": "y"}, {"a": "y"}),
        ({"spec": {"templates": [{"container": {"args": ["echo"]}}]}}, "spec.templates.0.container.args.1", "",
         {"dataKey": "body.message"}, {"spec": {"templates": [{"container": {"args": ["echo", "hi"]}}]}}),
        ({"metadata": {}}, "metadata.labels.owner", "", {"value": "me"}, {"metadata": {"labels": {"owner": "me"}}}),
        ({"l": [1]}, "l.-1", "", {"value": "z"}, {"l": [1, "z"]}),
    ],
)
def test_apply_params_operations_and_dest_paths(doc, dest, op, src, expected):
    out = apply_params(doc, compile_parameters([param(dest=dest, op=op, **src)]), {"d": EVENT})
    assert out == expected


def test_argo_workflow_body_into_args_with_trigger_level_parameters():
    s = sensor(
        [dep("d", "hdfs", "example")],
        [{"template": {"name": "wf", "argoWorkflow": {
            "operation": "submit",
            "source": {"resource": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                                    "metadata": {"generateName": "hdfs-"},
                                    "spec": {"templates": [{"name": "main", "container": {"args": ["echo"]}}]}}},
            "parameters": [{"src": {"dependencyName": "d", "dataKey": "body"}, "dest": "spec.templates.0.container.args.1"}],
        }},
          "parameters": [{"src": {"dependencyName": "d", "dataKey": "name"},
                          "dest": "argoWorkflow.source.resource.metadata.generateName", "operation": "append"}]}],
    )
    (f,) = Engine(s).process(ev("hdfs", "example", data={"name": "x.txt", "body": "file body"}))
    assert f.resolved["spec"]["templates"][0]["container"]["args"] == ["echo", "file body"]
    assert f.resolved["metadata"]["generateName"] == "hdfs-x.txt"


# ---------------------------------------------------------------- sjson destinations (issue 12)

from airflow_argo_events.core.sensor.params import ParameterError, set_path  # noqa: E402


@pytest.mark.parametrize("doc, path, expected", [
    ({"a": "x"}, "a.0", {"a": ["v"]}),                      # a scalar in the way of an index becomes []
    ({"a": 1}, "a.2", {"a": [None, None, "v"]}),
    ({"a": None}, "a.-1", {"a": {"-1": "v"}}),              # -1 is not numeric: {} for a scalar
    ({"a": [1]}, "a.-1", {"a": [1, "v"]}),                  # -1 appends to an array
    ({}, "a.-1.b", {"a": [{"b": "v"}]}),
    ({}, "a.2", {"a": [None, None, "v"]}),
    ({"a": [1, 2]}, "a.:0", {"a": ["v", 2]}),              # gjson finds element 0 even for a forced key
    ({"a": {"0": 1}}, "a.:0", {"a": {"0": "v"}}),
    ({}, "a.:0", {"a": {"0": "v"}}),
    ({"a": {}}, "a.0", {"a": {"0": "v"}}),                  # an object takes the key "0"
    (None, "a", {"a": "v"}),
    ("text", "0", ["v"]),
    ({"x.y": 1}, "x\\.y", {"x.y": "v"}),
])
def test_set_path_follows_sjson(doc, path, expected):
    assert set_path(doc, path, "v") == expected


@pytest.mark.parametrize("doc, path", [([], "count"), ({"a": [1, 2]}, "a.x\\.y"), ({"a": []}, "a.:0"), ({}, "")])
def test_set_path_errors_like_sjson(doc, path):
    with pytest.raises(ParameterError):
        set_path(doc, path, "v")


def test_an_sjson_error_fails_the_firing_in_strict_mode():
    params = compile_parameters([param(dest="list.name", value="x")])
    with pytest.raises(ParameterError, match="non-numeric key 'name'"):
        apply_params({"list": []}, params, {"d": EVENT}, strict=True)
    assert apply_params({"list": []}, params, {"d": EVENT}) == {"list": []}  # logged and skipped
