"""SensorTrigger: an Argo Sensor running in Airflow's triggerer, one TriggerEvent per firing."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_argo_events.core.actions.airflow_dagrun import AirflowDagRunAction, api_base
from airflow_argo_events.core.actions.base import ActionContext, ActionResult
from airflow_argo_events.core.actions.executor import AttemptHook, shadow_outcome
from airflow_argo_events.core.runtime.identity import check_state_name, state_name
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.runtime.shared_wait import SensorBus, start_slot
from airflow_argo_events.core.sensor.engine import Engine, Firing
from airflow_argo_events.core.spec.loader import parse_manifest
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.hooks.nats import NatsHook
from airflow_argo_events.hooks.secrets import airflow_secrets
from airflow_argo_events.triggers._common import firing_payload, manifest_dict
from airflow_argo_events.triggers._metrics import AirflowStatsMetrics, dag_run_outcome, trigger_owner
from airflow_argo_events.version_compat import get_async_connection

log = logging.getLogger(__name__)


def build_sensor(
    sensor: str | dict[str, Any] | Sensor | None,
    trigger: str | None,
    dependencies: list[dict[str, Any]] | None,
    conditions: str | None,
    name: str,
) -> dict[str, Any]:
    """The Sensor manifest a trigger runs, as a dict: a manifest (optionally narrowed to one
    trigger), or one built from Argo-shaped ``dependencies`` and ``conditions``."""
    if sensor is not None:
        doc = manifest_dict(sensor, "Sensor")
        if trigger:
            kept = [t for t in doc["spec"]["triggers"] if t["template"]["name"] == trigger]
            if not kept:
                names = [t["template"]["name"] for t in doc["spec"]["triggers"]]
                from airflow_argo_events.core.exceptions import SpecError

                raise SpecError([("trigger", f"no trigger {trigger!r} in sensor {doc['metadata']['name']}; "
                                             f"it has {', '.join(names)}")])
            doc["spec"]["triggers"] = kept
        return doc
    if not dependencies:
        from airflow_argo_events.core.exceptions import SpecError

        raise SpecError([("dependencies", "give a sensor manifest or at least one dependency")])
    template: dict[str, Any] = {"name": trigger or "fire", "log": {}}
    if conditions:
        template["conditions"] = conditions
    return manifest_dict({"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": name},
                          "spec": {"dependencies": dependencies, "triggers": [{"template": template}]}}, "Sensor")


NOT_RETRYABLE_HINT = {
    400: "the API refused the run's body; check the DAG's params and the sensor's payload",
    403: "the connection's user may not trigger this DAG; give it the permission",
    404: "no such DAG (or it is not parsed yet); check dag_id and the DAG's import errors",
    422: "the API refused the run's body; check the DAG's params and the sensor's payload",
}


class SensorTrigger(BaseEventTrigger):
    """Waits on the NATS JetStream bus for an Argo Sensor's conditions; yields one event per firing.

    State lives in the sensor's KV bucket and events are acked only after it is stored, so
    a restarted triggerer resumes without losing or repeating a firing. With ``dag_id``,
    each firing also creates one run of that DAG through the REST API (run id from the
    firing id), which is the way to get exactly one DAG run per firing. While the API is
    away (connection errors, 5xx, 429) the firing stays in the sensor's journal and is
    retried with capped backoff, without end; a refusal (400, 403, 404, 422) is logged as
    one error line and goes to the trigger's ``dlqTrigger`` when the manifest has one.

    The state (KV bucket and durable consumers) is named from the whole definition: the
    sensor's name and spec, the stream, and ``dag_id``. Changing any of them starts new
    state (see docs/operations.md, "State, identity and definition changes");
    ``state_name`` pins it across a deliberate change.

    :param sensor: an Argo Sensor manifest: a path, a dict or a model (loaded at parse time).
    :param trigger: run only this trigger of the manifest.
    :param dependencies: instead of a manifest, Argo-shaped dependencies (name,
        eventSourceName, eventName, filters, transform).
    :param conditions: the condition over ``dependencies`` (default: all of them).
    :param nats_conn_id: the ``nats`` connection of the bus.
    :param dag_id: create one run of this DAG per firing (REST API v2).
    :param airflow_conn_id: the ``http`` connection with the API's URL, login and password.
    :param deliver: where a new consumer starts: ``new`` (Argo) or ``all``, or an ISO time.
    :param name: the sensor's name when built from dependencies.
    :param state_prefix: the readable start of the state name (default ``airflow``).
    :param state_name: use exactly this state name (KV bucket and consumer prefix) instead of
        the one derived from the definition, e.g. to keep state across a deliberate change.
    :param explain: one decision line for every event (which dependency it matched, which filter
        rejected it and why, what the condition still waits for), without the rate limit the
        decision lines otherwise have; EventSensor sets it, so its task log tells why an event
        did or did not count.
    :param shadow: run without acting: each firing is logged (``shadow: would ...``) and shown
        by ``argo-events sensor status``, but yields no TriggerEvent and creates no DAG run. Its
        state is its own (named ``shadow-...``), so the real trigger still gets every event.
        Compare with ``argo-events sensor diff`` before switching (docs/replay.md).

    .. code-block:: python

        Asset("argo-events://orders/both", watchers=[AssetWatcher(
            name="orders", trigger=SensorTrigger(sensor="manifests/orders.yaml", trigger="both"))])
    """

    backoff_start = 0.5
    backoff_cap = 30.0
    """Seconds between attempts to create a DAG run: doubling from the start to the cap, with jitter."""
    warn_every = 300.0
    """While retrying, a warning on attempts 1, 2, 4, 8, ... and at least this often (seconds)."""

    def __init__(
        self,
        *,
        sensor: str | dict[str, Any] | Sensor | None = None,
        trigger: str | None = None,
        dependencies: list[dict[str, Any]] | None = None,
        conditions: str | None = None,
        nats_conn_id: str = "nats_default",
        dag_id: str | None = None,
        airflow_conn_id: str | None = None,
        deliver: str = "new",
        name: str = "airflow-sensor",
        state_prefix: str = "",
        state_name: str | None = None,
        max_firings: int = 0,
        explain: bool = False,
        shadow: bool = False,
    ) -> None:
        super().__init__()
        self.sensor = build_sensor(sensor, trigger, dependencies, conditions, name)
        self.trigger = trigger
        self.nats_conn_id = nats_conn_id
        self.dag_id = dag_id
        self.airflow_conn_id = airflow_conn_id
        self.deliver = deliver
        self.name = name
        self.state_prefix = state_prefix
        self.fixed_state_name = check_state_name(state_name) if state_name else None
        self.max_firings = max_firings
        self.explain = explain
        self.shadow = shadow
        self.failed_firings: list[tuple[str, str]] = []
        """(firing id, error) of firings whose DAG run the API refused, in this run of the trigger."""
        if dag_id and not airflow_conn_id:
            from airflow_argo_events.core.exceptions import SpecError

            raise SpecError([("airflow_conn_id", "required with dag_id (the REST API's URL and credentials)")])

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "sensor": self.sensor,
                "trigger": self.trigger,
                "nats_conn_id": self.nats_conn_id,
                "dag_id": self.dag_id,
                "airflow_conn_id": self.airflow_conn_id,
                "deliver": self.deliver,
                "name": self.name,
                "state_prefix": self.state_prefix,
                "state_name": self.fixed_state_name,
                "max_firings": self.max_firings,
                # Only when set: the identity (hash) of existing watchers does not change.
                **({"explain": True} if self.explain else {}),
                **({"shadow": True} if self.shadow else {}),
            },
        )

    def state_for(self, stream: str) -> str:
        """The KV bucket and durable-consumer prefix on ``stream``: derived from the whole
        definition (two triggers that differ anywhere never share it; the same definition
        keeps it across re-parses and restarts), unless ``state_name`` pins it."""
        if self.fixed_state_name:
            return self.fixed_state_name
        extra: dict[str, Any] = {"dag_id": self.dag_id} if self.dag_id else {}
        if self.shadow:  # never the real trigger's consumers, whatever the prefix
            extra["shadow"] = True
        return state_name(self.sensor, stream, self.state_prefix or ("shadow" if self.shadow else "airflow"),
                          extra=extra or None)

    def _deliver_from(self) -> Any:
        if self.deliver in ("new", "all"):
            return self.deliver
        return datetime.fromisoformat(self.deliver)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async for payload, taken in self._firings():
            yield TriggerEvent(payload)
            taken.set_result(True)

    async def check(self, limit: float = 60.0) -> dict[str, Any] | None:
        """One poke of a non-deferrable EventSensor: resume the durable consumers, process what
        is waiting, and return the first firing's payload, or None once the consumers are caught
        up (nothing pending or unacked, no firing in the journal) or after ``limit`` seconds.
        Whatever is not consumed stays on the durable consumers for the next poke."""
        firings = self._firings(until_idle=True)

        async def first() -> dict[str, Any] | None:
            async for payload, taken in firings:
                taken.set_result(True)  # the task has it: the journal entry goes when the consumers close
                return payload
            return None

        try:
            return await asyncio.wait_for(first(), limit)
        except asyncio.TimeoutError:
            log.info("sensor %s: still catching up after %.0fs; the next poke continues", self.name, limit)
            return None
        finally:
            await firings.aclose()

    async def _firings(self, until_idle: bool = False) -> AsyncIterator[tuple[dict[str, Any], asyncio.Future[bool]]]:
        """(payload, taken) per firing; the firing leaves the journal once ``taken`` is set."""
        started = await start_slot()  # a few of the triggerer's sensors start at a time (shared_wait.py)
        sensor = parse_manifest(self.sensor, None, "Sensor")
        settings, stream = await NatsHook(self.nats_conn_id).aget_settings()
        queue: asyncio.Queue[tuple[Firing, asyncio.Future[bool]]] = asyncio.Queue()
        dag_runs = await self._dag_run_action() if self.dag_id and not self.shadow else None
        engine = Engine(sensor) if dag_runs is not None else None  # builds dead-letter firings (pure)

        create_lock = asyncio.Lock()
        waiting: set[asyncio.Future[bool]] = set()

        metrics = AirflowStatsMetrics(sensor.metadata.namespace or "default")  # Argo's metrics via Airflow's Stats

        async def execute(firing: Firing) -> Any:
            if self.shadow:
                would = f"create a run of DAG {self.dag_id}" if self.dag_id else "yield a TriggerEvent"
                return shadow_outcome(firing, would)
            outcome = None
            if dag_runs is not None:
                # One creation at a time (the API's database, SQLite above all, dislikes bursts of
                # concurrent writes). This returns only when the run exists or the API refused it:
                # until then the firing stays in the journal, so a restart retries it.
                tries = [0]

                def attempted(f: Firing, attempt: int, ok: bool, detail: str) -> None:
                    # as ActionRunner reports each attempt in `sensor run`: status shows attempts, last error
                    tries[0] = attempt
                    runtime.note_attempt(f, attempt, ok, detail)

                async with create_lock:
                    t0 = time.perf_counter()
                    ok = await self._create_dag_run(dag_runs, firing, engine, on_attempt=attempted)
                outcome = dag_run_outcome(metrics, firing, self.dag_id or "", ok, (time.perf_counter() - t0) * 1000,
                                          attempts=tries[0])
            done = asyncio.get_running_loop().create_future()
            waiting.add(done)
            try:
                await queue.put((firing, done))
                await done  # the journal entry stays until the triggerer has taken the event
            finally:
                waiting.discard(done)
            if outcome is None:  # the firing became a TriggerEvent: the action succeeded
                metrics.action_triggered(firing.sensor, firing.trigger)
            return outcome

        # The triggerer's sensors share the waiting for events (one NATS subscription per event
        # source) and the stream check; each keeps its own consumers, state and acks
        # (core/runtime/shared_wait.py).
        async with SensorBus(settings, stream) as bus:
            bucket = self.state_for(bus.stream.name)
            runtime = SensorRuntime(sensor, bus, execute, deliver=self._deliver_from(), bucket=bucket,
                                    consumer_prefix=bucket, owner=trigger_owner(self), metrics=metrics)
            if self.explain:  # the runtime's decision line for every event (one line each), not rate-limited
                runtime.decisions.limited = False
            bus.release_after(len(runtime.engine.listens_to()), started)
            await runtime.start()
            started()
            log.info("sensor %s: listening on %s; state %s", sensor.metadata.name,
                     ", ".join(s.subject for s in runtime._subs), bucket)
            stop = asyncio.Event()
            task = asyncio.create_task(runtime.run(stop))

            async def idle() -> None:
                # Caught up: every consumer has nothing pending or unacked and no firing waits.
                while True:
                    await asyncio.sleep(0.2)
                    infos = [await sub.info() for sub in runtime._subs]
                    if (all(i.num_pending == 0 and i.num_ack_pending == 0 for i in infos)
                            and queue.empty() and not waiting and not runtime.pending()):
                        return

            idler = asyncio.create_task(idle()) if until_idle else None
            fired = 0
            getter: asyncio.Future[Any] | None = None
            try:
                while True:
                    getter = asyncio.ensure_future(queue.get())
                    watch = {getter, task} | ({idler} if idler else set())
                    done_set, _ = await asyncio.wait(watch, return_when=asyncio.FIRST_COMPLETED)
                    if getter not in done_set:
                        getter.cancel()
                        if task in done_set:
                            task.result()  # the runtime died: surface its error
                        return
                    firing, ack = getter.result()
                    payload = firing_payload(firing)
                    log.info("sensor %s: firing %s of trigger %s: events %s", sensor.metadata.name, firing.id,
                             firing.trigger, {d: e.get("id") for d, e in (payload.get("events") or {}).items()})
                    yield payload, ack
                    fired += 1
                    if self.max_firings and fired >= self.max_firings:
                        return
            finally:
                if getter is not None:
                    getter.cancel()
                if idler is not None:
                    idler.cancel()
                for fut in list(waiting):  # not handed over: they stay in the journal for the next run
                    fut.cancel()
                stop.set()
                if not (await asyncio.wait({task}, timeout=15))[0]:
                    task.cancel()
                await runtime.close(drain_timeout=5)
                if dag_runs is not None:
                    await dag_runs.ctx.close()

    async def _create_dag_run(self, action: AirflowDagRunAction, firing: Firing, engine: Engine | None = None,
                              *, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                              on_attempt: AttemptHook | None = None) -> bool:
        """Create the firing's DAG run; True once it exists, False when the API refused it.

        Retryable failures (API away, 5xx, 429, a connection lookup that fails) are retried
        without end: pauses double from ``backoff_start`` to ``backoff_cap`` with jitter, and
        warnings thin out (attempts 1, 2, 4, 8, ... and every ``warn_every`` seconds) so an
        API away for an hour gives a few dozen lines, not thousands. ``on_attempt`` hears of
        each attempt (firing, attempt number from 1, ok, detail), as ActionRunner's does.
        """
        target = _for_dag(firing, self.dag_id or "", self.airflow_conn_id or "")
        pause = self.backoff_start
        attempt = 0
        last_warning = float("-inf")
        while True:
            attempt += 1
            try:
                result = await action.execute(target)
            except asyncio.CancelledError:
                raise  # the firing stays in the journal; the next run of the trigger retries it
            except Exception as err:  # e.g. the connection lookup, which goes through the API
                result = ActionResult(False, f"{type(err).__name__}: {err}", retryable=True)
            if on_attempt is not None:
                on_attempt(firing, attempt, result.ok, result.detail)
            if result.ok:
                if attempt > 1:
                    log.info("firing %s: DAG run of %s created after %d attempts: %s", firing.id, self.dag_id,
                             attempt, result.detail)
                return True
            if not result.retryable:
                status = f"HTTP {result.status}" if result.status else "refused"
                hint = NOT_RETRYABLE_HINT.get(result.status or 0, "fix the cause; the firing is not retried")
                dead_letter = engine is not None and _has_dead_letter(firing)
                log.error("firing %s: DAG run of %s not created, %s (%s): %s; recorded as a failed firing%s",
                          firing.id, self.dag_id, status, result.detail, hint,
                          ", sent to its dlqTrigger" if dead_letter else "")
                self.failed_firings.append((firing.id, result.detail))
                if engine is not None and dead_letter:
                    await _dead_letter(engine, firing, action.ctx)
                return False
            now = time.monotonic()
            if attempt & (attempt - 1) == 0 or now - last_warning >= self.warn_every:
                last_warning = now
                log.warning("firing %s: DAG run of %s not created yet (attempt %d; retrying every %.0fs at most, "
                            "the firing waits in the journal): %s", firing.id, self.dag_id, attempt,
                            self.backoff_cap, result.detail)
            else:
                log.debug("firing %s: attempt %d failed: %s", firing.id, attempt, result.detail)
            await sleep(random.uniform(pause / 2, pause))
            pause = min(pause * 2, self.backoff_cap)

    async def _dag_run_action(self) -> AirflowDagRunAction:
        known: dict[str, tuple[str, str | None, str | None, str | None]] = {}

        async def resolve(conn_id: str) -> tuple[str, str | None, str | None, str | None]:
            # In Airflow 3 the triggerer reads connections through the API server: while it is
            # away the lookup fails, and the last good answer is the right one to retry with.
            try:
                conn = await get_async_connection(conn_id)
            except Exception:
                if conn_id in known:
                    return known[conn_id]
                raise
            token = (conn.extra_dejson or {}).get("token") or None
            known[conn_id] = (api_base(conn.host, conn.port, conn.schema), conn.login, conn.password, token)
            return known[conn_id]

        # The dead-letter actions run with this context: their secretKeyRefs resolve through Airflow too.
        secrets = await airflow_secrets(parse_manifest(self.sensor, None, "Sensor"))
        return AirflowDagRunAction("dag-run", ActionContext(airflow_conn=resolve, secrets=secrets))


def _has_dead_letter(firing: Firing) -> bool:
    """Argo runs a ``dlqTrigger`` only with ``atLeastOnce`` (as ActionRunner does)."""
    spec = firing.trigger_spec
    return spec is not None and spec.dlq_trigger is not None and spec.at_least_once


async def _dead_letter(engine: Engine, firing: Firing, ctx: ActionContext) -> None:
    """Run the trigger's ``dlqTrigger`` on the firing's events, as ActionRunner does after failed retries."""
    spec = firing.trigger_spec
    assert spec is not None and spec.dlq_trigger is not None
    dlq = engine.dlq_firing(firing)
    if dlq is None:
        return
    if dlq.error:  # a parameter could not be resolved: not run, as in Argo
        log.error("firing %s: dead-letter trigger %s: %s", firing.id, dlq.trigger, dlq.error)
        return
    from airflow_argo_events.core.actions.executor import make_action
    from airflow_argo_events.core.actions.policy import RetryPlan

    plan = RetryPlan.of(spec.dlq_trigger.retry_strategy)
    delays = plan.delays()
    action = make_action(dlq.template, ctx)
    result = ActionResult(False, "not run")
    for attempt in range(plan.steps):
        try:
            result = await action.execute(dlq)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a dead-letter action's failure is logged, never raised into the sensor
            result = ActionResult(False, f"{type(err).__name__}: {err}")
        if result.ok or not result.retryable or attempt == plan.steps - 1:
            break
        await asyncio.sleep(delays[attempt])
    log.warning("firing %s: dead-letter trigger %s: %s", firing.id, dlq.trigger, "ok" if result.ok else result.detail)


def _for_dag(firing: Firing, dag_id: str, conn_id: str) -> Firing:
    import dataclasses

    return dataclasses.replace(
        firing, resolved=firing_payload(firing),
        body={"dagId": dag_id, "connId": conn_id, "runIdPrefix": "argo-events__", "note": f"firing {firing.id}"},
    )
