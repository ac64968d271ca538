"""Argo's admission checks for a Sensor (``pkg/reconciler/sensor/validate.go``), with field paths."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from croniter import croniter

if TYPE_CHECKING:
    from airflow_argo_events.core.spec.sensor import (
        EventDependencyFilter,
        Sensor,
        Trigger,
        TriggerParameter,
        TriggerTemplate,
    )

K8S_OPERATIONS = {"", "create", "update", "patch", "delete"}
WORKFLOW_OPERATIONS = {"submit", "submit-from", "suspend", "retry", "resume", "resubmit", "terminate", "stop"}
HTTP_METHODS = ("GET", "DELETE", "PATCH", "POST", "PUT")
CRON_FIELDS = 5
TRIGGER_TYPES = ("k8s", "argo_workflow", "http", "nats", "kafka", "slack", "log", "airflow", "prefect", "prefect_event",
                 "aws_lambda", "custom",
                 "open_whisk", "azure_event_hubs", "pulsar", "azure_service_bus", "email")


def validate_sensor(sensor: Sensor) -> list[tuple[str, str]]:
    """Argo's admission checks (``validate.go``) and ours, as ``(field path, message)``."""
    errors: list[tuple[str, str]] = []
    spec = sensor.spec
    if not spec.dependencies:
        errors.append(("spec.dependencies", "at least one dependency is required"))
    seen: dict[str, int] = {}
    for i, dep in enumerate(spec.dependencies):
        if dep.name in seen:
            errors.append((f"spec.dependencies[{i}].name", f"duplicate dependency name {dep.name!r}"))
        seen[dep.name] = i
    for i, dep in enumerate(spec.dependencies):
        errors += _filters(dep.filters, f"spec.dependencies[{i}].filters")
    if not spec.triggers:
        errors.append(("spec.triggers", "at least one trigger is required"))
    names: set[str] = set()
    for i, trig in enumerate(spec.triggers):
        base = f"spec.triggers[{i}]"
        t = trig.template
        errors += _trigger(trig, base, seen)
        if t is not None and t.name:
            if t.name in names:
                errors.append((f"{base}.template.name", f"duplicate trigger name {t.name!r}"))
            names.add(t.name)
    return errors


def sensor_warnings(sensor: Sensor) -> list[tuple[str, str]]:
    """What Argo accepts but is likely a mistake: ``(path, message)`` for ``validate`` to print.

    A parameter naming no dependency is one: it is never an error, because trigger-level
    parameters may rewrite a template's ``dependencyName`` first (Argo's
    ``THIS_WILL_BE_REPLACED`` example); left as it is, it resolves to its ``value`` or is skipped.
    """
    from airflow_argo_events.core.sensor.conditions import canonical

    known = {canonical(d.name) for d in sensor.spec.dependencies}
    out: list[tuple[str, str]] = []

    def trigger(trig: Trigger, base: str) -> None:
        rewritten = {p.dest for p in trig.parameters or [] if p.dest}
        for where, params in _all_params(trig, base):
            for j, p in enumerate(params):
                name = p.src.dependency_name if p.src else ""
                if not name or canonical(name) in known:
                    continue
                path = f"{where}[{j}].src.dependencyName"
                if where != f"{base}.parameters" and _rewritten(path, base, rewritten):
                    continue
                out.append((path, f"names no dependency ({name!r}; known: "
                                  f"{', '.join(d.name for d in sensor.spec.dependencies)}): the parameter will "
                                  "use its value, or be skipped"))
        if trig.dlq_trigger is not None:
            trigger(trig.dlq_trigger, f"{base}.dlqTrigger")

    for i, trig in enumerate(sensor.spec.triggers):
        trigger(trig, f"spec.triggers[{i}]")
    return out


def _rewritten(path: str, base: str, dests: set[str]) -> bool:
    """True when a trigger-level parameter's dest is this template field (``template.`` stripped)."""
    prefix = f"{base}.template."
    if not path.startswith(prefix):
        return False
    dotted = re.sub(r"\[(\d+)\]", r".\1", path[len(prefix):])
    return dotted in dests


