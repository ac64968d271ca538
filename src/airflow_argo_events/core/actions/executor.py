"""Runs firings: rate limit, retries with backoff, status policy, dead-letter action, logging.

Every log line names the sensor, trigger and firing id, so one grep follows a firing.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_argo_events.core.actions.airflow_dagrun import AirflowDagRunAction
from airflow_argo_events.core.actions.base import Action, ActionContext, ActionResult, UnsupportedAction
from airflow_argo_events.core.actions.http import HttpAction
from airflow_argo_events.core.actions.k8s import ArgoWorkflowAction, K8sAction
from airflow_argo_events.core.actions.kafka import KafkaAction
from airflow_argo_events.core.actions.lambda_ import AwsLambdaAction
from airflow_argo_events.core.actions.policy import Clock, RateLimiter, RetryPlan, Sleep
from airflow_argo_events.core.actions.prefect import PrefectEmitEventAction, PrefectRunDeploymentAction
from airflow_argo_events.core.actions.simple import LogAction, NatsAction, SlackAction
from airflow_argo_events.core.exceptions import ArgoEventsError
from airflow_argo_events.core.observe.metrics import NO_METRICS, Metrics
from airflow_argo_events.core.sensor.engine import Engine, Firing
from airflow_argo_events.core.spec.sensor import TriggerTemplate

log = logging.getLogger("airflow_argo_events.actions")

SIMPLE: dict[str, type[Action]] = {
    "http": HttpAction, "log": LogAction, "nats": NatsAction, "slack": SlackAction, "airflow": AirflowDagRunAction,
    "prefect": PrefectRunDeploymentAction, "prefectEvent": PrefectEmitEventAction, "kafka": KafkaAction,
    "awsLambda": AwsLambdaAction,
}


def make_action(template: TriggerTemplate, ctx: ActionContext) -> Action:
    kind = template.kind
    if kind in SIMPLE:
        return SIMPLE[kind](template.name, ctx)
    if kind in ("k8s", "argoWorkflow"):
        cls = K8sAction if kind == "k8s" else ArgoWorkflowAction
        try:
            return cls(template.name, ctx, template)
        except ValueError as err:
            return _Broken(template.name, ctx, str(err))
    return UnsupportedAction(template.name, ctx, kind)


class _Broken(Action):
    def __init__(self, name: str, ctx: ActionContext, why: str) -> None:
        super().__init__(name, ctx)
        self.why = why

    async def execute(self, firing: Firing) -> ActionResult:
        return ActionResult(False, self.why, retryable=False)


@dataclass(frozen=True)
class Outcome:
    firing_id: str
    trigger: str
    ok: bool
    attempts: int
    detail: str
    dlq: ActionResult | None = None
    status: int | None = None
    """HTTP status of the last attempt, when the action speaks HTTP."""
    ref: str = ""
    """What the action created (the DAG run id), for ``sensor status``."""

def shadow_outcome(firing: Firing, what: str = "") -> Outcome:
    """What a shadow sensor does instead of an action (``sensor run --shadow``,
    ``SensorTrigger(shadow=True)``): one log line saying what would have run, and an outcome
    that ``sensor status`` shows as not executed."""
    if firing.error:
        log.warning("sensor %s trigger %s firing %s: shadow: would fail: %s", firing.sensor, firing.trigger,
                    firing.id, firing.error)
        return Outcome(firing.id, firing.trigger, False, 0, f"shadow: would fail: {firing.error}")
    what = what or f"run the {firing.template.kind} action"
    log.info("sensor %s trigger %s firing %s: shadow: would %s", firing.sensor, firing.trigger, firing.id, what)
    return Outcome(firing.id, firing.trigger, True, 0, f"shadow: not executed (would {what})")


AttemptHook = Callable[[Firing, int, bool, str], None]
"""Called after each attempt: (firing, attempt number from 1, ok, detail)."""


class ActionRunner:
    """Executes firings of one sensor's triggers.

    >>> runner = ActionRunner(engine, ActionContext())       # doctest: +SKIP
    >>> await runner.run(firing)                             # doctest: +SKIP
    Outcome(firing_id='3f2a...', trigger='notify', ok=True, attempts=1, detail='POST ...: 200')
    """

    def __init__(self, engine: Engine, ctx: ActionContext | None = None, *, sleep: Sleep = asyncio.sleep,
                 clock: Clock = time.monotonic, rng: random.Random | None = None, metrics: Metrics | None = None,
                 on_attempt: AttemptHook | None = None) -> None:
        self.engine = engine
        self.metrics = metrics or NO_METRICS
        """Argo's action metrics, per attempt as Argo counts them (see core/observe/metrics.py)."""
        self.on_attempt = on_attempt
        self.ctx = ctx or ActionContext()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.actions: dict[str, Action] = {}
        self.limits: dict[str, RateLimiter] = {}
        for trig in engine.sensor.spec.triggers:
            assert trig.template is not None
            self.actions[trig.template.name] = make_action(trig.template, self.ctx)
            self.limits[trig.template.name] = RateLimiter(trig.rate_limit, clock=clock, sleep=sleep)

    async def _attempts(self, action: Action, firing: Firing, plan: RetryPlan) -> tuple[ActionResult, int]:
        delays = plan.delays(self._rng)
        result = ActionResult(False, "not run")
        metrics = self.metrics
        for attempt in range(plan.steps):
            started = time.perf_counter()
            try:
                result = await action.execute(firing)
            except ArgoEventsError as err:
                result = ActionResult(False, str(err), retryable=False)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # an action bug must not kill the sensor loop
                log.exception("sensor %s trigger %s firing %s: action crashed", firing.sensor, firing.trigger, firing.id)
                result = ActionResult(False, f"{type(err).__name__}: {err}")
            metrics.action_duration(firing.sensor, firing.trigger, (time.perf_counter() - started) * 1000)
            if result.ok:
                metrics.action_triggered(firing.sensor, firing.trigger)
            else:
                metrics.action_failed(firing.sensor, firing.trigger)
            if self.on_attempt is not None:
                self.on_attempt(firing, attempt + 1, result.ok, result.detail)
            if result.ok:
                return result, attempt + 1
            log.warning("sensor %s trigger %s firing %s: attempt %d/%d failed: %s", firing.sensor, firing.trigger,
                        firing.id, attempt + 1, plan.steps, result.detail)
            if not result.retryable or attempt == plan.steps - 1:
                return result, attempt + 1
            await self._sleep(delays[attempt])
        return result, plan.steps

    async def run(self, firing: Firing) -> Outcome:
        spec = firing.trigger_spec
        action = self.actions.get(firing.trigger) or make_action(firing.template, self.ctx)
        limiter = self.limits.get(firing.trigger)
        if limiter is not None:
            waited = await limiter.wait()
            if waited:
                log.info("sensor %s trigger %s firing %s: rate limit, waited %.3fs", firing.sensor, firing.trigger,
                         firing.id, waited)
        if firing.error:
            # A parameter could not be resolved: Argo does not run the trigger. Not retried
            # (the same events give the same error); recorded as failed, and dead-lettered.
            log.error("sensor %s trigger %s firing %s: failed: %s", firing.sensor, firing.trigger, firing.id,
                      firing.error)
            # Argo: applying the parameters fails inside the attempt (action_failed), and the
            # retries end failed (action_retries_failed).
            self.metrics.action_failed(firing.sensor, firing.trigger)
            self.metrics.action_retries_failed(firing.sensor, firing.trigger)
            return Outcome(firing.id, firing.trigger, False, 0, firing.error, await self._dead_letter(firing))
        # Action bodies are re-read from the firing: trigger-level parameters may have changed them.
        if firing.template.kind != action.kind and not isinstance(action, (UnsupportedAction, _Broken)):
            action = make_action(firing.template, self.ctx)
        result, attempts = await self._attempts(action, firing, RetryPlan.of(spec.retry_strategy if spec else None))
        if result.ok:
            log.info("sensor %s trigger %s firing %s: ok after %d attempt(s): %s", firing.sensor, firing.trigger,
                     firing.id, attempts, result.detail)
            return Outcome(firing.id, firing.trigger, True, attempts, result.detail, None, result.status, result.ref)
        log.error("sensor %s trigger %s firing %s: failed after %d attempt(s): %s", firing.sensor, firing.trigger,
                  firing.id, attempts, result.detail)
        self.metrics.action_retries_failed(firing.sensor, firing.trigger)
        return Outcome(firing.id, firing.trigger, False, attempts, result.detail, await self._dead_letter(firing),
                       result.status, result.ref)

    async def _dead_letter(self, firing: Firing) -> ActionResult | None:
        """Run the trigger's dlqTrigger on the firing's events (Argo: only with atLeastOnce)."""
        spec = firing.trigger_spec
        if spec is None or spec.dlq_trigger is None or not spec.at_least_once:
            return None
        dlq = self.engine.dlq_firing(firing)
        if dlq is None:
            return None
        if dlq.error:
            result = ActionResult(False, dlq.error, retryable=False)
        else:
            dlq_action = make_action(dlq.template, self.ctx)
            result, _ = await self._attempts(dlq_action, dlq, RetryPlan.of(spec.dlq_trigger.retry_strategy))
        if not result.ok:  # as Argo: counted under the dead-letter trigger's name
            self.metrics.action_retries_failed(firing.sensor, dlq.trigger)
        log.warning("sensor %s trigger %s firing %s: dead-letter trigger %s: %s", firing.sensor,
                    firing.trigger, firing.id, dlq.trigger, "ok" if result.ok else result.detail)
        return result

    async def close(self) -> None:
        for action in self.actions.values():
            await action.close()
        await self.ctx.close()

    def describe(self) -> dict[str, Any]:
        return {name: action.kind for name, action in self.actions.items()}
