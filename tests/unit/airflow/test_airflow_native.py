"""What a DAG author expects of the operators and the hook: templated fields rendered by Airflow,
firings from XCom in any form, deferrable by default the Airflow way, connection forms and tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from airflow_argo_events.core.exceptions import SpecError

DEP = {"name": "order", "eventSourceName": "shop", "eventName": "order",
       "filters": {"data": [{"path": "id", "type": "number", "value": ["1"]}]}}


def _render(op, context, native=False):
    """Render an operator's template fields as the task runner does before ``execute``."""
    import jinja2

    env = jinja2.nativetypes.NativeEnvironment() if native else jinja2.Environment()
    op.render_template_fields(context, jinja_env=env)
    return op


def test_event_sensor_conditions_from_params_are_rendered_not_parsed_at_import():
    from airflow_argo_events.sensors import EventSensor

    deps = [DEP, {**DEP, "name": "other", "eventName": "other"}]
    s = EventSensor(task_id="w", dependencies=deps, conditions="{{ params.cond }}", timeout=60)
    assert s.sensor_doc is None  # not built from the unrendered text
    _render(s, {"params": {"cond": "order && other"}})
    doc = s._build()
    assert doc["spec"]["triggers"][0]["template"]["conditions"] == "order && other"


@pytest.mark.parametrize("native", [False, True], ids=["text", "native"])
def test_templated_dependencies_keep_argo_go_templates_and_plain_strings(native):
    from airflow_argo_events.sensors import EventSensor

    dep = {"name": "order", "eventSourceName": "{{ params.source }}", "eventName": "order",
           "filters": {"data": [{"path": "id", "type": "number", "value": ["1"],
                                 "template": "{{ .Input.id }}"}]}}
    s = EventSensor(task_id="w", dependencies=[dep], sensor=None, nats_conn_id="{{ params.conn }}", timeout=60)
    _render(s, {"params": {"source": "shop", "conn": "nats_other"}}, native=native)
    rendered = s.dependencies[0]
    assert rendered["eventSourceName"] == "shop" and s.nats_conn_id == "nats_other"
    assert rendered["filters"]["data"][0]["template"] == "{{ .Input.id }}"  # Argo's Go template, untouched
    assert rendered["filters"]["data"][0]["value"] == ["1"]  # native rendering would make it 1
    s._build()


def test_templated_value_is_validated_after_rendering():
    from airflow_argo_events.sensors import EventSensor

    s = EventSensor(task_id="w", dependencies=[DEP], conditions="{{ params.cond }}", timeout=60)
    _render(s, {"params": {"cond": "order && nope"}})
    with pytest.raises(SpecError, match="unknown dependency 'nope'"):
        s._build()


def test_untemplated_bad_values_still_fail_at_parse_time():
    from airflow_argo_events.sensors import EventSensor

    with pytest.raises(SpecError, match="eventName"):
        EventSensor(task_id="w", dependencies=[{"name": "a", "eventSourceName": "s"}])


def test_template_fields_of_every_operator():
    from airflow_argo_events.operators import ActionOperator, PublishEventOperator
    from airflow_argo_events.sensors import EventSensor

    assert {"dependencies", "conditions", "sensor", "nats_conn_id", "since"} <= set(EventSensor.template_fields)
    assert {"data", "event_source", "event", "type"} <= set(PublishEventOperator.template_fields)
    assert {"firing", "trigger", "trigger_name", "kubernetes_conn_id"} <= set(ActionOperator.template_fields)


def test_publish_operator_renders_type_and_names():
    from airflow_argo_events.operators import PublishEventOperator

    op = PublishEventOperator(task_id="p", event_source="{{ params.s }}", event="e-{{ params.n }}",
                              type="{{ params.t }}", data={"run": "{{ run_id }}"})
    _render(op, {"params": {"s": "shop", "n": 2, "t": "custom"}, "run_id": "r1"})
    assert (op.event_source, op.event, op.type, op.data) == ("shop", "e-2", "custom", {"run": "r1"})


FIRING = {"firing_id": "f1", "sensor": "s", "trigger": "t", "resolved": None,
          "events": {"order": {"specversion": "1.0", "id": "e1", "source": "shop", "type": "webhook",
                               "subject": "order", "datacontenttype": "application/json",
                               "time": "2026-01-01T00:00:00Z", "data": {"id": 1, "ok": True, "none": None}}}}