def _all_params(trig: Trigger, base: str) -> list[tuple[str, list[TriggerParameter]]]:
    out = [(f"{base}.parameters", trig.parameters or [])]
    t = trig.template
    if t is not None and t.body is not None:
        for attr in ("parameters", "payload", "dynamic_headers"):
            params = getattr(t.body, attr, None)
            if isinstance(params, list) and params:
                alias = {"dynamic_headers": "dynamicHeaders"}.get(attr, attr)
                out.append((f"{base}.template.{t.kind}.{alias}", params))
    return out


def _trigger(trig: Trigger, base: str, deps: dict[str, int]) -> list[tuple[str, str]]:
    """Argo's validateTrigger: template, policy, trigger-level parameters, dlqTrigger."""
    from airflow_argo_events.core.sensor.conditions import Condition, ConditionError, canonical

    errors: list[tuple[str, str]] = []
    known = {canonical(n) for n in deps}
    t = trig.template
    if t is None:
        return [(f"{base}.template", "trigger template is required")]
    if not t.name:
        errors.append((f"{base}.template.name", "trigger name is required"))
    if t.conditions:
        try:
            cond = Condition.parse(t.conditions)
        except ConditionError as err:
            errors.append((f"{base}.template.conditions", f"invalid expression: {err}"))
        else:
            unknown = [n for n in cond.names if n not in known]
            if unknown:
                errors.append((f"{base}.template.conditions",
                               f"unknown dependency {', '.join(map(repr, unknown))}; "
                               f"known: {', '.join(sorted(deps))}"))
    if t.correlation is not None:
        if base.endswith(".dlqTrigger"):
            errors.append((f"{base}.template.correlation", "a dlqTrigger fires on its trigger's events: "
                                                          "correlation has no effect there; remove it"))
        else:
            errors += _correlation(t, f"{base}.template.correlation", deps)
    for j, reset in enumerate(t.conditions_reset or []):
        where = f"{base}.template.conditionsReset[{j}]"
        if reset.by_time is None:
            errors.append((where, "byTime is required"))
            continue
        if len(reset.by_time.cron.split()) != CRON_FIELDS or not croniter.is_valid(reset.by_time.cron):
            errors.append((f"{where}.byTime.cron", f"invalid cron {reset.by_time.cron!r} (5 fields expected)"))
        if reset.by_time.timezone:
            from airflow_argo_events.core.spec.sensor import _zone

            try:
                _zone(reset.by_time.timezone)
            except ValueError as err:
                errors.append((f"{where}.byTime.timezone", str(err)))
    kinds = [k for k in TRIGGER_TYPES if getattr(t, k) is not None]
    if len(kinds) != 1:
        errors.append((f"{base}.template", "exactly one trigger type (k8s, argoWorkflow, http, ...) must be set"
                       if not kinds else f"only one trigger type may be set, found {len(kinds)}"))
    tpl = f"{base}.template"
    for kind, alias in (("k8s", "k8s"), ("argo_workflow", "argoWorkflow")):
        body = getattr(t, kind)
        if body is not None and body.source is not None and body.source.inline:
            errors += _inline(body.source.inline, f"{tpl}.{alias}.source.inline")
    if t.k8s is not None:
        if t.k8s.source is None:
            errors.append((f"{tpl}.k8s.source", "source is required"))
        if t.k8s.operation not in K8S_OPERATIONS:
            errors.append((f"{tpl}.k8s.operation", f"unknown operation {t.k8s.operation!r}"))
        errors += _params(t.k8s.parameters, f"{tpl}.k8s.parameters")
    if t.argo_workflow is not None:
        if t.argo_workflow.operation not in WORKFLOW_OPERATIONS:
            errors.append((f"{tpl}.argoWorkflow.operation",
                           f"operation must be one of {', '.join(sorted(WORKFLOW_OPERATIONS))}, "
                           f"got {t.argo_workflow.operation!r}"))
        if t.argo_workflow.source is None:  # every operation finds its workflow through the source
            errors.append((f"{tpl}.argoWorkflow.source", "source is required"))
        errors += _params(t.argo_workflow.parameters, f"{tpl}.argoWorkflow.parameters")
    if t.http is not None:
        if not t.http.url:
            errors.append((f"{tpl}.http.url", "url must not be empty"))
        if t.http.method and t.http.method not in HTTP_METHODS:
            errors.append((f"{tpl}.http.method", f"method must be one of {', '.join(HTTP_METHODS)} "
                                                 f"(upper case), got {t.http.method!r}"))
        errors += _params(t.http.parameters, f"{tpl}.http.parameters")
        errors += _params(t.http.payload, f"{tpl}.http.payload", allow_empty_dest=True)
    for kind, what in (("nats", "subject"), ("kafka", "topic")):
        body = getattr(t, kind)
        if body is None:
            continue
        if not body.url:
            errors.append((f"{tpl}.{kind}.url", "url must not be empty"))
        if not getattr(body, what):
            errors.append((f"{tpl}.{kind}.{what}", f"{what} must not be empty"))
        if body.payload is None:
            errors.append((f"{tpl}.{kind}.payload", "payload is required (a list of parameters)"))
        errors += _params(body.payload, f"{tpl}.{kind}.payload")
        errors += _params(body.parameters, f"{tpl}.{kind}.parameters")
    if t.slack is not None:
        if t.slack.slack_token is None:
            errors.append((f"{tpl}.slack.slackToken", "slackToken is required"))
        errors += _params(t.slack.parameters, f"{tpl}.slack.parameters")
    if t.airflow is not None:
        if not (t.airflow.url or t.airflow.conn_id):
            errors.append((f"{tpl}.airflow", "url or connId is required"))
        errors += _params(t.airflow.parameters, f"{tpl}.airflow.parameters")
        errors += _params(t.airflow.payload, f"{tpl}.airflow.payload")
    if t.prefect is not None:
        errors += _prefect(t.prefect, f"{tpl}.prefect")
    if t.prefect_event is not None:
        if not t.prefect_event.event:
            errors.append((f"{tpl}.prefectEvent.event", "event must not be empty"))
        errors += _params(t.prefect_event.payload, f"{tpl}.prefectEvent.payload", allow_empty_dest=True)
        errors += _params(t.prefect_event.parameters, f"{tpl}.prefectEvent.parameters")
    if t.aws_lambda is not None:
        errors += _aws_lambda(t.aws_lambda, f"{tpl}.awsLambda")
    errors += _unsupported(t, tpl)
    errors += _policy(trig, base)
    errors += _params(trig.parameters, f"{base}.parameters")
    if trig.rate_limit and trig.rate_limit.requests_per_unit < 0:
        errors.append((f"{base}.rateLimit.requestsPerUnit", "must not be negative"))
    if trig.dlq_trigger is not None:
        # Argo runs the dead-letter trigger only on the at-least-once path.
        if not trig.at_least_once:
            errors.append((f"{base}.atLeastOnce", "must be true to use dlqTrigger"))
        if not trig.dlq_trigger.at_least_once:
            errors.append((f"{base}.dlqTrigger.atLeastOnce", "must be true within the dlqTrigger"))
        errors += _trigger(trig.dlq_trigger, f"{base}.dlqTrigger", deps)
    return errors


