"""Argo's admission checks for a Sensor (``pkg/reconciler/sensor/validate.go``), with field paths."""

from __future__ import annotations

from typing import TYPE_CHECKING

from croniter import croniter

if TYPE_CHECKING:
    from airflow_argo_events.core.spec.sensor import EventDependencyFilter, Sensor, TriggerParameter

K8S_OPERATIONS = {"", "create", "update", "patch", "delete"}
WORKFLOW_OPERATIONS = {"submit", "submit-from", "suspend", "retry", "resume", "resubmit", "terminate", "stop"}
CRON_FIELDS = 5


def validate_sensor(sensor: Sensor) -> list[tuple[str, str]]:
    from airflow_argo_events.core.sensor.conditions import Condition, ConditionError, canonical

    errors: list[tuple[str, str]] = []
    spec = sensor.spec
    if not spec.dependencies:
        errors.append(("spec.dependencies", "at least one dependency is required"))
    seen: dict[str, int] = {}
    for i, dep in enumerate(spec.dependencies):
        if dep.name in seen:
            errors.append((f"spec.dependencies[{i}].name", f"duplicate dependency name {dep.name!r}"))
        seen[dep.name] = i
    known = {canonical(n) for n in seen}
    for i, dep in enumerate(spec.dependencies):
        errors += _filters(dep.filters, f"spec.dependencies[{i}].filters")
    if not spec.triggers:
        errors.append(("spec.triggers", "at least one trigger is required"))
    names: set[str] = set()
    for i, trig in enumerate(spec.triggers):
        base = f"spec.triggers[{i}]"
        t = trig.template
        if t is None:
            errors.append((f"{base}.template", "trigger template is required"))
            continue
        if not t.name:
            errors.append((f"{base}.template.name", "trigger name is required"))
        elif t.name in names:
            errors.append((f"{base}.template.name", f"duplicate trigger name {t.name!r}"))
        names.add(t.name)
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
                                   f"known: {', '.join(sorted(seen))}"))
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
        kinds = [k for k in ("k8s", "argo_workflow", "http", "nats", "kafka", "slack", "log", "airflow", "aws_lambda",
                             "custom",
                             "open_whisk", "azure_event_hubs", "pulsar", "azure_service_bus", "email")
                 if getattr(t, k) is not None]
        if len(kinds) != 1:
            errors.append((f"{base}.template", "exactly one trigger type (k8s, argoWorkflow, http, ...) must be set"
                           if not kinds else f"only one trigger type may be set, found {len(kinds)}"))
        for kind, alias in (("k8s", "k8s"), ("argo_workflow", "argoWorkflow")):
            body = getattr(t, kind)
            if body is not None and body.source is not None and body.source.inline:
                errors += _inline(body.source.inline, f"{base}.template.{alias}.source.inline")
        if t.k8s is not None:
            if t.k8s.source is None:
                errors.append((f"{base}.template.k8s.source", "source is required"))
            if t.k8s.operation not in K8S_OPERATIONS:
                errors.append((f"{base}.template.k8s.operation", f"unknown operation {t.k8s.operation!r}"))
            errors += _params(t.k8s.parameters, f"{base}.template.k8s.parameters", known)
        if t.argo_workflow is not None:
            if t.argo_workflow.operation not in WORKFLOW_OPERATIONS:
                errors.append((f"{base}.template.argoWorkflow.operation",
                               f"operation must be one of {', '.join(sorted(WORKFLOW_OPERATIONS))}, "
                               f"got {t.argo_workflow.operation!r}"))
            if t.argo_workflow.source is None and t.argo_workflow.operation in ("submit", ""):
                errors.append((f"{base}.template.argoWorkflow.source", "source is required"))
            errors += _params(t.argo_workflow.parameters, f"{base}.template.argoWorkflow.parameters", known)
        for kind, alias in (("http", "http"), ("nats", "nats"), ("kafka", "kafka"), ("slack", "slack"),
                            ("airflow", "airflow")):
            body = getattr(t, kind)
            if body is None:
                continue
            errors += _params(getattr(body, "parameters", None), f"{base}.template.{alias}.parameters", known)
            if hasattr(body, "payload"):
                errors += _params(body.payload, f"{base}.template.{alias}.payload", known,
                                  allow_empty_dest=kind == "http")
        if t.airflow is not None and not (t.airflow.url or t.airflow.conn_id):
            errors.append((f"{base}.template.airflow", "url or connId is required"))
        errors += _params(trig.parameters, f"{base}.parameters", known)
        if trig.rate_limit and trig.rate_limit.requests_per_unit < 0:
            errors.append((f"{base}.rateLimit.requestsPerUnit", "must not be negative"))
        if trig.dlq_trigger is not None and trig.dlq_trigger.template is None:
            errors.append((f"{base}.dlqTrigger.template", "trigger template is required"))
    return errors


def _params(params: list[TriggerParameter] | None, where: str, known: set[str],
            allow_empty_dest: bool = False) -> list[tuple[str, str]]:
    from airflow_argo_events.core.sensor.conditions import canonical

    errors = []
    for i, p in enumerate(params or []):
        if p.src is None:
            errors.append((f"{where}[{i}].src", "src is required"))
        elif not p.src.dependency_name:
            errors.append((f"{where}[{i}].src.dependencyName", "dependencyName is required"))
        elif canonical(p.src.dependency_name) not in known:
            errors.append((f"{where}[{i}].src.dependencyName", f"unknown dependency {p.src.dependency_name!r}"))
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
