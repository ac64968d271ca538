"""``sensor replay``, ``sensor diff`` and ``sensor run --shadow`` on the real NATS, as separate processes."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web

from airflow_argo_events.cli.replay_commands import parse_when
from airflow_argo_events.core.bus import EventBus, StreamSettings
from airflow_argo_events.core.bus.embedded import free_port
from airflow_argo_events.core.bus.settings import NatsSettings
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.sensor.engine import firing_id
from airflow_argo_events.testing.plugin import unique_name

CLI = str(Path(sys.executable).parent / "argo-events")

SENSOR = """
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {{name: orders}}
spec:
  dependencies:
    - name: order
      eventSourceName: shop
      eventName: order
{filter}
    - name: payment
      eventSourceName: shop
      eventName: payment
  triggers:
    - template:
        name: ship
        conditions: "order && payment"
        http:
          url: {url}
          method: POST
          payload:
            - src: {{dependencyName: order, dataKey: body.id}}
              dest: order
"""
# The old version's bug: it only took orders from the EU.
EU_ONLY = """      filters:
        data:
          - path: body.region
            type: string
            value: ["eu"]"""


def write_sensor(tmp_path: Path, name: str, url: str, filtered: bool) -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(SENSOR.format(filter=EU_ONLY if filtered else "", url=url)))
    return p


async def publish(nats_url: str, stream: str, items: list[tuple[str, dict]]) -> list[str]:
    ids = []
    async with EventBus(NatsSettings.from_url(nats_url), StreamSettings(name=stream, replicas=1)) as bus:
        for subject, body in items:
            ev = new_event(source="shop", subject=subject, type="webhook", data={"body": body})
            await bus.publish(ev)
            ids.append(ev.id)
    return ids


def cli(*args: str, nats_url: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args, "--nats", nats_url], capture_output=True, text=True, timeout=timeout)


HISTORY = [("order", {"id": 1, "region": "eu"}), ("payment", {"id": 1}),
           ("order", {"id": 2, "region": "us"}), ("payment", {"id": 2}),
           ("order", {"id": 3, "region": "us"}), ("payment", {"id": 3})]


@pytest.fixture
def history(nats_url: str) -> tuple[str, list[str], datetime]:
    stream = unique_name("replay")
    before = datetime.now(timezone.utc)
    ids = asyncio.run(publish(nats_url, stream, HISTORY))
    return stream, ids, before


async def receiver(record: Callable[[web.Request], object]) -> tuple[web.AppRunner, int]:
    """An HTTP action's target on a free port: POST /x is recorded and answered 200."""

    async def hook(request: web.Request) -> web.Response:
        record(request)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/x", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def firings(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_replay_finds_what_a_fixed_sensor_would_have_fired(tmp_path, nats_url, history):
    stream, ids, before = history
    new = write_sensor(tmp_path, "new.yaml", "http://127.0.0.1:9/x", filtered=False)
    old = write_sensor(tmp_path, "old.yaml", "http://127.0.0.1:9/x", filtered=True)
    since = (before - timedelta(seconds=1)).isoformat()

    out = cli("sensor", "replay", "-f", str(new), "--from", since, "--stream", stream, nats_url=nats_url)
    assert out.returncode == 0, out.stderr
    got = firings(out.stdout)
    assert [f["events"] for f in got] == [{"order": ids[0], "payment": ids[1]}, {"order": ids[2], "payment": ids[3]},
                                         {"order": ids[4], "payment": ids[5]}]
    assert [f["resolved"]["order"] for f in got] == ["1", "2", "3"]
    assert "replayed 6 event(s)" in out.stderr and "3 firing(s)" in out.stderr

    old_out = cli("sensor", "replay", "-f", str(old), "--from", since, "--stream", stream, nats_url=nats_url)
    assert [f["resolved"]["order"] for f in firings(old_out.stdout)] == ["1"]

    diff = cli("sensor", "diff", str(new), str(old), "--from", since, "--stream", stream, nats_url=nats_url)
    assert diff.returncode == 1, diff.stderr
    lines = diff.stdout.splitlines()
    assert all(line.startswith("+") for line in lines)
    assert sorted(json.loads(line[1:])["resolved"]["order"] for line in lines) == ["2", "3"]
    same = cli("sensor", "diff", str(new), str(new), "--from", since, "--stream", stream, nats_url=nats_url)
    assert same.returncode == 0 and same.stdout == "", same.stderr


