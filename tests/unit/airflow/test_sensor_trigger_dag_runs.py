"""SensorTrigger(dag_id=...) against a local fake Airflow REST API: an API that is away is waited
for without end (the firing is never dropped); a refusal is one error line and the dead-letter path."""

from __future__ import annotations

import asyncio
import logging

import pytest

from airflow_argo_events.core.bus.embedded import free_port
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.sensor.engine import Engine
from airflow_argo_events.core.spec.loader import parse_manifest
from airflow_argo_events.triggers import SensorTrigger
from tests.support import AirflowContract, RecordingServer

pytestmark = pytest.mark.timeout(60)
DEP = {"name": "d", "eventSourceName": "shop", "eventName": "order"}
LOGGER = "airflow_argo_events.triggers.sensor"


def _fire(trigger: SensorTrigger):
    engine = Engine(parse_manifest(trigger.sensor, None, "Sensor"))
    (firing,) = engine.process(new_event(source="shop", subject="order", type="webhook", data={"msg": "hi"}))
    return engine, firing


class Sleeps:
    """Counts the pauses instead of taking them; runs ``at[n]`` before returning from pause n."""

    def __init__(self, at=None):
        self.calls: list[float] = []
        self.at = at or {}

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        hook = self.at.get(len(self.calls))
        if hook is not None:
            await asyncio.to_thread(hook)
        await asyncio.sleep(0)


@pytest.fixture
def api_port(monkeypatch):
    port = free_port()
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", f"http://admin:pw@127.0.0.1:{port}")
    return port


def _dag_runs(requests):
    return [r for r in requests if r.path.endswith("/dagRuns")]


async def test_api_away_is_waited_for_and_the_run_is_created_once(api_port, caplog):
    """Regression: after 40 attempts (~9 minutes) the firing was dropped with 'gave up'."""
    contract = AirflowContract(password="pw")
    contract.server.port = api_port
    trigger = SensorTrigger(dependencies=[DEP], dag_id="target", airflow_conn_id="airflow_api")
    action = await trigger._dag_run_action()
    engine, firing = _fire(trigger)
    sleeps = Sleeps(at={60: contract.start})  # the API comes back after 60 refused attempts
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    try:
        assert await trigger._create_dag_run(action, firing, engine, sleep=sleeps) is True
        assert list(contract.runs) == [("target", f"argo-events__{firing.id}")]
        # A re-run of the same firing (a restart before the journal was cleared) finds its run.
        assert await trigger._create_dag_run(action, firing, engine, sleep=sleeps) is True
        assert len(contract.runs) == 1
    finally:
        await action.ctx.close()
        if contract.server.requests:
            contract.stop()
    assert len(sleeps.calls) == 60
    assert max(sleeps.calls) <= trigger.backoff_cap
    assert sleeps.calls[-1] >= trigger.backoff_cap / 2  # capped, with jitter, never growing past the cap
    assert len(set(sleeps.calls)) > 10  # jittered: a fleet of triggers does not retry in lockstep
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    # One line per attempt would be 60; the rate decays (attempts 1, 2, 4, 8, 16, 32).
    assert len(warnings) == 6, [r.getMessage() for r in warnings]
    assert all(firing.id in r.getMessage() and "target" in r.getMessage() for r in warnings)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_5xx_and_429_are_retried(api_port):
    contract = AirflowContract(password="pw")
    contract.server.port = api_port
    answers = iter([(503, "starting"), (502, "proxy"), (429, "slow down")])
    real = contract._respond
    contract.server.respond = lambda r: next(answers, None) or real(r) if r.path.endswith("/dagRuns") else real(r)
    contract.start()
    trigger = SensorTrigger(dependencies=[DEP], dag_id="target", airflow_conn_id="airflow_api")
    action = await trigger._dag_run_action()
    engine, firing = _fire(trigger)
    try:
        assert await trigger._create_dag_run(action, firing, engine, sleep=Sleeps()) is True
    finally:
        await action.ctx.close()
        contract.stop()
    assert len(_dag_runs(contract.server.requests)) == 4
    assert len(contract.runs) == 1


