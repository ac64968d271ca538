"""Argo's ``Sensor`` manifest (argoproj.io/v1alpha1) as typed models.

Every field of Argo v1.9's SensorSpec loads; trigger types we cannot execute (awsLambda,
custom, openWhisk, pulsar, azure*, email) load too and are refused clearly when run.
Validation follows Argo's admission webhook (``pkg/reconciler/sensor/validate.go``),
plus one deliberate difference: a condition naming an unknown dependency is an error.

>>> s = Sensor.model_validate({"metadata": {"name": "s"}, "spec": {
...     "dependencies": [{"name": "d", "eventSourceName": "es", "eventName": "e"}],
...     "triggers": [{"template": {"name": "t", "log": {}}}]}})
>>> s.spec.triggers[0].template.kind
'log'
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from airflow_argo_events.core.spec.base import ArgoModel, ObjectMeta, OpenModel, SecretKeySelector

LogicalOperator = Literal["", "and", "or"]
Comparator = Literal["", ">=", ">", "=", "!=", "<", "<="]

_CLOCK_RE = re.compile(r"([0-9]{1,2}):([0-9]{2}):([0-9]{2})(?:[.,]([0-9]+))?")


def parse_clock(text: str) -> tuple[int, int, int, int]:
    """``HH:MM:SS`` as Go's ``time.Parse("15:04:05")`` reads it: (hour, minute, second, microsecond).

    The hour may have one digit, minutes and seconds have two, and a fraction of a second
    may follow (Go accepts one even when the layout has none). ValueError otherwise.
    """
    m = _CLOCK_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not HH:MM:SS")
    h, mi, sec = int(m[1]), int(m[2]), int(m[3])
    for value, limit, unit in ((h, 24, "hour"), (mi, 60, "minute"), (sec, 60, "second")):
        if value >= limit:
            raise ValueError(f"{text!r}: {unit} out of range")
    return h, mi, sec, int((m[4] or "0")[:6].ljust(6, "0"))


class PayloadField(ArgoModel):
    path: str = Field(description="GJSON path into the event data.")
    name: str = Field(description="Name the expression uses for the value.")


class ExprFilter(ArgoModel):
    """A govaluate expression over named GJSON paths, e.g. ``a == "x" && b > 10``."""

    expr: str = Field(description="The boolean expression.")
    fields: list[PayloadField] = Field(description="Names bound to paths in the event data.")

    @model_validator(mode="after")
    def _required(self) -> ExprFilter:
        if not self.expr.strip():
            raise ValueError("expr must not be empty")
        if not self.fields:
            raise ValueError("fields must not be empty")
        for i, f in enumerate(self.fields):
            if not f.path or not f.name:
                raise ValueError(f"fields[{i}]: path and name must not be empty")
        return self


class DataFilter(ArgoModel):
    """Compare the value at ``path`` (GJSON) with ``value`` as string (regex), number or bool."""

    path: str = Field(description="GJSON path into the event data.")
    type: Literal["string", "number", "bool"] = Field(description="How to compare: string (regex), number, bool.")
    value: list[str] = Field(description="Values; several are OR-ed.")
    comparator: Comparator = Field("", description="One of >=, >, =, !=, <, <=; empty means =.")
    template: str = Field("", description="Go template applied to the value first, e.g. {{ b64dec .Input }}.")

    @field_validator("value", mode="before")
    @classmethod
    def _scalars(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [str(x).lower() if isinstance(x, bool) else str(x) for x in v]
        return v

    @model_validator(mode="after")
    def _required(self) -> DataFilter:
        if not self.path:
            raise ValueError("path must not be empty")
        if not self.value:
            raise ValueError("value must not be empty")
        for i, v in enumerate(self.value):
            if v == "":
                raise ValueError(f"value[{i}] must not be an empty string")
        return self


class TimeFilter(ArgoModel):
    """Events pass between ``start`` and ``stop`` (HH:MM:SS, UTC or ``timezone``); wraps past midnight."""

    start: str
    stop: str
    timezone: str = ""

    @model_validator(mode="after")
    def _window(self) -> TimeFilter:
        # Argo's webhook parses both with Go's time.Parse and refuses equal times.
        if self.timezone:
            _zone(self.timezone)
        clock = {}
        for name in ("start", "stop"):
            try:
                clock[name] = parse_clock(getattr(self, name))
            except ValueError as err:
                raise PydanticCustomError(
                    "argo_validation", "{summary}",
                    {"summary": f"{name}: {err}", "errors": [(name, f"must be HH:MM:SS: {err}")]}) from None
        if clock["start"] == clock["stop"]:
            raise ValueError(f"start {self.start!r} and stop {self.stop!r} are the same time: the window would be empty")
        return self


class EventContext(ArgoModel):
    """Context filter: each non-empty field must equal the event's."""

    type: str = ""
    subject: str = ""
    source: str = ""
    datacontenttype: str = Field("", alias="datacontenttype")
    id: str = ""
    specversion: str = ""
    time: str = ""

    @model_validator(mode="after")
    def _not_empty(self) -> EventContext:
        if not any([self.type, self.subject, self.source, self.datacontenttype]):
            raise ValueError("context filter must set at least one of type, subject, source, datacontenttype")
        return self


