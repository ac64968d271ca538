"""Each action against a real peer on localhost: HTTP server, NATS, fake Kubernetes API, Airflow REST contract."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from airflow_argo_events.core.actions.base import ActionContext
from airflow_argo_events.core.actions.executor import ActionRunner
from airflow_argo_events.core.bus.connection import shared_connection
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.sensor.engine import Engine
from airflow_argo_events.core.spec.sensor import Sensor

from ..support import AirflowContract, FakeKubernetes, RecordingServer

pytestmark = pytest.mark.timeout(60)


def one_dep_sensor(trigger: dict, **trigger_extra) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": "s"}, "spec": {
        "dependencies": [{"name": "d", "eventSourceName": "es", "eventName": "e"}],
        "triggers": [{"template": {"name": "t", **trigger}, **trigger_extra}]}})


def fire(sensor: Sensor, data=None):
    eng = Engine(sensor)
    (f,) = eng.process(new_event(source="es", subject="e", type="webhook", data=data or {"body": {"msg": "hi", "n": 3}}))
    return eng, f


class Sleeps:
    def __init__(self):
        self.calls = []

    async def __call__(self, seconds):
        self.calls.append(seconds)


@pytest.fixture
def server():
    s = RecordingServer().start()
    yield s
    s.stop()


async def test_http_sends_payload_headers_and_idempotency_key(server, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_API_TOKEN", "tok")
    monkeypatch.setenv("ARGO_EVENTS_SECRET_BASIC_USER", "u")
    monkeypatch.setenv("ARGO_EVENTS_SECRET_BASIC_PASS", "p")
    sensor = one_dep_sensor({"http": {
        "url": server.url + "/hook", "method": "PUT", "headers": {"X-Static": "1"},
        "secureHeaders": [{"name": "X-Token", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}],
        "basicAuth": {"username": {"name": "basic", "key": "user"}, "password": {"name": "basic", "key": "pass"}},
        "dynamicHeaders": [{"src": {"dependencyName": "d", "dataKey": "body.msg"}, "dest": "X-Msg"}],
        "payload": [{"src": {"dependencyName": "d", "dataKey": "body.msg"}, "dest": "message"},
                    {"src": {"dependencyName": "d", "dataKey": "body.n", "useRawData": True}, "dest": "n"}]}})
    eng, f = fire(sensor)
    runner = ActionRunner(eng)
    out = await runner.run(f)
    await runner.close()
    assert out.ok, out.detail
    (req,) = server.requests
    assert (req.method, req.path) == ("PUT", "/hook")
    assert req.json() == {"message": "hi", "n": 3}
    assert req.headers["Idempotency-Key"] == f.id
    assert req.headers["X-Static"] == "1" and req.headers["X-Token"] == "tok" and req.headers["X-Msg"] == "hi"
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()


async def test_http_parameters_change_the_url(server):
    sensor = one_dep_sensor({"http": {"url": server.url + "/x", "payload": [], "parameters": [
        {"src": {"dependencyName": "d", "dataKey": "body.msg"}, "dest": "url", "operation": "append"}]}})
    eng, f = fire(sensor)
    runner = ActionRunner(eng)
    assert (await runner.run(f)).ok
    await runner.close()
    assert server.requests[0].path == "/xhi"


async def test_http_status_policy_retries_then_dead_letter(server):
    server.respond = lambda r: (503, "down") if r.path == "/main" else (200, "ok")
    sensor = one_dep_sensor(
        {"http": {"url": server.url + "/main", "payload": []}},
        policy={"status": {"allow": [200, 201]}},
        retryStrategy={"steps": 3, "duration": "1s", "factor": 2, "jitter": 0},
        atLeastOnce=True,
        dlqTrigger={"atLeastOnce": True, "template": {"name": "dlq", "http": {"url": server.url + "/dlq", "payload": [
            {"src": {"dependencyName": "d", "dataKey": "body.msg"}, "dest": "lost"}]}}},
    )
    eng, f = fire(sensor)
    sleeps = Sleeps()
    runner = ActionRunner(eng, sleep=sleeps)
    out = await runner.run(f)
    await runner.close()
    assert not out.ok and out.attempts == 3
    assert sleeps.calls == [1.0, 2.0]
    assert [r.path for r in server.requests] == ["/main", "/main", "/main", "/dlq"]
    assert server.requests[-1].json() == {"lost": "hi"}
    assert out.dlq is not None and out.dlq.ok


async def test_http_without_policy_any_status_is_success(server):
    server.respond = lambda r: (500, "boom")
    eng, f = fire(one_dep_sensor({"http": {"url": server.url, "payload": []}}))
    runner = ActionRunner(eng)
    assert (await runner.run(f)).ok
    await runner.close()


async def test_http_connection_refused_is_a_logged_failure(caplog):
    from airflow_argo_events.core.bus.embedded import free_port

    eng, f = fire(one_dep_sensor({"http": {"url": f"http://127.0.0.1:{free_port()}/x", "payload": []}}))
    runner = ActionRunner(eng)
    out = await runner.run(f)
    await runner.close()
    assert not out.ok
    assert f.id in caplog.text


async def test_rate_limit_spaces_firings_with_injected_clock(server):
    now = [0.0]

    async def sleep(s):
        now[0] += s

    sensor = one_dep_sensor({"http": {"url": server.url, "payload": []}},
                            rateLimit={"unit": "Second", "requestsPerUnit": 2})
    eng = Engine(sensor)
    runner = ActionRunner(eng, sleep=sleep, clock=lambda: now[0])
    for i in range(6):
        (f,) = eng.process(new_event(source="es", subject="e", type="webhook", data={"i": i}))
        await runner.run(f)
    await runner.close()
    assert len(server.requests) == 6
    assert now[0] == pytest.approx(2.0)  # 2 free tokens, then 4 more at 2/s


async def test_nats_action_publishes_with_msg_id(nats_settings):
    url = nats_settings.servers[0]
    sensor = one_dep_sensor({"nats": {"url": url, "subject": "orders.big", "payload": [
        {"src": {"dependencyName": "d", "dataKey": "body.msg"}, "dest": "m"}]}})
    eng, f = fire(sensor)
    async with shared_connection(nats_settings) as nc:
        sub = await nc.subscribe("orders.big")
        runner = ActionRunner(eng)
        assert (await runner.run(f)).ok
        msg = await sub.next_msg(timeout=5)
        await runner.close()
    assert json.loads(msg.data) == {"m": "hi"}
    assert msg.headers["Nats-Msg-Id"] == f.id


async def test_slack_action_against_configurable_api(server, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_SLACK_TOKEN", "xoxb-1")
    sensor = one_dep_sensor({"slack": {"slackToken": {"name": "slack", "key": "token"}, "channel": "general",
                                       "message": "placeholder", "parameters": [
                                           {"src": {"dependencyName": "d", "dataTemplate": "got {{ .Input.body.msg }}"},
                                            "dest": "message"}]}})
    eng, f = fire(sensor)
    runner = ActionRunner(eng, ActionContext(slack_api_url=server.url + "/api"))
    assert (await runner.run(f)).ok
    await runner.close()
    (req,) = server.requests
    assert req.path == "/api/chat.postMessage"
    assert req.headers["Authorization"] == "Bearer xoxb-1"
    assert req.json() == {"channel": "general", "text": "got hi"}


async def test_missing_secret_is_a_clear_non_retried_failure(server):
    sensor = one_dep_sensor({"slack": {"slackToken": {"name": "nope", "key": "token"}, "channel": "c"}},
                            retryStrategy={"steps": 5})
    eng, f = fire(sensor)
    runner = ActionRunner(eng, ActionContext(slack_api_url=server.url))
    out = await runner.run(f)
    await runner.close()
    assert not out.ok and out.attempts == 1
    assert "ARGO_EVENTS_SECRET_NOPE_TOKEN" in out.detail


async def test_airflow_dag_run_action_is_idempotent(monkeypatch):
    api = AirflowContract().start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", f"http://admin:pw@127.0.0.1:{api.server.port}")
        sensor = one_dep_sensor({"airflow": {"dagId": "consumer", "connId": "airflow_api", "payload": [
            {"src": {"dependencyName": "d", "dataKey": "body"}, "dest": "body"}]}})
        eng, f = fire(sensor)
        runner = ActionRunner(eng)
        first = await runner.run(f)
        again = await runner.run(f)  # a retried firing
        await runner.close()
        assert first.ok and again.ok and "already exists" in again.detail
        assert list(api.runs) == [("consumer", f"argo-events__{f.id}")]
        body = api.runs[("consumer", f"argo-events__{f.id}")]
        assert body["logical_date"] is None
        assert json.loads(body["conf"]["body"]) == {"msg": "hi", "n": 3}
    finally:
        api.stop()


async def test_airflow_bad_credentials_fail_without_retry(monkeypatch):
    api = AirflowContract().start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", f"http://admin:wrong@127.0.0.1:{api.server.port}")
        eng, f = fire(one_dep_sensor({"airflow": {"dagId": "x", "connId": "airflow_api"}},
                                     retryStrategy={"steps": 4}))
        runner = ActionRunner(eng)
        out = await runner.run(f)
        await runner.close()
        assert not out.ok and out.attempts == 1 and "401" in out.detail
    finally:
        api.stop()


WORKFLOW = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"generateName": "hello-", "namespace": "argo"},
            "spec": {"templates": [{"name": "main", "container": {"args": ["echo"]}}]}}


@pytest.fixture
def fake_k8s(tmp_path):
    k = FakeKubernetes().start()
    yield k, k.kubeconfig(str(tmp_path / "kubeconfig"))
    k.stop()


def k8s_ctx(kubeconfig):
    from airflow_argo_events.hooks.kubernetes import k8s_api_factory

    return ActionContext(k8s_factory=k8s_api_factory(config_file=kubeconfig))


async def test_argo_workflow_submit_through_kubernetes_hook(fake_k8s):
    k, kubeconfig = fake_k8s
    sensor = one_dep_sensor({"argoWorkflow": {"operation": "submit", "source": {"resource": WORKFLOW}, "parameters": [
        {"src": {"dependencyName": "d", "dataKey": "body.msg"}, "dest": "spec.templates.0.container.args.1"}]}})
    eng, f = fire(sensor)
    runner = ActionRunner(eng, k8s_ctx(kubeconfig))
    first = await runner.run(f)
    again = await runner.run(f)
    await runner.close()
    assert first.ok and again.ok, (first, again)
    path = f"/apis/argoproj.io/v1alpha1/namespaces/argo/workflows/hello-{f.id}"
    assert list(k.objects) == [path], "a retried firing must not create a second workflow"
    wf = k.objects[path]
    assert wf["spec"]["templates"][0]["container"]["args"] == ["echo", "hi"]
    assert wf["metadata"]["labels"]["events.argoproj.io/firing-id"] == f.id
    assert [r.method for r in k.server.requests] == ["POST", "POST"]
    assert k.server.requests[0].headers["Authorization"] == "Bearer fake-token"


async def test_k8s_create_patch_delete_configmap(fake_k8s):
    k, kubeconfig = fake_k8s
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"},
          "data": {"k": "v"}}
    results = []
    for op, extra in (("create", {}), ("patch", {"data": {"k": "patched"}}), ("delete", {})):
        obj = {**cm, **extra}
        eng, f = fire(one_dep_sensor({"k8s": {"operation": op, "source": {"resource": obj}}}))
        runner = ActionRunner(eng, k8s_ctx(kubeconfig))
        results.append((await runner.run(f)).ok)
        if op == "patch":
            assert k.objects["/api/v1/namespaces/default/configmaps/cfg"]["data"] == {"k": "patched"}
        await runner.close()
    assert results == [True, True, True]
    assert k.objects == {}


async def test_argo_workflow_suspend_and_unsupported_retry(fake_k8s):
    k, kubeconfig = fake_k8s
    k.objects["/apis/argoproj.io/v1alpha1/namespaces/argo/workflows/wf1"] = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "wf1"}, "spec": {}}
    ref = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "wf1", "namespace": "argo"}}
    eng, f = fire(one_dep_sensor({"argoWorkflow": {"operation": "suspend", "source": {"resource": ref}}}))
    runner = ActionRunner(eng, k8s_ctx(kubeconfig))
    assert (await runner.run(f)).ok
    await runner.close()
    assert k.objects["/apis/argoproj.io/v1alpha1/namespaces/argo/workflows/wf1"]["spec"]["suspend"] is True
    eng, f = fire(one_dep_sensor({"argoWorkflow": {"operation": "retry", "source": {"resource": ref}}}))
    runner = ActionRunner(eng, k8s_ctx(kubeconfig))
    out = await runner.run(f)
    await runner.close()
    assert not out.ok and "not supported" in out.detail


async def test_unsupported_trigger_type_says_so():
    eng, f = fire(one_dep_sensor({"openWhisk": {"actionName": "a", "host": "h", "payload": []}}))
    runner = ActionRunner(eng)
    out = await runner.run(f)
    await runner.close()
    assert not out.ok and "not supported" in out.detail and out.attempts == 1


def test_loop_survives_action_crash():
    class Boom(Exception):
        pass

    eng, f = fire(one_dep_sensor({"log": {}}))
    runner = ActionRunner(eng)

    async def explode(_f):
        raise Boom("bug")

    runner.actions["t"].execute = explode  # a bug inside an action
    out = asyncio.run(runner.run(f))
    assert not out.ok and "Boom" in out.detail
