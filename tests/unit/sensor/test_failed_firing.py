"""A parameter that cannot be resolved (a ``dataKey`` not in the event, no ``value``): as in
Argo, the trigger is not executed and its state is cleared. Here the firing carries the error:
the executor records it failed and runs the dlqTrigger; ``sensor test`` prints it on stderr."""

from __future__ import annotations

import json
import logging

import pytest

from airflow_argo_events.cli.main import main
from airflow_argo_events.core.actions.base import Action, ActionResult
from airflow_argo_events.core.actions.executor import ActionRunner
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.sensor.engine import Engine
from airflow_argo_events.core.spec.sensor import Sensor

pytestmark = pytest.mark.timeout(30)

WORKFLOW = {"operation": "submit", "source": {"resource": {
    "kind": "Workflow", "spec": {"arguments": {"parameters": [{"name": "message", "value": ""}]}}}},
    "parameters": [{"src": {"dependencyName": "a", "dataKey": "body.message"},
                    "dest": "spec.arguments.parameters.0.value"}]}
ERROR = ("trigger 'wf': parameter argoWorkflow.parameters[0] (dest 'spec.arguments.parameters.0.value'): "
         "key 'body.message' is not in the event of dependency 'a', and the parameter has no value; "
         "the action is not run")


def sensor(conditions: str = "a", **trigger_extra) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": "s"}, "spec": {
        "dependencies": [{"name": "a", "eventSourceName": "es", "eventName": "a"},
                         {"name": "b", "eventSourceName": "es", "eventName": "b"}],
        "triggers": [{"template": {"name": "wf", "conditions": conditions, "argoWorkflow": WORKFLOW},
                      **trigger_extra}]}})


def ev(subject: str, data: dict, id: str):
    return new_event(source="es", subject=subject, type="webhook", data=data, id=id)


def test_the_firing_carries_one_error_line_and_no_body():
    (f,) = Engine(sensor()).process(ev("a", {"body": {"other": 1}}, "e1"))
    assert f.error == ERROR
    assert f.resolved is None


def test_a_resolvable_firing_has_no_error():
    (f,) = Engine(sensor()).process(ev("a", {"body": {"message": "hi"}}, "e1"))
    assert f.error == ""
    assert f.resolved["spec"]["arguments"]["parameters"][0]["value"] == "hi"


def test_the_state_is_cleared_as_argo_does():
    eng = Engine(sensor("a && b"))
    assert eng.process(ev("b", {}, "e1")) == []
    (f,) = eng.process(ev("a", {"body": {}}, "e2"))
    assert f.error and sorted(f.events) == ["a", "b"]
    assert eng.saved("wf") == {}
    assert eng.take_dirty() == {"wf"}


def test_a_failing_trigger_parameter_fails_the_firing_too():
    s = Sensor.model_validate({"metadata": {"name": "s"}, "spec": {
        "dependencies": [{"name": "a", "eventSourceName": "es", "eventName": "a"}],
        "triggers": [{"template": {"name": "t", "log": {}}, "parameters": [
            {"src": {"dependencyName": "a", "dataKey": "interval"}, "dest": "log.intervalSeconds"}]}]}})
    (f,) = Engine(s).process(ev("a", {}, "e1"))
    assert f.error.startswith("trigger 't': parameter parameters[0] (dest 'log.intervalSeconds'): key 'interval'")


class Recording(Action):
    kind = "log"

    def __init__(self, name="rec"):
        self.name = name
        self.seen = []

    async def execute(self, firing):
        self.seen.append(firing)
        return ActionResult(True, "ok")

    async def close(self):
        pass


DLQ = {"atLeastOnce": True, "dlqTrigger": {"atLeastOnce": True, "template": {"name": "lost", "log": {}}}}


async def test_the_executor_does_not_run_the_action_and_runs_the_dlq(caplog):
    eng = Engine(sensor(**DLQ))
    (f,) = eng.process(ev("a", {"body": {}}, "e1"))
    runner = ActionRunner(eng)
    main_action = runner.actions["wf"] = Recording()
    caplog.set_level(logging.INFO, logger="airflow_argo_events.actions")
    out = await runner.run(f)
    assert main_action.seen == []
    assert (out.ok, out.attempts, out.detail) == (False, 0, ERROR)
    assert out.dlq is not None and out.dlq.ok  # the dlq is a log trigger: it ran
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"sensor s trigger wf firing {f.id}: failed: {ERROR}"]


async def test_without_a_dlq_the_failure_is_only_recorded():
    eng = Engine(sensor())
    (f,) = eng.process(ev("a", {"body": {}}, "e1"))
    runner = ActionRunner(eng)
    runner.actions["wf"] = Recording()
    out = await runner.run(f)
    assert not out.ok and out.dlq is None and runner.actions["wf"].seen == []


async def test_a_dlq_whose_own_parameter_fails_is_not_run_either():
    dlq = {"atLeastOnce": True, "dlqTrigger": {"atLeastOnce": True, "template": {"name": "lost", "http": {
        "url": "http://127.0.0.1:9/never", "payload": [{"src": {"dependencyName": "a", "dataKey": "nope"},
                                                        "dest": "x"}]}}}}
    eng = Engine(sensor(**dlq))
    (f,) = eng.process(ev("a", {"body": {}}, "e1"))
    out = await ActionRunner(eng).run(f)
    assert out.dlq is not None and not out.dlq.ok
    assert out.dlq.detail.startswith("dead-letter trigger 'lost': parameter http.payload[0] (dest 'x'): key 'nope'")


def test_sensor_test_prints_the_error_on_stderr_and_no_firing_line(tmp_path, capsys):
    manifest = tmp_path / "s.yaml"
    manifest.write_text(json.dumps({"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor",
                                    **sensor().model_dump(mode="json", by_alias=True, exclude_none=True,
                                                          include={"metadata", "spec"})}))
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e.to_json()) for e in [
        ev("a", {"body": {"other": 1}}, "e1"), ev("a", {"body": {"message": "hi"}}, "e2")]) + "\n")
    assert main(["sensor", "test", str(manifest), "--events", str(events)]) == 0
    out, err = capsys.readouterr()
    (line,) = out.splitlines()
    assert json.loads(line)["events"] == {"a": "e2"}
    (failed,) = [x for x in err.splitlines() if "failed" in x]
    assert failed.startswith(f"{events}:1: firing ") and failed.endswith(f"failed: {ERROR}")
