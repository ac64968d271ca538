"""Inside Airflow the triggers report Argo's metrics through Airflow's Stats: a real StatsD client
(configured as the triggerer configures it) sends them over UDP to a listener of the test's own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)

EMIT = """
from airflow.observability.metrics import stats_utils
from airflow.observability import stats
stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)  # as TriggererJobRunner
from airflow_argo_events.triggers._metrics import AirflowStatsMetrics
m = AirflowStatsMetrics("argo")
m.action_triggered("orders", "notify")
m.action_failed("orders", "notify")
m.action_retries_failed("orders", "notify")
m.action_duration("orders", "notify", 12.5)
m.event_sent("wh", "ex")
m.running("wh", 1)
m.sensor_events("orders", "rejected", 2)
"""


def test_triggers_emit_argo_metrics_through_airflow_statsd():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(30)
        env = {**os.environ, "AIRFLOW__METRICS__STATSD_ON": "True", "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
               "AIRFLOW__METRICS__STATSD_PORT": str(sock.getsockname()[1])}
        proc = subprocess.run([sys.executable, "-c", EMIT], env=env, capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0, proc.stderr[-3000:]
        got = set()
        sock.settimeout(2)
        try:
            while True:
                got.update(sock.recv(65535).decode().splitlines())
        except TimeoutError:
            pass
    assert "airflow.argo_events_action_triggered_total:1|c" in got
    assert "airflow.argo_events_action_failed_total:1|c" in got
    assert "airflow.argo_events_action_retries_failed_total:1|c" in got
    assert "airflow.argo_events_action_duration_milliseconds:12.500000|ms" in got
    assert "airflow.argo_events_events_sent_total:1|c" in got
    assert "airflow.argo_events_event_service_running_total:+1|g" in got
    assert "airflow.argo_events_sensor_events_total:2|c" in got