def _correlation(t: TriggerTemplate, where: str, deps: dict[str, int]) -> list[tuple[str, str]]:
    """The correlation extension: keys, window, maxPending and threshold name the condition's dependencies."""
    from airflow_argo_events.core.sensor.conditions import Condition, ConditionError, canonical
    from airflow_argo_events.core.spec.durations import parse_duration
    from airflow_argo_events.core.spec.sensor import MAX_THRESHOLD

    c = t.correlation
    assert c is not None
    try:
        cond = Condition.parse(t.conditions) if t.conditions else Condition.all_of(list(deps))
    except ConditionError:
        return []  # reported at .conditions
    by_canonical = {canonical(n): n for n in deps}
    listened = [by_canonical[n] for n in cond.names if n in by_canonical]
    errors: list[tuple[str, str]] = []

    def named(field: str, names: dict[str, object]) -> None:
        for name in names:
            if canonical(name) not in cond.names:
                errors.append((f"{where}.{field}.{name}", f"{name!r} is not a dependency of this trigger's "
                                                          f"condition ({', '.join(listened)})"))

    if c.keys is not None:
        if not c.keys:
            errors.append((f"{where}.keys", "must name a GJSON path for each dependency of the condition"))
        named("keys", c.keys)
        given = {canonical(n) for n in c.keys}
        for dep in listened:
            if canonical(dep) not in given:
                errors.append((f"{where}.keys", f"dependency {dep!r} has no key path: every dependency of the "
                                                f"condition needs one (e.g. {dep}: body.id)"))
        for name, path in c.keys.items():
            if not path.strip():
                errors.append((f"{where}.keys.{name}", "the GJSON path must not be empty"))
    if c.window:
        try:
            seconds = parse_duration(c.window)
        except ValueError as err:
            errors.append((f"{where}.window", str(err)))
        else:
            if seconds <= 0:
                errors.append((f"{where}.window", f"must be a positive duration, got {c.window!r}"))
    if c.max_pending is not None:
        if c.keys is None:
            errors.append((f"{where}.maxPending", "bounds the number of pending keys: it needs keys"))
        elif c.max_pending < 1:
            errors.append((f"{where}.maxPending", f"must be at least 1, got {c.max_pending}"))
    if c.threshold is not None:
        named("threshold", c.threshold)
        for name, n in c.threshold.items():
            if not 1 <= n <= MAX_THRESHOLD:
                errors.append((f"{where}.threshold.{name}", f"must be between 1 and {MAX_THRESHOLD}, got {n}"))
    counts = any(n > 1 for n in (c.threshold or {}).values())
    if not cond.requires_and and not counts:
        errors.append((where, f"condition {cond.text!r} has no && and no threshold above 1: every event fires "
                              "alone and nothing is kept, so correlation has no effect"))
    return errors