class EventDependencyFilter(ArgoModel):
    time: TimeFilter | None = None
    context: EventContext | None = None
    data: list[DataFilter] | None = None
    exprs: list[ExprFilter] | None = None
    data_logical_operator: LogicalOperator = ""
    expr_logical_operator: LogicalOperator = ""
    script: str = Field("", description="Lua: passes when it returns true; the global `event` is the data.")


class EventDependencyTransformer(ArgoModel):
    jq: str = Field("", description="jq program; its first output (an object) replaces the data.")
    script: str = Field("", description="Lua script returning a table that replaces the data.")


class EventDependency(ArgoModel):
    """One event a sensor waits for."""

    name: str = Field(description="Unique name, used in conditions and parameters.")
    event_source_name: str = Field(description="EventSource name (the CloudEvent source).")
    event_name: str = Field(description="Event name within the EventSource (the CloudEvent subject).")
    filters: EventDependencyFilter | None = None
    transform: EventDependencyTransformer | None = None
    filters_logical_operator: LogicalOperator = ""

    @model_validator(mode="after")
    def _required(self) -> EventDependency:
        for f, alias in (("name", "name"), ("event_source_name", "eventSourceName"), ("event_name", "eventName")):
            if not getattr(self, f):
                raise ValueError(f"{alias} must not be empty")
        return self


class TriggerParameterSource(ArgoModel):
    dependency_name: str = Field(description="Dependency whose event feeds the parameter.")
    context_key: str = ""
    context_template: str = ""
    data_key: str = ""
    data_template: str = ""
    value: str | None = Field(None, description="Default when the key/template gives nothing.")
    use_raw_data: bool = False

    @field_validator("value", mode="before")
    @classmethod
    def _scalar(cls, v: Any) -> Any:
        if isinstance(v, bool):
            return str(v).lower()
        return str(v) if isinstance(v, (int, float)) else v


class TriggerParameter(ArgoModel):
    """Take a value from an event and set it at ``dest`` (an sjson path) in the template or payload."""

    src: TriggerParameterSource | None = None
    dest: str = ""
    operation: Literal["", "append", "overwrite", "prepend"] = ""


class Backoff(ArgoModel):
    """Argo's retry backoff: ``duration`` is a Go duration or nanoseconds."""

    duration: str | int | None = None
    factor: float | str | None = None
    jitter: float | str | None = None
    steps: int | None = None

    def seconds(self) -> float:
        from airflow_argo_events.core.spec.durations import parse_duration

        if self.duration is None:
            return 1.0
        if isinstance(self.duration, int):
            return self.duration / 1e9
        return parse_duration(self.duration)


class RateLimit(ArgoModel):
    unit: Literal["", "Second", "Minute", "Hour"] = ""
    requests_per_unit: int = 0


class StatusPolicy(ArgoModel):
    allow: list[int]


class K8SResourcePolicy(ArgoModel):
    labels: dict[str, str] | None = None
    backoff: Backoff | None = None
    error_on_backoff_timeout: bool = False


class TriggerPolicy(ArgoModel):
    k8s: K8SResourcePolicy | None = None
    status: StatusPolicy | None = None


