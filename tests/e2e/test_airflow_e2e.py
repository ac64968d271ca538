"""End to end in a real Airflow 3 (SQLite, LocalExecutor, scheduler + dag-processor + triggerer + api-server).

One Airflow for the session (conftest.py); scenarios run in order. Figures are printed (run with -s).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from datetime import datetime, timezone

import pytest

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.events import new_event

pytestmark = [pytest.mark.timeout(600), pytest.mark.e2e]


def publish(nats_url, stream, events):
    async def go():
        async with EventBus(NatsSettings.from_url(nats_url), StreamSettings(name=stream, replicas=1)) as bus:
            stamps = []
            for ev in events:
                stamps.append(datetime.now(timezone.utc))
                await bus.publish(ev)
            return stamps

    return asyncio.run(go())


def ev(subject, data=None, id=None):
    return new_event(source="e2e", subject=subject, type="webhook", data=data or {}, id=id)


def parse_ts(text):
    if not text:
        return None
    t = datetime.fromisoformat(str(text).replace(" ", "T"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def test_producers_and_consumer_one_run_per_pair(airflow):
    for n in (1, 2):
        airflow.trigger("producer_a", {"n": n})
        airflow.wait_for(lambda n=n: all(r[1] == "success" for r in airflow.runs("producer_a")) and
                         len(airflow.runs("producer_a")) == n, timeout=90, what="producer_a")
        airflow.trigger("producer_b", {"n": n})
        airflow.wait_for(lambda n=n: len(airflow.runs("consumer")) == n, timeout=90, what=f"consumer run {n}")
    runs = airflow.wait_for(lambda: [r for r in airflow.runs("consumer") if r[1] == "success"] if all(
        r[1] == "success" for r in airflow.runs("consumer")) else None, timeout=90, what="consumer success")
    assert len(runs) == 2
    assert all(r[0].startswith("argo-events__") for r in runs)


def test_burst_of_20_gives_exactly_20_runs(airflow, nats_url, stream_name):
    events = [ev("burst", {"i": i}) for i in range(20)]
    t0 = time.monotonic()
    publish(nats_url, stream_name, events)
    assert time.monotonic() - t0 < 1.0, "the burst must fit in one second"
    airflow.wait_for(lambda: len(airflow.runs("burst_target")) >= 20, timeout=120, what="20 burst runs")
    time.sleep(3)  # anything extra would show up now
    runs = airflow.runs("burst_target")
    assert len(runs) == 20, f"{len(runs)} runs for 20 firings"
    assert len({r[0] for r in runs}) == 20
    done = airflow.wait_for(lambda: all(r[1] == "success" for r in airflow.runs("burst_target")), timeout=180,
                            what="burst runs finished")
    assert done
    watch = airflow.runs("burst_watch")
    print(f"\nburst: 20 firings -> 20 burst_target runs; the asset-scheduled burst_watch got {len(watch)} run(s)")


def test_event_sensor_waits_and_another_times_out(airflow, nats_url, stream_name):
    run_id = airflow.trigger("waiter")

    def states():
        return dict(airflow.query("select task_id, state from task_instance where dag_id='waiter' and run_id=?",
                                  run_id))

    airflow.wait_for(lambda: states().get("wait") == "deferred" and states().get("rescheduled") in (
        "up_for_reschedule", "running"), timeout=90, what="wait deferred and rescheduled poking")
    time.sleep(1)
    publish(nats_url, stream_name, [ev("go", {"ok": False}), ev("go", {"ok": True, "v": 42})])
    airflow.wait_for(lambda: airflow.query("select state from dag_run where dag_id='waiter' and run_id=?", run_id)[0][0]
                     in ("success", "failed"), timeout=120, what="waiter finished")
    assert states() == {"wait": "success", "rescheduled": "success", "never": "skipped", "after": "success"}, states()
    # The trigger's own lines (its consumers, the firing) are in the task's log, as the UI shows it.
    logs = airflow.api("GET", f"/dags/waiter/dagRuns/{run_id}/taskInstances/wait/logs/1")
    text = json.dumps(logs)
    assert "sensor task-wait: listening on" in text and "sensor task-wait: firing" in text, text[-3000:]


def test_triggerer_killed_during_a_stream(airflow, nats_url, stream_name):
    before = len(airflow.runs("burst_target"))
    first = [ev("burst", {"phase": 1, "i": i}) for i in range(15)]
    second = [ev("burst", {"phase": 2, "i": i}) for i in range(15)]
    publish(nats_url, stream_name, first)
    time.sleep(0.3)
    airflow.kill("triggerer")  # SIGKILL mid-stream
    publish(nats_url, stream_name, second)
    airflow.start_component("triggerer")
    expected = before + 30
    airflow.wait_for(lambda: len(airflow.runs("burst_target")) >= expected, timeout=180,
                     what="runs after triggerer restart")
    time.sleep(5)
    runs = airflow.runs("burst_target")
    print(f"\ntriggerer SIGKILL: DAG runs expected {30}, created {len(runs) - before}, "
          f"duplicated {len(runs) - len({r[0] for r in runs})}")
    assert len(runs) == expected
    assert len({r[0] for r in runs}) == len(runs)


def test_latency_rest_path_vs_plain_asset_watcher(airflow, nats_url, stream_name):
    rest, plain = [], []
    for i in range(8):
        before_b, before_p = len(airflow.runs("burst_target")), len(airflow.runs("plain_consumer"))
        (t_b,) = publish(nats_url, stream_name, [ev("burst", {"lat": i})])
        runs = airflow.wait_for(lambda b=before_b: airflow.runs("burst_target")[b:], timeout=60, what="rest run")
        rest.append((parse_ts(runs[0][3]) - t_b).total_seconds() if runs[0][3] else None)
        (t_p,) = publish(nats_url, stream_name, [ev("plain", {"lat": i})])
        runs = airflow.wait_for(lambda b=before_p: airflow.runs("plain_consumer")[b:], timeout=60, what="asset run")
        plain.append((parse_ts(runs[0][3]) - t_p).total_seconds() if runs[0][3] else None)
        time.sleep(1.5)
    rest = [x for x in rest if x is not None]
    plain = [x for x in plain if x is not None]

    def pct(xs, q):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    print(f"\npublish -> DAG run queued: REST path median {statistics.median(rest):.2f}s p95 {pct(rest, .95):.2f}s; "
          f"plain AssetWatcher median {statistics.median(plain):.2f}s p95 {pct(plain, .95):.2f}s")
    assert rest and plain