@pytest.mark.parametrize("status", [404, 403, 400, 422])
async def test_refusal_is_one_error_line_and_never_retried(api_port, caplog, status):
    contract = AirflowContract(password="pw")
    contract.server.port = api_port
    real = contract._respond
    contract.server.respond = lambda r: (status, {"detail": "nope"}) if r.path.endswith("/dagRuns") else real(r)
    contract.start()
    trigger = SensorTrigger(dependencies=[DEP], dag_id="missing", airflow_conn_id="airflow_api")
    action = await trigger._dag_run_action()
    engine, firing = _fire(trigger)
    sleeps = Sleeps()
    caplog.set_level(logging.INFO)
    try:
        assert await trigger._create_dag_run(action, firing, engine, sleep=sleeps) is False
    finally:
        await action.ctx.close()
        contract.stop()
    assert len(_dag_runs(contract.server.requests)) == 1 and not sleeps.calls
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    line = errors[0].getMessage()
    assert firing.id in line and "missing" in line and f"HTTP {status}" in line and "failed firing" in line
    assert "\n" not in line and errors[0].exc_info is None
    assert trigger.failed_firings == [(firing.id, pytest.approx(trigger.failed_firings[0][1]))]


async def test_refusal_goes_to_the_dlq_trigger(api_port, caplog):
    dlq = RecordingServer().start()
    contract = AirflowContract(password="pw")
    contract.server.port = api_port
    real = contract._respond
    contract.server.respond = lambda r: (404, {"detail": "no DAG"}) if r.path.endswith("/dagRuns") else real(r)
    contract.start()
    sensor = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": "dlq"},
              "spec": {"dependencies": [DEP], "triggers": [{
                  "template": {"name": "fire", "log": {}}, "atLeastOnce": True,
                  "dlqTrigger": {"atLeastOnce": True, "template": {"name": "lost", "http": {
                      "url": dlq.url + "/dlq", "payload": [
                      {"src": {"dependencyName": "d", "dataKey": "msg"}, "dest": "lost"}]}}}}]}}
    trigger = SensorTrigger(sensor=sensor, dag_id="missing", airflow_conn_id="airflow_api")
    action = await trigger._dag_run_action()
    engine, firing = _fire(trigger)
    caplog.set_level(logging.INFO)
    try:
        assert await trigger._create_dag_run(action, firing, engine, sleep=Sleeps()) is False
    finally:
        await action.ctx.close()
        contract.stop()
        dlq.stop()
    assert [r.path for r in dlq.requests] == ["/dlq"]
    assert dlq.requests[0].json() == {"lost": "hi"}
    (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "dlqTrigger" in error.getMessage()


async def test_a_failing_connection_lookup_is_retried_with_the_last_good_answer(api_port, monkeypatch):
    """In Airflow 3 the triggerer reads connections through the API server, so the lookup fails
    while the API is away: that must be a retry, not a crash of the firing."""
    contract = AirflowContract(password="pw")
    contract.server.port = api_port
    contract.start()
    trigger = SensorTrigger(dependencies=[DEP], dag_id="target", airflow_conn_id="airflow_api")
    action = await trigger._dag_run_action()
    engine, firing = _fire(trigger)
    try:
        assert await trigger._create_dag_run(action, firing, engine, sleep=Sleeps()) is True
        monkeypatch.delenv("AIRFLOW_CONN_AIRFLOW_API")  # the lookup now fails; the last answer is used
        _, second = _fire(trigger)
        assert await trigger._create_dag_run(action, second, engine, sleep=Sleeps()) is True
        assert len(contract.runs) == 2
        # No good answer yet: retried (not a crash), until the connection can be read.
        fresh = await SensorTrigger(dependencies=[DEP], dag_id="target", airflow_conn_id="airflow_api")._dag_run_action()
        _, third = _fire(trigger)
        sleeps = Sleeps(at={3: lambda: monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API",
                                                          f"http://admin:pw@127.0.0.1:{api_port}")})
        assert await trigger._create_dag_run(fresh, third, engine, sleep=sleeps) is True
        assert len(sleeps.calls) == 3
        await fresh.ctx.close()
    finally:
        await action.ctx.close()
        contract.stop()


async def test_token_endpoint_5xx_is_retried_not_a_refusal(api_port):
    """A proxy in front of a restarting API answers 502 on /auth/token too: that is 'away', not 'refused'."""
    contract = AirflowContract(password="pw")
    contract.server.port = api_port
    answers = iter([(502, "bad gateway"), (503, "starting")])
    real = contract._respond
    contract.server.respond = lambda r: next(answers, None) or real(r) if r.path == "/auth/token" else real(r)
    contract.start()
    trigger = SensorTrigger(dependencies=[DEP], dag_id="target", airflow_conn_id="airflow_api")
    action = await trigger._dag_run_action()
    engine, firing = _fire(trigger)
    try:
        assert await trigger._create_dag_run(action, firing, engine, sleep=Sleeps()) is True
    finally:
        await action.ctx.close()
        contract.stop()
    assert len(contract.runs) == 1 and not trigger.failed_firings