@pytest.mark.parametrize("value", [FIRING, json.dumps(FIRING), repr(FIRING), json.dumps(FIRING).encode()],
                         ids=["dict", "json", "python-repr", "bytes"])
def test_firing_document_accepts_what_xcom_gives(value):
    from airflow_argo_events.operators.action import firing_document

    assert firing_document(value) == FIRING


@pytest.mark.parametrize("value, message", [("not a firing", "neither JSON nor a dict literal"),
                                            ("__import__('os')", "neither JSON nor a dict literal"),
                                            ("[1, 2]", "expected a firing dict"), (42, "expected a firing dict")])
def test_firing_document_refuses_the_rest_in_one_line(value, message):
    from airflow_argo_events.operators.action import firing_document

    with pytest.raises(ValueError, match=message):
        firing_document(value)


def test_action_operator_takes_an_xcomarg_and_sets_the_dependency():
    from airflow.sdk import DAG

    from airflow_argo_events.operators import ActionOperator
    from airflow_argo_events.sensors import EventSensor

    with DAG("x", schedule=None):
        wait = EventSensor(task_id="wait", dependencies=[DEP], timeout=60)
        act = ActionOperator(task_id="act", firing=wait.output,
                             trigger={"template": {"name": "t", "log": {}},
                                      "parameters": [{"src": {"dependencyName": "order", "dataKey": "id"},
                                                      "dest": "x"}]})
    assert "wait" in act.upstream_task_ids
    act.firing = FIRING  # what the XComArg resolves to at render time
    assert act.execute({"dag_run": None})["firing_id"]


def test_action_operator_trigger_with_jinja_is_built_at_run_time():
    from airflow_argo_events.operators import ActionOperator

    op = ActionOperator(task_id="a", firing=json.dumps(FIRING), trigger={"template": {
        "name": "{{ params.name }}", "log": {}}})
    assert op.sensor_doc is None
    _render(op, {"params": {"name": "rendered"}})
    assert op._build()["spec"]["triggers"][0]["template"]["name"] == "rendered"


