"""The observe commands as a user runs them: sensor status / list, --watch, --log-format json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_argo_events.cli.main import main
from airflow_argo_events.testing.plugin import unique_name

pytestmark = pytest.mark.timeout(180)
BIN = Path(sys.executable).parent / "argo-events"

SENSOR = """
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {{name: {name}}}
spec:
  dependencies:
    - name: order
      eventSourceName: shop
      eventName: order
      filters:
        data: [{{path: body.amount, type: number, comparator: ">", value: ["100"]}}]
    - {{name: pay, eventSourceName: shop, eventName: pay}}
  triggers:
    - template: {{name: ship, conditions: "order && pay", log: {{}}}}
"""


def test_status_needs_a_name_or_a_file(capsys):
    assert main(["sensor", "status"]) == 2
    assert "give a sensor NAME or -f SENSOR.yaml" in capsys.readouterr().err


def test_status_of_an_unknown_sensor_is_one_line(nats_url, monkeypatch, capsys):
    monkeypatch.setenv("ARGO_EVENTS_NATS_URL", nats_url)
    assert main(["sensor", "status", unique_name("nosuch")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no sensor state" in err and "Traceback" not in err


def test_live_sensor_status_list_watch_and_json_logs(nats_url, tmp_path):
    name = unique_name("cli")
    stream = unique_name("obs")
    (tmp_path / "s.yaml").write_text(SENSOR.format(name=name))
    env = {**os.environ, "ARGO_EVENTS_NATS_URL": nats_url, "NO_COLOR": "1"}

    def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(BIN), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    with open(tmp_path / "sensor.log", "w") as log:
        sensor = subprocess.Popen([str(BIN), "--log-format", "json", "sensor", "run", "-f", "s.yaml", "--stream",
                                   stream, "--ready-file", "ready"], cwd=tmp_path, env=env, stderr=log)
    watch: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "ready").exists():
            assert sensor.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        for amount in (5, 500):
            cli("publish", "--stream", stream, "--source", "shop", "--event", "order",
                "--data", json.dumps({"body": {"amount": amount}}))
        while True:
            doc = json.loads(cli("sensor", "status", "-f", "s.yaml", "--stream", stream, "--json").stdout)
            if doc["counters"].get("received") == 2:
                break
            assert time.monotonic() < deadline
            time.sleep(0.3)
        text = cli("sensor", "status", name).stdout
        assert 'trigger ship: condition "order && pay": waits for pay' in text
        assert "order: satisfied by event" in text and "pay: waiting" in text
        assert "counters: received 2, rejected 1," in text
        listed = cli("sensor", "list").stdout
        assert any(line.startswith(name + " ") and " cli " in line for line in listed.splitlines())
        watch = subprocess.Popen([str(BIN), "sensor", "status", name, "--watch", "--interval", "0.3"],
                                 cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = []
        for line in watch.stdout:  # frames keep coming (piped: one after the other)
            seen.append(line)
            if sum("waits for pay" in x for x in seen) == 2:
                break
        watch.send_signal(signal.SIGINT)
        watch.communicate(timeout=30)
        assert watch.returncode == 130
    finally:
        if watch is not None and watch.poll() is None:  # a failed test leaves no process behind
            watch.kill()
            watch.communicate(timeout=30)
        sensor.send_signal(signal.SIGTERM)
        sensor.wait(timeout=60)
    lines = [json.loads(line) for line in (tmp_path / "sensor.log").read_text().splitlines() if line.strip()]
    decisions = [x["message"] for x in lines if "dependency order" in x["message"]]
    assert len(decisions) == 2
    assert "rejected: data filter: body.amount=5 > ['100'] is false" in decisions[0]
    assert decisions[1].endswith("dependency order: passed; ship: saved order; waits for pay")
    assert all(set(x) >= {"time", "level", "logger", "message"} for x in lines)
    assert "received 2 message(s)" in lines[-2]["message"] or any("received 2 message(s)" in x["message"]
                                                                  for x in lines)
    assert not any("ARGO_EVENTS_NATS_URL" in x["message"] for x in lines)  # named by URL, not by variable
    cli("state", "delete", [x for x in listed.splitlines() if x.startswith(name + " ")][0].split()[1], "--yes")