def test_replay_gives_each_firing_the_id_the_live_sensor_gives(tmp_path, nats_url, history):
    """Ids depend on the sensor, trigger and event ids only: what the live sensor ran has the
    same id here, so --execute is a no-op for it wherever the action honours the id."""
    stream, ids, before = history
    path = write_sensor(tmp_path, "s.yaml", "http://127.0.0.1:9/x", filtered=False)
    out = cli("sensor", "replay", "-f", str(path), "--from", before.isoformat(), "--stream", stream,
              nats_url=nats_url)
    pairs = [{"order": SimpleNamespace(id=ids[i]), "payment": SimpleNamespace(id=ids[i + 1])} for i in (0, 2, 4)]
    assert [f["id"] for f in firings(out.stdout)] == [firing_id("orders", "ship", p) for p in pairs]  # type: ignore[arg-type]


def test_replay_execute_runs_each_action_once_per_firing_id(tmp_path, nats_url, history):
    stream, ids, before = history
    keys: list[str] = []

    async def scenario() -> None:
        runner, port = await receiver(lambda request: keys.append(request.headers["Idempotency-Key"]))
        path = write_sensor(tmp_path, "s.yaml", f"http://127.0.0.1:{port}/x", filtered=False)
        try:
            for _ in range(2):
                proc = await asyncio.create_subprocess_exec(
                    CLI, "sensor", "replay", "-f", str(path), "--from", before.isoformat(), "--stream", stream,
                    "--execute", "--nats", nats_url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
                out, err = await asyncio.wait_for(proc.communicate(), 60)
                assert proc.returncode == 0, err.decode()
                assert "actions executed" in err.decode()
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
    # Two replays, three firings each, the same three keys: a receiver that honours the key
    # (Airflow's dag_run_id, an HTTP service) runs each once.
    assert len(keys) == 6
    assert keys[:3] == keys[3:] and len(set(keys)) == 3


def test_replay_refuses_a_start_older_than_what_retention_kept(tmp_path, nats_url):
    stream = unique_name("replay")

    async def fill() -> None:
        settings = StreamSettings(name=stream, replicas=1, max_msgs=3)  # keeps the last 3 of 6
        async with EventBus(NatsSettings.from_url(nats_url), settings) as bus:
            for subject, body in HISTORY:
                await bus.publish(new_event(source="shop", subject=subject, type="webhook", data={"body": body}))

    asyncio.run(fill())
    path = write_sensor(tmp_path, "s.yaml", "http://127.0.0.1:9/x", filtered=False)
    out = cli("sensor", "replay", "-f", str(path), "--from", "1h", "--stream", stream, nats_url=nats_url)
    assert out.returncode == 2
    assert "older than the stream's history" in out.stderr and "3 message(s) from" in out.stderr
    assert "the 3 message(s) before" in out.stderr and "are gone" in out.stderr
    assert "Traceback" not in out.stderr
    bad = cli("sensor", "replay", "-f", str(path), "--from", "yesterday", "--stream", stream, nats_url=nats_url)
    assert bad.returncode == 2 and "--from/--to" in bad.stderr


def test_replay_of_a_stream_that_lost_nothing_takes_any_start(tmp_path, nats_url, history):
    stream, _, _ = history
    path = write_sensor(tmp_path, "s.yaml", "http://127.0.0.1:9/x", filtered=False)
    out = cli("sensor", "replay", "-f", str(path), "--from", "24h", "--stream", stream, nats_url=nats_url)
    assert out.returncode == 0, out.stderr
    assert len(firings(out.stdout)) == 3


def test_replay_stops_at_to_and_skips_what_is_not_a_cloudevent(tmp_path, nats_url):
    stream = unique_name("replay")

    async def fill() -> tuple[datetime, datetime]:
        async with EventBus(NatsSettings.from_url(nats_url), StreamSettings(name=stream, replicas=1)) as bus:
            start = datetime.now(timezone.utc)
            for subject, body in HISTORY[:2]:
                await bus.publish(new_event(source="shop", subject=subject, type="webhook", data={"body": body}))
            await bus.publish_raw(f"{stream}.shop.order", b"{not json")
            await asyncio.sleep(1.2)
            middle = datetime.now(timezone.utc)
            await asyncio.sleep(0.2)
            for subject, body in HISTORY[2:4]:
                await bus.publish(new_event(source="shop", subject=subject, type="webhook", data={"body": body}))
            return start, middle

    start, middle = asyncio.run(fill())
    path = write_sensor(tmp_path, "s.yaml", "http://127.0.0.1:9/x", filtered=False)
    out = cli("sensor", "replay", "-f", str(path), "--from", start.isoformat(), "--to", middle.isoformat(),
              "--stream", stream, nats_url=nats_url)
    assert out.returncode == 1  # one message was skipped
    assert [f["resolved"]["order"] for f in firings(out.stdout)] == ["1"]
    assert "skipped: not a CloudEvent" in out.stderr
    assert "replayed 3 event(s)" in out.stderr


def test_shadow_run_prints_what_it_would_fire_and_runs_nothing(tmp_path, nats_url):
    stream = unique_name("shadow")
    hits: list[str] = []
    ready = tmp_path / "ready"

    async def scenario() -> str:
        runner, port = await receiver(lambda request: hits.append(request.path))
        path = write_sensor(tmp_path, "s.yaml", f"http://127.0.0.1:{port}/x", filtered=False)
        proc = await asyncio.create_subprocess_exec(
            CLI, "sensor", "run", "-f", str(path), "--shadow", "--stream", stream, "--nats", nats_url,
            "--ready-file", str(ready), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            for _ in range(600):
                if ready.exists():
                    break
                await asyncio.sleep(0.05)
            assert ready.read_text().startswith("shadow-orders-"), "a shadow keeps its own state"
            await publish(nats_url, stream, HISTORY[:4])
            lines: list[str] = []
            while len(lines) < 2:
                line = await asyncio.wait_for(proc.stdout.readline(), 30)  # type: ignore[union-attr]
                assert line, "shadow sensor exited early"
                lines.append(line.decode())
            return "".join(lines)
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
            await runner.cleanup()

    out = asyncio.run(scenario())
    assert [f["resolved"]["order"] for f in firings(out)] == ["1", "2"]
    assert hits == []


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-12-01T08:00:00Z", datetime(2026, 12, 1, 8, tzinfo=timezone.utc)),
    ("2026-12-01T08:00:00+01:00", datetime(2026, 12, 1, 7, tzinfo=timezone.utc)),
    ("2026-12-01T08:00:00", datetime(2026, 12, 1, 8, tzinfo=timezone.utc)),
    ("90m", datetime(2026, 12, 2, 10, 30, tzinfo=timezone.utc)),
    ("1h30m", datetime(2026, 12, 2, 10, 30, tzinfo=timezone.utc)),
])
def test_parse_when(text, expected):
    assert parse_when(text, datetime(2026, 12, 2, 12, tzinfo=timezone.utc)) == expected


@pytest.mark.parametrize("text", ["yesterday", "", "12:00"])
def test_parse_when_refuses(text):
    with pytest.raises(ValueError, match="neither an RFC 3339 time nor a duration"):
        parse_when(text)