def _deferrable_default(value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"}
    if value is not None:
        env["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] = value
    code = ("from airflow_argo_events.sensors import EventSensor\n"
            "print(EventSensor(task_id='w', dependencies=[{'name': 'a', 'eventSourceName': 's', 'eventName': 'e'}])"
            ".deferrable)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.timeout(600)  # two fresh interpreters importing Airflow: slow on a loaded machine
def test_deferrable_default_follows_operators_default_deferrable():
    # Stock Airflow ships default_deferrable=False: the sensor then pokes (see test_event_sensor_poke.py).
    assert _deferrable_default(None) == "False"
    assert _deferrable_default("True") == "True"


def test_nats_connection_form_fields_in_provider_info():
    from airflow_argo_events.get_provider_info import get_provider_info

    (conn,) = get_provider_info()["connection-types"]
    fields = conn["conn-fields"]
    for name in ("servers", "stream", "token", "creds_file", "nkey_seed_file", "nkey_seed", "tls_ca", "tls_cert",
                 "tls_key", "tls_insecure"):
        assert fields[name]["label"] and fields[name]["description"], name
    assert fields["token"]["schema"]["format"] == "password" and fields["nkey_seed"]["schema"]["format"] == "password"
    assert set(conn["ui-field-behaviour"]["placeholders"]) >= {"host", "port", "login", "password"}
    json.dumps(get_provider_info())  # the Airflow docs site and the API read it as JSON


def test_airflow_reads_the_nats_form_fields(tmp_path):
    """Through Airflow's own ProvidersManager: the connection type, its hook and its extra fields."""
    code = ("from airflow.providers_manager import ProvidersManager\n"
            "pm = ProvidersManager()\n"
            "import json\n"
            "hook = pm.hooks['nats']\n"
            "widgets = sorted(k for k in pm.connection_form_widgets if k.startswith('extra__nats__'))\n"
            "print(json.dumps({'hook': hook.hook_class_name, 'widgets': widgets,"
            " 'behaviour': pm.field_behaviours.get('nats')}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "AIRFLOW_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["hook"] == "airflow_argo_events.hooks.nats.NatsHook"
    import importlib.util

    import airflow

    if tuple(int(p) for p in airflow.__version__.split(".")[:2]) < (3, 2) and not (
            importlib.util.find_spec("wtforms") and importlib.util.find_spec("flask_appbuilder")):
        # 3.0/3.1 build every provider's form from the hook's wtforms widgets: without the FAB
        # provider (wtforms) no provider has extra fields there. The hook's methods are checked below.
        from airflow_argo_events.hooks.nats import NatsHook

        assert "schema" in NatsHook.get_ui_field_behaviour()["hidden_fields"]
        return
    assert got["behaviour"] and "schema" in got["behaviour"]["hidden_fields"]
    assert "extra__nats__servers" in got["widgets"] and "extra__nats__token" in got["widgets"]


def test_nats_settings_from_form_fields_and_prefixed_extras():
    from airflow_argo_events.hooks.nats import NatsHook

    class Conn:
        conn_id, host, port, login, password = "c", None, None, None, None
        extra_dejson = {"extra__nats__servers": "nats://a:1,nats://b:2", "extra__nats__stream": "bus",
                        "token": "t0k", "tls_insecure": False, "creds_file": ""}

    settings, stream = NatsHook.settings_from_connection(Conn())
    assert settings.servers == ("nats://a:1", "nats://b:2") and stream.name == "bus"
    assert settings.token == "t0k" and not settings.creds_file


def test_hook_test_connection_reports_success_and_failure(monkeypatch, nats_url):
    from airflow_argo_events.core.bus.embedded import free_port
    from airflow_argo_events.hooks.nats import NatsHook

    monkeypatch.setenv("AIRFLOW_CONN_NATS_OK", f"{nats_url}?stream=default")
    ok, message = NatsHook("nats_ok").test_connection()
    assert ok, message
    monkeypatch.setenv("AIRFLOW_CONN_NATS_DOWN", f"nats://127.0.0.1:{free_port()}")
    ok, message = NatsHook("nats_down").test_connection()
    assert not ok and "127.0.0.1" in message


def test_airflow_connections_test_cli_for_nats(tmp_path, nats_url):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
           "AIRFLOW_CONN_NATS_CLI": f"{nats_url}?stream=default"}
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    out = subprocess.run([airflow, "connections", "test", "nats_cli"], capture_output=True, text=True, env=env,
                         timeout=180)
    assert "Connection success" in out.stdout + out.stderr, (out.stdout + out.stderr)[-2000:]


@pytest.mark.parametrize("form", ["json", "uri"])
async def test_dag_runs_with_a_token_from_the_connection_extra(monkeypatch, form):
    """An ``http`` connection with no login and ``{"token": ...}`` in extra: the token is sent as is
    (no /auth/token round trip); a refused token is one non-retryable error, not a retry loop."""
    from airflow_argo_events.core.bus.embedded import free_port
    from airflow_argo_events.core.events import new_event
    from airflow_argo_events.core.sensor.engine import Engine
    from airflow_argo_events.core.spec.loader import parse_manifest
    from airflow_argo_events.triggers import SensorTrigger
    from tests.support import AirflowContract

    port = free_port()
    contract = AirflowContract()
    contract.server.port = port
    contract.tokens_issued = 3  # the API accepts "jwt-3", as if an administrator had issued it
    contract.start()

    def conn(token):
        if form == "json":
            return json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port, "extra": {"token": token}})
        return f"http://127.0.0.1:{port}?token={token}"

    try:
        for token, created in (("jwt-3", True), ("stale", False)):
            monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_TOKEN", conn(token))
            trigger = SensorTrigger(dependencies=[{"name": "d", "eventSourceName": "s", "eventName": "e"}],
                                    dag_id="target", airflow_conn_id="airflow_token")
            action = await trigger._dag_run_action()
            engine = Engine(parse_manifest(trigger.sensor, None, "Sensor"))
            (firing,) = engine.process(new_event(source="s", subject="e", type="webhook", data={"t": token}))
            try:
                assert await trigger._create_dag_run(action, firing, engine) is created
            finally:
                await action.ctx.close()
            if not created:
                assert "token was refused" in trigger.failed_firings[0][1]
    finally:
        contract.stop()
    assert len(contract.runs) == 1
    assert not [r for r in contract.server.requests if r.path == "/auth/token"]
    assert {r.headers["Authorization"] for r in contract.server.requests} == {"Bearer jwt-3", "Bearer stale"}