class ConditionsResetByTime(ArgoModel):
    cron: str = ""
    timezone: str = ""


class ConditionsResetCriteria(ArgoModel):
    by_time: ConditionsResetByTime | None = None


class ArtifactLocation(ArgoModel):
    """Where a K8s/Argo Workflow trigger gets its object; ``resource`` is the inline object."""

    resource: dict[str, Any] | None = None
    inline: str | None = None
    configmap: dict[str, Any] | None = None
    file: dict[str, Any] | None = None
    url: dict[str, Any] | None = None
    git: dict[str, Any] | None = None
    s3: dict[str, Any] | None = None


class BasicAuth(ArgoModel):
    username: SecretKeySelector | None = None
    password: SecretKeySelector | None = None


class TLSConfig(ArgoModel):
    ca_cert_secret: SecretKeySelector | None = None
    client_cert_secret: SecretKeySelector | None = None
    client_key_secret: SecretKeySelector | None = None
    insecure_skip_verify: bool = False
    enabled: bool = Field(False, description="TLS with the system's CAs and no client certificate.")


class ValueFromSource(ArgoModel):
    secret_key_ref: SecretKeySelector | None = None
    config_map_key_ref: SecretKeySelector | None = None


class SecureHeader(ArgoModel):
    name: str = ""
    value_from: ValueFromSource | None = None


class StandardK8STrigger(ArgoModel):
    source: ArtifactLocation | None = None
    operation: str = ""
    parameters: list[TriggerParameter] | None = None
    patch_strategy: str = ""
    live_object: bool = False


class ArgoWorkflowTrigger(ArgoModel):
    source: ArtifactLocation | None = None
    operation: str = ""
    parameters: list[TriggerParameter] | None = None
    args: list[str] | None = None


class HTTPTrigger(ArgoModel):
    url: str
    payload: list[TriggerParameter] | None = None
    tls: TLSConfig | None = None
    method: str = ""
    parameters: list[TriggerParameter] | None = None
    timeout: int = 0
    basic_auth: BasicAuth | None = None
    headers: dict[str, str] | None = None
    secure_headers: list[SecureHeader] | None = None
    dynamic_headers: list[TriggerParameter] | None = None
    host: str = ""


class NATSAuth(ArgoModel):
    basic: BasicAuth | None = None
    token: SecretKeySelector | None = None
    nkey: SecretKeySelector | None = None
    credential: SecretKeySelector | None = None


class NATSTrigger(ArgoModel):
    url: str
    subject: str
    payload: list[TriggerParameter] | None = None
    parameters: list[TriggerParameter] | None = None
    tls: TLSConfig | None = None
    auth: NATSAuth | None = None


class KafkaTrigger(OpenModel):
    url: str
    topic: str
    payload: list[TriggerParameter] | None = None
    parameters: list[TriggerParameter] | None = None
    partitioning_key: str | None = None
    headers: dict[str, str] | None = None


class SlackThread(ArgoModel):
    message_aggregation_key: str = ""
    broadcast_message_to_channel: bool = False


class SlackSender(ArgoModel):
    username: str = ""
    icon: str = ""


class SlackTrigger(ArgoModel):
    parameters: list[TriggerParameter] | None = None
    slack_token: SecretKeySelector | None = None
    channel: str = ""
    message: str = ""
    attachments: str = ""
    blocks: str = ""
    thread: SlackThread | None = None
    sender: SlackSender | None = None


class LogTrigger(ArgoModel):
    interval_seconds: int = 0


class AirflowDagRunTrigger(ArgoModel):
    """This project's extension: start an Airflow DAG run through the REST API v2.

    ``conf`` is built from ``payload`` parameters like an http trigger's body; the run id
    is ``<runIdPrefix><firing id>``, so a retried firing finds its run instead of making
    a second one.
    """

    dag_id: str = Field(description="The DAG to run.")
    url: str = Field("", description="Airflow base URL, e.g. http://localhost:8080; or set connId.")
    conn_id: str = Field("", description="Airflow connection (http) holding the URL and credentials.")
    username: SecretKeySelector | None = None
    password: SecretKeySelector | None = None
    payload: list[TriggerParameter] | None = None
    parameters: list[TriggerParameter] | None = None
    run_id_prefix: str = Field("argo-events__", description="Prefix of the DAG run id.")
    note: str = ""


