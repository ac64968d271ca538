"""Planted secrets never reach the logs: a sensor and an EventSource run through firings,
failures, retries and a NATS restart, and every captured line is searched for them.

The secrets are unique random strings, so a hit can only be a leak. Both the in-process
runtime (caplog at DEBUG, every logger) and the CLI's stderr are searched.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import yaml

from airflow_argo_events.core.actions.base import ActionContext
from airflow_argo_events.core.actions.executor import ActionRunner
from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.bus.connection import shared_connection
from airflow_argo_events.core.bus.embedded import free_port
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.exceptions import EventBusError
from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.spec.loader import load_text
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.testing.plugin import unique_name

from ..support import RecordingServer

pytestmark = pytest.mark.timeout(120)

CLI = str(Path(sys.executable).parent / "argo-events")


def secret(kind: str) -> str:
    return f"{kind}{uuid.uuid4().hex[:16]}"


class Planted:
    """Every secret of one test, by what it is."""

    def __init__(self) -> None:
        self.nats_pw = secret("natspw")
        self.wrong_pw = secret("wrongpw")
        self.nats_token = secret("natstok")
        self.http_pw = secret("httppw")
        self.http_token = secret("qtoken")
        self.down_pw = secret("downpw")
        self.down_key = secret("apikey")
        self.slack_hook = secret("slackhook")
        self.slack_token = secret("xoxb")
        self.sig = secret("sig")

    def all(self) -> dict[str, str]:
        return dict(vars(self))

    def leaks(self, text: str) -> list[str]:
        return [name for name, value in self.all().items() if value in text]

    def leaking_lines(self, *texts: str, limit: int = 10) -> str:
        lines = [line for t in texts for line in t.splitlines() if self.leaks(line)]
        return "\n".join(lines[:limit])


def sensor_doc(p: Planted, nats_port: int, closed: int, http: RecordingServer, slack: RecordingServer) -> dict:
    fast = {"steps": 2, "duration": "10ms"}
    good_nats = f"nats://alice:{p.nats_pw}@127.0.0.1:{nats_port}"
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": "leaky"}, "spec": {
        "dependencies": [{"name": "d", "eventSourceName": "src", "eventName": "e"}],
        "triggers": [
            {"template": {"name": "http-ok", "http": {
                "url": f"http://bob:{p.http_pw}@127.0.0.1:{http.port}/hook?token={p.http_token}&x=1"
                       f"&X-Amz-Signature={p.sig}",
                "payload": []}},
             "retryStrategy": fast},
            {"template": {"name": "http-down", "http": {
                "url": f"http://carol:{p.down_pw}@127.0.0.1:{closed}/hook?api_key={p.down_key}",
                "payload": []}}, "retryStrategy": fast},
            {"template": {"name": "nats-ok", "nats": {"url": good_nats, "subject": unique_name("out"),
                                                      "payload": []}}},
            {"template": {"name": "nats-refused", "nats": {
                "url": f"nats://alice:{p.wrong_pw}@127.0.0.1:{nats_port}", "subject": "x", "payload": []}},
             "retryStrategy": fast},
            {"template": {"name": "nats-token-down", "nats": {
                "url": f"nats://{p.nats_token}@127.0.0.1:{closed},{p.nats_token}@127.0.0.1:{closed}",
                "subject": "x", "payload": []}}},
            {"template": {"name": "slack", "slack": {
                "slackToken": {"name": "slack", "key": "token"}, "channel": "c", "message": "hi"}},
             "retryStrategy": fast},
        ]}}


def flaky(first_failures: int, fail, ok):
    """A RecordingServer responder that fails ``first_failures`` times, then succeeds."""
    state = {"n": 0}

    def respond(_):
        state["n"] += 1
        return fail if state["n"] <= first_failures else ok

    return respond


async def test_no_planted_secret_in_runtime_logs(private_nats, caplog, monkeypatch):
    p = Planted()
    caplog.set_level(logging.DEBUG)
    server = private_nats(extra_args=["--user", "alice", "--pass", p.nats_pw])
    closed = free_port()
    monkeypatch.setenv("ARGO_EVENTS_SECRET_SLACK_TOKEN", p.slack_token)
    monkeypatch.setenv("ARGO_EVENTS_SECRET_NATSAUTH_USER", "alice")
    monkeypatch.setenv("ARGO_EVENTS_SECRET_NATSAUTH_PASSWORD", p.nats_pw)
    http = RecordingServer(respond=flaky(1, (500, {"error": "boom"}), (200, {"ok": True}))).start()
    slack = RecordingServer(respond=flaky(1, (200, {"ok": False, "error": "ratelimited"}), (200, {"ok": True}))).start()
    bus_settings = NatsSettings.from_url(f"nats://alice:{p.nats_pw}@127.0.0.1:{server.port}")
    stream = StreamSettings(name=unique_name("sec"), replicas=1)
    subject = unique_name("in")
    es_doc = {"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource", "metadata": {"name": "src"}, "spec": {
        "nats": {
            "e": {"url": f"nats://alice:{p.nats_pw}@127.0.0.1:{server.port}", "subject": subject, "jsonBody": True},
            "auth": {"url": f"nats://127.0.0.1:{server.port}", "subject": subject + "x", "jsonBody": True,
                     "auth": {"basic": {"username": {"name": "natsauth", "key": "user"},
                                        "password": {"name": "natsauth", "key": "password"}}}},
            "refused": {"url": f"nats://alice:{p.wrong_pw}@127.0.0.1:{server.port}", "subject": "nope"},
        }}}
    (es,) = load_text(yaml.safe_dump(es_doc))
    sensor = Sensor.model_validate(sensor_doc(p, server.port, closed, http, slack))
    try:
        async with EventBus(bus_settings, stream) as bus:
            source_rt = EventSourceRuntime(es, bus)
            source_stop = asyncio.Event()
            source_task = asyncio.create_task(source_rt.run(source_stop))
            ctx = ActionContext(slack_api_url=f"http://127.0.0.1:{slack.port}/services/T0/B0/{p.slack_hook}")
            outcomes = []

            async def execute(firing):
                outcome = await runner.run(firing)
                outcomes.append(outcome)
                return outcome

            rt = SensorRuntime(sensor, bus, execute)
            runner = ActionRunner(rt.engine, ctx)
            await rt.start()
            stop = asyncio.Event()
            task = asyncio.create_task(rt.run(stop))
            try:
                await asyncio.sleep(1.0)  # sources subscribe (and the refused one fails and backs off)
                for n in (1, 2):
                    async with shared_connection(bus_settings) as nc:
                        await nc.publish(subject, f'{{"n": {n}}}'.encode())
                        await nc.flush()
                    await until(lambda n=n: len(outcomes) >= 6 * n, 30)
                server.restart()  # disconnect / reconnect lines of every connection
                await publish_retrying(bus, new_event(source="src", subject="e", type="nats", data={"n": 3}))
                await until(lambda: len(outcomes) >= 18, 30)
            finally:
                stop.set()
                source_stop.set()
                await asyncio.wait_for(task, 30)
                await asyncio.wait_for(source_task, 30)
                await rt.close()
                await runner.close()
    finally:
        http.stop()
        slack.stop()
    by_trigger = {o.trigger: o for o in outcomes}
    assert by_trigger["http-ok"].ok and by_trigger["nats-ok"].ok and by_trigger["slack"].ok
    assert not by_trigger["http-down"].ok and not by_trigger["nats-refused"].ok
    assert not by_trigger["nats-token-down"].ok
    assert http.requests and slack.requests
    # Redaction must keep the lines useful: the host and the failing trigger are still there.
    assert f"127.0.0.1:{closed}" in caplog.text and "http-down" in caplog.text
    # aiohttp.access is the test's own HTTP peer logging the requests it received: a
    # receiving server sees the query string by definition; our code never logs it.
    ours = [r for r in caplog.records if r.name != "aiohttp.access"]
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    for r in ours:
        handler.handle(r)
    texts = [handler.stream.getvalue(), *(o.detail for o in outcomes)]
    leaks = {name for t in texts for name in p.leaks(t)}
    assert not leaks, f"secrets in the logs: {sorted(leaks)}\n{p.leaking_lines(*texts)}"


async def publish_retrying(bus: EventBus, event, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await bus.publish(event, timeout=1)
            return
        except EventBusError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def until(cond, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class Output:
    """Reads a process's output on a thread, so the test can wait for a line without blocking.

    Both streams: once ``sensor run`` imports Airflow (for the Kubernetes client), Airflow's
    logging setup sends our log lines to stdout.
    """

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)


def test_no_planted_secret_in_cli_output(private_nats, tmp_path):
    """``eventsource run`` and ``sensor run`` as processes: nothing they print holds a secret."""
    import time

    import nats as nats_client

    p = Planted()
    server = private_nats(extra_args=["--user", "alice", "--pass", p.nats_pw])
    closed = free_port()
    bus_url = f"nats://alice:{p.nats_pw}@127.0.0.1:{server.port}"
    stream = unique_name("cli")
    subject = unique_name("in")
    es_file = tmp_path / "es.yaml"
    es_file.write_text(yaml.safe_dump({"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource",
                                       "metadata": {"name": "src"}, "spec": {"nats": {
        "e": {"url": bus_url, "subject": subject, "jsonBody": True},
        "refused": {"url": f"nats://alice:{p.wrong_pw}@127.0.0.1:{server.port}", "subject": "nope"}}}}))
    http = RecordingServer(respond=flaky(1, (503, "busy"), (200, {"ok": True}))).start()
    sensor_file = tmp_path / "sensor.yaml"
    doc = sensor_doc(p, server.port, closed, http, http)
    doc["spec"]["triggers"] = [t for t in doc["spec"]["triggers"] if "slack" not in t["template"]]
    sensor_file.write_text(yaml.safe_dump(doc))
    env = {k: v for k, v in os.environ.items() if k != "ARGO_EVENTS_NATS_URL"}
    procs = [subprocess.Popen([CLI, "eventsource", "run", "-f", str(es_file), "--nats", bus_url, "--stream", stream],
                              stderr=subprocess.STDOUT, stdout=subprocess.PIPE, text=True, env=env),
             subprocess.Popen([CLI, "sensor", "run", "-f", str(sensor_file), "--nats", bus_url, "--stream", stream],
                              stderr=subprocess.STDOUT, stdout=subprocess.PIPE, text=True, env=env)]
    errs = [Output(proc) for proc in procs]
    wanted = ["http-down", "nats-refused", "nats-token-down", "http-ok", "nats-ok"]

    def done() -> bool:
        return all(f"trigger {t} firing" in errs[1].text for t in wanted) and "refused" in errs[0].text

    async def publish_until_done() -> None:
        nc = await nats_client.connect(bus_url)
        try:
            deadline = time.monotonic() + 60
            while not done() and time.monotonic() < deadline:
                await nc.publish(subject, b'{"n": 1}')
                await nc.flush()
                await asyncio.sleep(0.3)
        finally:
            await nc.close()

    try:
        asyncio.run(publish_until_done())
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)
        for e in errs:
            e.thread.join(10)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
            proc.stdout.close()
        http.stop()
    assert done(), f"{errs[0].text}\n{errs[1].text}"
    assert f"127.0.0.1:{closed}" in errs[1].text, errs[1].text
    leaks = {name for e in errs for name in p.leaks(e.text)}
    assert not leaks, f"secrets in CLI output: {sorted(leaks)}\n{p.leaking_lines(errs[0].text, errs[1].text)}"


async def test_failure_details_show_only_what_is_safe(monkeypatch):
    """Error paths the firings above do not reach: connection errors of Slack, URL plus basicAuth."""
    from airflow_argo_events.core.actions.http import HttpAction
    from airflow_argo_events.core.actions.simple import SlackAction
    from airflow_argo_events.core.sensor.engine import Engine

    p = Planted()
    closed = free_port()
    monkeypatch.setenv("ARGO_EVENTS_SECRET_SLACK_TOKEN", p.slack_token)
    monkeypatch.setenv("ARGO_EVENTS_SECRET_BASIC_USER", "u")
    monkeypatch.setenv("ARGO_EVENTS_SECRET_BASIC_PASS", p.down_pw)
    sensor = Sensor.model_validate({"metadata": {"name": "s"}, "spec": {
        "dependencies": [{"name": "d", "eventSourceName": "es", "eventName": "e"}],
        "triggers": [
            {"template": {"name": "slack", "slack": {"slackToken": {"name": "slack", "key": "token"},
                                                     "channel": "c", "message": "m"}}},
            {"template": {"name": "both-auths", "http": {
                "url": f"http://bob:{p.http_pw}@127.0.0.1:{closed}/x?token={p.http_token}", "payload": [],
                "basicAuth": {"username": {"name": "basic", "key": "user"},
                              "password": {"name": "basic", "key": "pass"}}}}},
        ]}})
    firings = Engine(sensor).process(new_event(source="es", subject="e", type="webhook", data={}))
    ctx = ActionContext(slack_api_url=f"https://127.0.0.1:{closed}/services/T0/B0/{p.slack_hook}")
    try:
        details = {f.trigger: (await (SlackAction if f.trigger == "slack" else HttpAction)(f.trigger, ctx).execute(f))
                   for f in firings}
    finally:
        await ctx.close()
    assert not details["slack"].ok and details["slack"].detail.startswith(f"slack 127.0.0.1:{closed}: ")
    assert not details["both-auths"].ok
    assert f"http://bob:***@127.0.0.1:{closed}/x?token=***" in details["both-auths"].detail
    leaks = {name for r in details.values() for name in p.leaks(r.detail)}
    assert not leaks, {k: r.detail for k, r in details.items()}


async def test_queue_source_reconnect_lines_hide_broker_credentials(caplog):
    from airflow_argo_events.core.sources.queues import Backoff

    caplog.set_level(logging.WARNING)
    backoff = Backoff(first=0.0)
    await backoff.wait("es/e (amqp)", ConnectionError("cannot reach amqp://guest:brokerpw@rabbit:5672/vhost"))
    await backoff.wait("es/e (redis)", OSError("redis://:redispw@cache:6379/0 refused"))
    assert "brokerpw" not in caplog.text and "redispw" not in caplog.text
    assert "amqp://guest:***@rabbit:5672/vhost" in caplog.text and "redis://:***@cache:6379/0" in caplog.text
