"""Secret references of an EventSource run by EventSourceTrigger resolve through real Airflow
Variables and Connections (Airflow's own lookup, here from its environment secrets backend:
``AIRFLOW_VAR_<NAME>`` / ``AIRFLOW_CONN_<NAME>``), and the value never reaches a log."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time

import aiohttp
import pytest

from airflow_argo_events.core.bus.embedded import free_port
from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.secrets import Secrets, prefetch
from airflow_argo_events.triggers import EventSourceTrigger

pytestmark = pytest.mark.timeout(60)
TOKEN = "tok-3f9a1c77-never-logged"
HOOK_SECRET = "gh-5be21d0e-never-logged"


def _es(name: str, block: dict) -> dict:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource", "metadata": {"name": name}, "spec": block}


async def _post(port: int, path: str, body: bytes, headers: dict[str, str]) -> int | None:
    try:
        async with aiohttp.ClientSession() as http, http.post(f"http://127.0.0.1:{port}{path}", data=body,
                                                              headers=headers) as resp:
            return resp.status
    except aiohttp.ClientConnectionError:
        return None


async def _first_event(trigger: EventSourceTrigger, port: int, path: str, attempts: list[tuple[bytes, dict]]):
    """Start the trigger, send each (body, headers) once its server listens; the statuses and the first event."""
    gen = trigger.run()
    first = asyncio.ensure_future(anext(gen))
    statuses = []
    try:
        deadline = time.monotonic() + 20
        for body, headers in attempts:
            status = await _post(port, path, body, headers)
            while status is None and time.monotonic() < deadline and not first.done():
                await asyncio.sleep(0.2)
                status = await _post(port, path, body, headers)
            statuses.append(status)
        event = await asyncio.wait_for(first, 20)
    finally:
        first.cancel()
        await gen.aclose()
    return statuses, event


def _no_secret_in(caplog, *secrets: str) -> None:
    for record in caplog.records:
        text = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
        for secret in secrets:
            assert secret not in text, record.getMessage()


async def test_webhook_auth_secret_from_an_airflow_variable(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AIRFLOW_VAR_HOOKCREDS", f'{{"token": "{TOKEN}"}}')
    port = free_port()
    doc = _es("wh", {"webhook": {"e": {"port": str(port), "endpoint": "/e", "method": "POST",
                                       "authSecret": {"name": "hookcreds", "key": "token"}}}})
    statuses, event = await _first_event(EventSourceTrigger(eventsource=doc, event_name="e", nats_conn_id=None),
                                         port, "/e", [(b'{"n": 1}', {"Authorization": "Bearer wrong"}),
                                                      (b'{"n": 2}', {"Authorization": f"Bearer {TOKEN}"})])
    assert statuses == [401, 200]
    assert event.payload["data"]["body"] == {"n": 2}
    _no_secret_in(caplog, TOKEN)


async def test_github_webhook_secret_from_an_airflow_connection(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AIRFLOW_CONN_GHHOOK", f'{{"conn_type": "generic", "password": "{HOOK_SECRET}"}}')
    port = free_port()
    doc = _es("gh", {"github": {"push": {"repositories": [{"owner": "o", "names": ["r"]}],
                                         "webhookSecret": {"name": "ghhook", "key": "password"},
                                         "webhook": {"port": str(port), "endpoint": "/push", "method": "POST"}}}})
    body = b'{"ref": "refs/heads/main"}'
    signed = {"Content-Type": "application/json", "X-GitHub-Event": "push",
              "X-Hub-Signature-256": "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()}
    forged = {**signed, "X-Hub-Signature-256": "sha256=" + "0" * 64}
    statuses, event = await _first_event(EventSourceTrigger(eventsource=doc, event_name="push", nats_conn_id=None),
                                         port, "/push", [(body, forged), (body, signed)])
    assert statuses == [400, 200]
    assert event.payload["data"]["body"]["ref"] == "refs/heads/main"
    _no_secret_in(caplog, HOOK_SECRET)


async def test_a_missing_secret_is_one_error_naming_the_field_and_where_it_was_looked_for(monkeypatch):
    doc = _es("gh", {"github": {"push": {"repositories": [{"owner": "o", "names": ["r"]}],
                                         "webhookSecret": {"name": "nowhere", "key": "secret"},
                                         "webhook": {"port": str(free_port()), "endpoint": "/p", "method": "POST"}}}})
    gen = EventSourceTrigger(eventsource=doc, event_name="push", nats_conn_id=None).run()
    with pytest.raises(SpecError) as err:
        await asyncio.wait_for(anext(gen), 20)
    await gen.aclose()
    text = str(err.value)
    assert "spec.github.push.webhookSecret" in text and "ARGO_EVENTS_SECRET_NOWHERE_SECRET" in text
    assert "Airflow Variable 'nowhere'" in text and "Airflow Connection 'nowhere'" in text


async def test_the_environment_wins_and_airflow_is_asked_only_for_the_rest(monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_A_K", "from-env")
    asked = []

    async def lookup(name, key):
        asked.append((name, key))
        return f"airflow:{name}/{key}"

    secrets = Secrets([await prefetch([("a", "k"), ("b", "k")], lookup)])
    assert secrets.get({"name": "a", "key": "k"}) == "from-env"
    assert secrets.get({"name": "b", "key": "k"}) == "airflow:b/k"
    assert asked == [("b", "k")]


def test_action_operator_http_basic_auth_from_an_airflow_variable(monkeypatch, caplog):
    """The same lookup for actions (ActionOperator; SensorTrigger's dead-letter actions share it)."""
    import base64

    from airflow_argo_events.operators import ActionOperator
    from tests.support import RecordingServer

    caplog.set_level(logging.DEBUG)
    password = "pw-8d0c4e21-never-logged"
    monkeypatch.setenv("AIRFLOW_VAR_HTTPCREDS", f'{{"user": "robot", "password": "{password}"}}')
    server = RecordingServer().start()
    try:
        op = ActionOperator(task_id="notify", firing={"firing_id": "f1", "events": {}}, trigger={"template": {
            "name": "notify", "http": {"url": f"{server.url}/hook", "method": "POST",
                                       "basicAuth": {"username": {"name": "httpcreds", "key": "user"},
                                                     "password": {"name": "httpcreds", "key": "password"}}}}})
        op.execute({"dag_run": None})
    finally:
        server.stop()
    (request,) = server.requests
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(f"robot:{password}".encode()).decode()
    _no_secret_in(caplog, password)