class UnsupportedTrigger(OpenModel):
    """A trigger type that loads but that this project does not execute."""

    parameters: list[TriggerParameter] | None = None
    payload: list[TriggerParameter] | None = None


TRIGGER_TYPES = ("k8s", "argo_workflow", "http", "nats", "kafka", "slack", "log", "airflow",
                 "aws_lambda", "custom", "open_whisk", "azure_event_hubs", "pulsar", "azure_service_bus", "email")
EXECUTABLE = {"k8s", "argoWorkflow", "http", "nats", "slack", "log", "airflow"}


class TriggerTemplate(ArgoModel):
    name: str = Field(description="Unique trigger name.")
    conditions: str = Field("", description="Boolean expression over dependency names; default: all, joined with &&.")
    conditions_reset: list[ConditionsResetCriteria] | None = None
    k8s: StandardK8STrigger | None = None
    argo_workflow: ArgoWorkflowTrigger | None = None
    http: HTTPTrigger | None = None
    nats: NATSTrigger | None = None
    kafka: KafkaTrigger | None = None
    slack: SlackTrigger | None = None
    log: LogTrigger | None = None
    airflow: AirflowDagRunTrigger | None = Field(None, description="Extension: start an Airflow DAG run.")
    aws_lambda: UnsupportedTrigger | None = Field(None, alias="awsLambda")
    custom: UnsupportedTrigger | None = None
    open_whisk: UnsupportedTrigger | None = None
    azure_event_hubs: UnsupportedTrigger | None = None
    pulsar: UnsupportedTrigger | None = None
    azure_service_bus: UnsupportedTrigger | None = None
    email: UnsupportedTrigger | None = None

    @property
    def kind(self) -> str:
        """The trigger type as Argo names it (``k8s``, ``argoWorkflow``, ``http``, ...)."""
        for f in TRIGGER_TYPES:
            if getattr(self, f) is not None:
                return str(type(self).model_fields[f].alias)
        return ""

    @property
    def body(self) -> Any:
        """The trigger type's block (e.g. the HTTPTrigger)."""
        for f in TRIGGER_TYPES:
            value = getattr(self, f)
            if value is not None:
                return value
        return None


class Trigger(ArgoModel):
    template: TriggerTemplate | None = None
    parameters: list[TriggerParameter] | None = None
    policy: TriggerPolicy | None = None
    retry_strategy: Backoff | None = None
    rate_limit: RateLimit | None = None
    at_least_once: bool = False
    dlq_trigger: Trigger | None = None


class SensorSpec(ArgoModel):
    dependencies: list[EventDependency]
    triggers: list[Trigger]
    template: dict[str, Any] | None = Field(None, description="Pod template: accepted, unused outside Kubernetes.")
    error_on_failed_round: bool = False
    event_bus_name: str = ""
    replicas: int | None = None
    revision_history_limit: int | None = None
    logging_fields: dict[str, str] | None = None


class Sensor(ArgoModel):
    """An Argo Sensor manifest; ``validate()`` runs Argo's admission checks."""

    api_version: str = Field("argoproj.io/v1alpha1", alias="apiVersion")
    kind: Literal["Sensor"] = "Sensor"
    metadata: ObjectMeta
    spec: SensorSpec
    status: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _validate(self) -> Sensor:
        from airflow_argo_events.core.spec.sensor_validation import validate_sensor

        errors = validate_sensor(self)
        if errors:
            # spec_error turns these back into one "path: message" line each.
            raise PydanticCustomError(
                "argo_validation", "{summary}",
                {"summary": "; ".join(f"{p}: {m}" for p, m in errors), "errors": errors},
            )
        return self

    def warnings(self) -> list[tuple[str, str]]:
        """What Argo accepts but is likely a mistake, as ``(field path, message)``."""
        from airflow_argo_events.core.spec.sensor_validation import sensor_warnings

        return sensor_warnings(self)

    def dependency(self, name: str) -> EventDependency:
        for d in self.spec.dependencies:
            if d.name == name:
                return d
        raise KeyError(name)


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown timezone {name!r}") from err