_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


def _prefect(p: Any, where: str) -> list[tuple[str, str]]:
    """The prefect extension: a deployment named 'flow/deployment' (or its id), parameters with a dest."""
    errors = []
    flow, slash, name = p.deployment.partition("/")
    if not (_UUID.fullmatch(p.deployment) or (slash and flow.strip() and name.strip() and "/" not in name)):
        errors.append((f"{where}.deployment", f"write 'flow name/deployment name' or the deployment's id, "
                                              f"got {p.deployment!r}"))
    return errors + _params(p.parameters, f"{where}.parameters")


def _aws_lambda(c: Any, where: str) -> list[tuple[str, str]]:
    """Argo's awsLambda checks (functionName, region, payload), plus what Lambda would refuse at each firing."""
    from airflow_argo_events.core.spec.sensor import LAMBDA_INVOCATION_TYPES

    errors = [(f"{where}.{alias}", f"{alias} is required") for alias, value in
              (("functionName", c.function_name), ("region", c.region)) if not value]
    if c.payload is None:
        errors.append((f"{where}.payload", "payload is required (a list of parameters)"))
    if c.invocation_type is not None and c.invocation_type not in LAMBDA_INVOCATION_TYPES:
        errors.append((f"{where}.invocationType", f"must be one of {', '.join(LAMBDA_INVOCATION_TYPES)}, "
                                                   f"got {c.invocation_type!r}"))
    if (c.access_key is None) != (c.secret_key is None):
        errors.append((f"{where}.{'secretKey' if c.secret_key is None else 'accessKey'}",
                       "accessKey and secretKey go together"))
    if c.endpoint and not c.endpoint.startswith(("http://", "https://")):
        errors.append((f"{where}.endpoint", f"must be an http(s) URL, got {c.endpoint!r}"))
    return errors + _params(c.payload, f"{where}.payload") + _params(c.parameters, f"{where}.parameters")


