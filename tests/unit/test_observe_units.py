"""The pieces behind sensor status and decision lines, without a bus: notes stay bounded, outcomes read right."""

from __future__ import annotations

import io
import logging

import pytest

from airflow_argo_events.core.actions.executor import Outcome
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.observe.decisions import DecisionLog
from airflow_argo_events.core.observe.metrics import NoMetrics, PrometheusMetrics
from airflow_argo_events.core.observe.record import MAX_RUNNING, MAX_TEXT, Observations, outcome_of


def test_notes_are_bounded_and_cut():
    obs = Observations("i1")
    for i in range(MAX_RUNNING + 50):
        obs.attempt(f"f{i}", "t", 1, False, "x" * 10_000)
    doc = obs.dump({"received": 1})
    assert len(doc["running"]) == MAX_RUNNING
    assert all(len(r["error"]) <= MAX_TEXT for r in doc["running"].values())
    ev = new_event(source="es", subject="a", type="webhook", data={}, id="e1")
    for _ in range(1000):
        obs.saw("dep", ev, 0.0, "data filter: " + "y" * 5000)
    doc = obs.dump({})
    assert list(doc["deps"]) == ["dep"] and len(doc["deps"]["dep"]["verdict"]) <= MAX_TEXT


def test_finished_firing_becomes_the_last_firing_and_leaves_running():
    obs = Observations("i1")
    obs.started("f1", "t")
    obs.attempt("f1", "t", 2, False, "503")
    obs.finished("f1", "t", True, "DAG run etl/argo-events__f1 created", 3, 200, "argo-events__f1")
    doc = obs.dump({})
    assert doc["running"] == {}
    assert doc["firings"]["t"] | {"at": None} == {"id": "f1", "at": None, "ok": True, "attempts": 3, "status": 200,
                                                   "detail": "DAG run etl/argo-events__f1 created",
                                                   "ref": "argo-events__f1"}


@pytest.mark.parametrize(("result", "expected"), [
    (None, (True, "handed over", 0, None, "")),
    (Outcome("f", "t", False, 3, "boom", None, 503), (False, "boom", 3, 503, "")),
    (Outcome("f", "t", True, 1, "ok", None, 200, "run1"), (True, "ok", 1, 200, "run1")),
], ids=["nothing returned", "failed", "dag run"])
def test_outcome_of(result, expected):
    assert outcome_of(result) == expected


def test_decision_log_is_silent_above_info_and_unlimited_at_debug(caplog):
    log = logging.getLogger("airflow_argo_events.sensor.unit")
    d = DecisionLog("s", log, burst=1, rate=0.0, clock=lambda: 0.0)
    log.setLevel(logging.WARNING)
    d.refresh()
    assert not d.wants("k")  # nobody reads INFO: the engine is not asked to word anything
    log.setLevel(logging.DEBUG)
    d.refresh()
    assert all(d.wants("k") for _ in range(100))
    log.setLevel(logging.INFO)
    d.refresh()
    with caplog.at_level(logging.INFO, logger=log.name):
        assert [d.wants("k2") for _ in range(4)] == [True, False, False, False]
        d.flush()
    assert "3 decision line(s) not logged" in caplog.records[-1].getMessage()
    log.setLevel(logging.NOTSET)


def test_metrics_interfaces_agree():
    """The no-op, the Prometheus one (and the Airflow adapter, tested with StatsD) have the same methods."""
    public = {m for m in dir(NoMetrics) if not m.startswith("_")}
    assert public <= {m for m in dir(PrometheusMetrics) if not m.startswith("_")}
    pytest.importorskip("airflow")
    from airflow_argo_events.triggers._metrics import AirflowStatsMetrics

    assert public <= {m for m in dir(AirflowStatsMetrics) if not m.startswith("_")}


@pytest.mark.parametrize("seconds, words", [(None, ""), (0, "0.0s ago"), (9.24, "9.2s ago"), (119.9, "119.9s ago"),
                                            (120, "2m ago"), (300, "5m ago"), (7199, "120m ago"),
                                            (7200, "2.0h ago"), (11160, "3.1h ago")],
                         ids=lambda v: repr(v))
def test_format_age(seconds, words):
    from airflow_argo_events.core.observe.status import format_age

    assert format_age(seconds) == words


def test_the_cli_and_the_ui_page_say_an_age_in_the_same_words():
    """One formatter (core.observe.status.format_age) for `sensor status` and the Airflow UI page."""
    from rich.console import Console

    from airflow_argo_events.cli.sensor_status import render
    from airflow_argo_events.core.observe.status import (
        DependencyState,
        DependencyStatus,
        SeenEvent,
        SensorStatus,
        TriggerStatus,
    )
    from airflow_argo_events.plugins.page import sensors_fragment

    status = SensorStatus(
        sensor="orders", state="sensor-orders", stream="default", started=None, running=True, read_at="t",
        triggers=[TriggerStatus("both", "a && b", True, "waits for b",
                                [DependencyState("a", True, "e1", "t", age_seconds=9.24),
                                 DependencyState("b", False)])],
        dependencies=[DependencyStatus("a", "shop", "order", last_event=SeenEvent("e1", "t", "t", "passed", 300.0))])
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(render(status))
    cli = console.export_text()
    view = {"sensor": "orders", "kind": "SensorTrigger", "dags": [], "hidden_dags": 0, "target_dag": None,
            "task": None, "assets": [], "runs": [], "error": None, "lag": 0, "graph_svg": "", "mermaid": "",
            "status": status.to_dict()}
    html = sensors_fragment([view])
    for words in ("9.2s ago", "5m ago"):
        assert words in cli and words in html, (words, cli, html)
