"""What a new user runs in the first hour ends by itself, answers in one line, and never shows a traceback."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from airflow_argo_events.core.actions.base import ActionContext
from airflow_argo_events.core.actions.executor import ActionRunner
from airflow_argo_events.core.actions.k8s import NO_CONFIG
from airflow_argo_events.core.bus.embedded import free_port
from airflow_argo_events.core.events import event_from_json
from airflow_argo_events.core.sensor.engine import Engine
from airflow_argo_events.core.spec.loader import load_one
from airflow_argo_events.testing.plugin import unique_name

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "argo-events")
SENSOR = ROOT / "examples" / "sensors" / "trigger-conditions.yaml"
EVENTS = ROOT / "examples" / "events" / "trigger-conditions.jsonl"


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_tail_until_idle_records_the_stream_and_exits_0(nats_url, tmp_path):
    env = {**os.environ, "ARGO_EVENTS_NATS_URL": nats_url}
    stream = unique_name("rec")
    ids = [cli("publish", "--stream", stream, "--source", "webhook-a", "--event", f"example0{n}",
               "--data", json.dumps({"body": {"message": str(n)}}), env=env).stdout.strip() for n in (1, 2)]
    out = cli("tail", "--stream", stream, "--all", "--until-idle", "1", env=env)
    assert out.returncode == 0, out.stderr
    assert "2 event(s); none for 1s, done" in out.stderr
    recorded = tmp_path / "events.jsonl"
    recorded.write_text(out.stdout)
    assert [json.loads(line)["id"] for line in out.stdout.splitlines()] == ids
    replay = cli("sensor", "test", str(SENSOR), "--events", str(recorded))  # the recording replays as is
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout.splitlines()[0])["trigger"] == "trigger01"


def test_tail_timeout_still_means_exit_1(nats_url):
    env = {**os.environ, "ARGO_EVENTS_NATS_URL": nats_url}
    out = cli("tail", "--stream", unique_name("rec"), "--timeout", "1", env=env)
    assert out.returncode == 1
    assert "none for 1s (--timeout)" in out.stderr


@pytest.mark.parametrize("path", ["missing.jsonl", "."])
def test_sensor_test_with_unreadable_events_is_one_line_exit_2(tmp_path, path):
    out = subprocess.run([CLI, "sensor", "test", str(SENSOR), "--events", path], capture_output=True, text=True,
                         cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith(f"--events {path}: ")
    assert "Traceback" not in out.stderr


def test_sensor_test_with_non_utf8_events_skips_the_line(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\xff\xfe{not json\n" + EVENTS.read_bytes())
    out = cli("sensor", "test", str(SENSOR), "--events", str(events))
    assert out.returncode == 1  # one bad line
    assert "Traceback" not in out.stderr
    assert f"{events}:1: skipped" in out.stderr
    assert len(out.stdout.splitlines()) == 3  # the good lines still fire


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} not created"
        time.sleep(0.1)


def test_receive_prints_each_request_as_one_json_line(tmp_path):
    port = free_port()
    ready = tmp_path / "ready"
    proc = subprocess.Popen([CLI, "receive", "--port", str(port), "--count", "2", "--ready-file", str(ready)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(ready, proc)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/hooks/x?a=1", data=b'{"n": 1}', method="POST",
                                     headers={"Content-Type": "application/json", "Idempotency-Key": "k1",
                                              "Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert json.loads(resp.read()) == {"ok": True}
        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/t", data=b"\xff not json",
                                                           method="PUT"), timeout=30) as resp:
            assert resp.status == 200
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert lines == [
        {"method": "POST", "path": "/hooks/x", "query": {"a": ["1"]}, "idempotency_key": "k1", "body": {"n": 1}},
        {"method": "PUT", "path": "/t", "body": "\ufffd not json"},
    ]
    assert "s3cret" not in out + err
    assert not ready.exists()  # removed on exit


def test_receive_on_a_busy_port_is_one_line():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        out = cli("receive", "--port", str(s.getsockname()[1]))
    assert out.returncode == 1
    assert out.stderr.strip().startswith("receive: cannot listen on 127.0.0.1:")
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_sensor_run_ready_file_and_k8s_without_a_cluster(nats_url, tmp_path):
    """--ready-file appears once events count; the argoWorkflow trigger fails in one line without a cluster."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env["ARGO_EVENTS_NATS_URL"] = nats_url
    stream = unique_name("ready")
    doc = SENSOR.read_text().replace("http://127.0.0.1:9099", f"http://127.0.0.1:{free_port()}")
    sensor = tmp_path / "sensor.yaml"
    sensor.write_text(doc)
    ready, log = tmp_path / "ready", tmp_path / "sensor.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([CLI, "sensor", "run", "-f", str(sensor), "--stream", stream,
                                 "--ready-file", str(ready)], stderr=err, env=env, text=True)
    try:
        _wait_for(ready, proc)
        for source, event, msg in (("webhook-a", "example02", "two"), ("webhook-b", "example03", "three")):
            assert cli("publish", "--stream", stream, "--source", source, "--event", event,
                       "--data", json.dumps({"body": {"message": msg}}), env=env).returncode == 0
        deadline = time.monotonic() + 90
        while "trigger03" not in log.read_text() or "failed after" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        proc.terminate()
        proc.wait(60)
    finally:
        proc.kill()
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "Traceback" not in text
    assert "trigger trigger03 firing" in text and f"failed after 1 attempt(s): {NO_CONFIG}" in text
    assert "trigger trigger01 firing" in text  # the other triggers ran
    assert not ready.exists()


def _trigger03_firing():
    engine = Engine(load_one(SENSOR, "Sensor"))
    firings = [f for line in EVENTS.read_text().splitlines() for f in engine.process(event_from_json(json.loads(line)))]
    return engine, next(f for f in firings if f.trigger == "trigger03")


async def test_k8s_action_without_configuration_is_one_line(monkeypatch):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    engine, firing = _trigger03_firing()
    outcome = await ActionRunner(engine, ActionContext()).run(firing)
    assert not outcome.ok and outcome.detail == NO_CONFIG


async def test_k8s_client_config_error_is_one_line_not_a_traceback(caplog):
    class ConfigException(Exception):  # what kubernetes.config raises, matched by name
        pass

    class NoConfigApi:
        async def create(self, obj, namespace):
            raise ConfigException("Invalid kube-config file. No configuration found.\nmore detail")

    engine, firing = _trigger03_firing()
    with caplog.at_level(logging.INFO, logger="airflow_argo_events"):
        outcome = await ActionRunner(engine, ActionContext(k8s_factory=lambda _t: NoConfigApi())).run(firing)
    assert not outcome.ok
    assert outcome.detail == "Kubernetes configuration: Invalid kube-config file. No configuration found.; skipped"
    assert outcome.attempts == 1
    assert all(r.exc_info is None for r in caplog.records)