def _unsupported(t: TriggerTemplate, tpl: str) -> list[tuple[str, str]]:
    """Argo's checks for the trigger types that load here but do not run (their blocks stay open)."""
    errors: list[tuple[str, str]] = []

    def extra(body: Any, key: str) -> Any:
        return (body.model_extra or {}).get(key)

    def need(body: Any, where: str, *keys: str) -> None:
        for key in keys:
            if not extra(body, key):
                errors.append((f"{where}.{key}", f"{key} is required"))

    if t.open_whisk is not None:
        need(t.open_whisk, f"{tpl}.openWhisk", "actionName", "host")
        token = extra(t.open_whisk, "authToken")
        if token is not None and not (isinstance(token, dict) and token.get("name") and token.get("key")):
            errors.append((f"{tpl}.openWhisk.authToken", "name and key are required"))
        if t.open_whisk.payload is None:
            errors.append((f"{tpl}.openWhisk.payload", "payload is required (a list of parameters)"))
    if t.custom is not None:
        need(t.custom, f"{tpl}.custom", "serverURL", "spec")
        if extra(t.custom, "secure") and extra(t.custom, "certSecret") is None:
            errors.append((f"{tpl}.custom.certSecret", "certSecret is required when secure is true"))
    if t.email is not None:
        need(t.email, f"{tpl}.email", "host")
        port = extra(t.email, "port")
        if port is not None and not (isinstance(port, int) and 0 <= port <= 65535):
            errors.append((f"{tpl}.email.port", f"must be between 0 and 65535, got {port!r}"))
    for attr, alias in (("open_whisk", "openWhisk"), ("custom", "custom"),
                        ("email", "email"), ("azure_event_hubs", "azureEventHubs"), ("pulsar", "pulsar"),
                        ("azure_service_bus", "azureServiceBus")):
        body = getattr(t, attr)
        if body is not None:
            errors += _params(body.parameters, f"{tpl}.{alias}.parameters")
            errors += _params(body.payload, f"{tpl}.{alias}.payload")
    return errors


def _policy(trig: Trigger, base: str) -> list[tuple[str, str]]:
    """Argo's validateTriggerPolicy: a k8s policy needs labels (a status policy needs allow: a required field)."""
    t = trig.template
    if trig.policy is None or t is None:
        return []
    if (t.k8s is not None or t.argo_workflow is not None) and trig.policy.k8s is not None \
            and trig.policy.k8s.labels is None:
        return [(f"{base}.policy.k8s.labels", "labels are required (the labels the resource must reach)")]
    return []


def _params(params: list[TriggerParameter] | None, where: str,
            allow_empty_dest: bool = False) -> list[tuple[str, str]]:
    """Argo's validateTriggerParameter. A dependencyName naming no dependency is a warning
    (:func:`sensor_warnings`): trigger-level parameters may rewrite it first."""
    errors = []
    for i, p in enumerate(params or []):
        if p.src is None:
            errors.append((f"{where}[{i}].src", "src is required"))
        elif not p.src.dependency_name:
            errors.append((f"{where}[{i}].src.dependencyName", "dependencyName is required"))
        if not p.dest and not allow_empty_dest:
            errors.append((f"{where}[{i}].dest", "dest is required"))
    return errors


def _filters(f: EventDependencyFilter | None, where: str) -> list[tuple[str, str]]:
    """Regexes must be RE2 (Go) and expressions within the nesting limit: found now, not per event."""
    from airflow_argo_events.core.sensor.expr import ExprError, ExprFilterProgram
    from airflow_argo_events.core.sensor.regex import RegexError, go_regex

    errors: list[tuple[str, str]] = []
    if f is None:
        return errors
    for j, d in enumerate(f.data or []):
        if d.type != "string":
            continue
        for k, value in enumerate(d.value):
            try:
                go_regex(value)
            except RegexError as err:
                errors.append((f"{where}.data[{j}].value[{k}]", str(err)))
    for j, e in enumerate(f.exprs or []):
        try:
            ExprFilterProgram(e.expr)
        except ExprError as err:
            errors.append((f"{where}.exprs[{j}].expr", str(err)))
    return errors


def _inline(text: str, where: str) -> list[tuple[str, str]]:
    """An inline resource is YAML parsed when the trigger fires: hold it to the manifest limits now."""
    import yaml

    from airflow_argo_events.core.spec.loader import load_yaml

    try:
        load_yaml(text)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err)
        return [(where, f"invalid YAML: {' '.join(problem.split())}")]
    except RecursionError:
        return [(where, "invalid YAML: nested too deeply")]
    return []
