"""``argo-events publish`` and ``tail`` end to end, as separate processes on a real NATS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from airflow_argo_events.testing.plugin import unique_name

CLI = str(Path(sys.executable).parent / "argo-events")


def test_publish_then_tail_sees_the_event(nats_url):
    stream = unique_name("cli")
    env = {**os.environ, "ARGO_EVENTS_NATS_URL": nats_url}
    tail = subprocess.Popen(
        [CLI, "tail", "--source", "shop", "--count", "2", "--stream", stream, "--timeout", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        # wait until tail has its consumer (it prints to stderr once subscribed)
        line = tail.stderr.readline()
        assert "tailing" in line, line
        ids = []
        for n in (1, 2):
            out = subprocess.run(
                [CLI, "publish", "--source", "shop", "--event", "order", "--data", json.dumps({"n": n}),
                 "--stream", stream], capture_output=True, text=True, env=env, timeout=60,
            )
            assert out.returncode == 0, out.stderr
            ids.append(out.stdout.strip())
        stdout, _ = tail.communicate(timeout=60)
    finally:
        tail.kill()
    events = [json.loads(x) for x in stdout.splitlines()]
    assert [e["id"] for e in events] == ids
    assert [e["data"] for e in events] == [{"n": 1}, {"n": 2}]
    assert all(e["source"] == "shop" and e["subject"] == "order" and e["type"] == "webhook" for e in events)


def test_publish_with_bad_json_exits_2():
    out = subprocess.run([CLI, "publish", "--source", "s", "--event", "e", "--data", "{nope"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "--data: not JSON" in out.stderr


def test_publish_to_unreachable_nats_is_one_line():
    from airflow_argo_events.core.bus.embedded import free_port

    port = free_port()
    start = time.monotonic()
    out = subprocess.run([CLI, "publish", "--source", "s", "--event", "e", "--nats", f"nats://127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert f"127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr
    assert time.monotonic() - start < 30
