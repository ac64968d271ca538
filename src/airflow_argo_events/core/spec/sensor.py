"""Argo's ``Sensor`` manifest (argoproj.io/v1alpha1) as typed models.

Every field of Argo v1.9's SensorSpec loads; trigger types we cannot execute (custom,
openWhisk, pulsar, azure*, email) load too and are refused clearly when run.
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
from airflow_argo_events.core.spec.extensions import extension

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


class SASLConfig(ArgoModel):
    """Kafka SASL (Argo's ``SASLConfig``): PLAIN unless another mechanism is named."""

    mechanism: str = Field("", description="PLAIN (default), SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or GSSAPI.")
    user_secret: SecretKeySelector | None = None
    password_secret: SecretKeySelector | None = None

    def get_mechanism(self) -> str:
        return self.mechanism if self.mechanism in ("OAUTHBEARER", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI") \
            else "PLAIN"


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


class KafkaTrigger(ArgoModel):
    """Argo's kafka trigger: the payload as one record; the firing id rides in ``Idempotency-Key``."""

    url: str = Field(description="Brokers, comma-separated host:port.")
    topic: str
    partition: int = Field(0, description="Deprecated in Argo and ignored there too.")
    parameters: list[TriggerParameter] | None = None
    required_acks: int = Field(0, description="0 = all replicas (Argo's default), 1 = leader, -1 = all.")
    compress: bool = Field(False, description="Snappy-compress records.")
    flush_frequency: int = Field(0, description="Milliseconds a batch may wait (default 500 in Argo; linger here).")
    tls: TLSConfig | None = None
    payload: list[TriggerParameter] | None = None
    partitioning_key: str | None = Field(None, description="Record key; default: the firing id.")
    version: str = Field("", description="Kafka protocol version for sarama; the client here negotiates it.")
    sasl: SASLConfig | None = None
    schema_registry: dict[str, Any] | None = Field(None, description="Avro via a schema registry: not supported here.")
    headers: dict[str, str] | None = None
    secure_headers: list[SecureHeader] | None = None


LAMBDA_INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")


class AWSLambdaTrigger(ArgoModel):
    """Argo's awsLambda trigger: invoke a function with the payload built from ``payload`` parameters.

    The firing id rides in the invocation's ClientContext (``custom.idempotencyKey``), which
    Lambda hands to the function for synchronous (RequestResponse) invocations.

    >>> AWSLambdaTrigger.model_validate({"functionName": "hello", "region": "us-east-1", "payload": []}).function_name
    'hello'
    """

    function_name: str = Field("", description="Name, ARN or partial ARN of the function (with :version or :alias).")
    access_key: SecretKeySelector | None = Field(None, description="AWS access key id; without it the default chain.")
    secret_key: SecretKeySelector | None = Field(None, description="AWS secret access key.")
    region: str = Field("", description="AWS region of the function.")
    payload: list[TriggerParameter] | None = Field(None, description="Parameters that build the function's input.")
    parameters: list[TriggerParameter] | None = None
    invocation_type: str | None = Field(
        None, description="RequestResponse (default: wait for the function), Event (queue it) or DryRun.")
    role_arn: str = Field("", alias="roleARN", description="Role to assume through STS.")
    endpoint: str = Field("", description="Extension (not in Argo): another Lambda endpoint (LocalStack, moto, a "
                                          "VPC endpoint).", json_schema_extra=extension("awsLambda endpoint"))


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


class PrefectTrigger(ArgoModel):
    """This project's extension: create one flow run of a Prefect deployment per firing.

    ``parameters`` are Argo trigger parameters whose ``dest`` is a path in the flow run's
    parameters (``order_id``, ``customer.name``): the same rules as an http trigger's
    ``payload``. The firing id is the flow run's idempotency key, so a retried firing
    finds its run instead of making a second one.

    >>> PrefectTrigger.model_validate({"deployment": "orders/process"}).deployment
    'orders/process'
    """

    deployment: str = Field(description="The deployment as 'flow name/deployment name', or its id (a UUID).")
    parameters: list[TriggerParameter] | None = Field(
        None, description="Flow run parameters built from the events; dest is the parameter's path.")
    tags: list[str] | None = Field(None, description="Tags of the flow run (added to the deployment's).")
    job_variables: dict[str, Any] | None = Field(None, description="Job variables for the work pool's worker.")
    flow_run_name: str = Field("", description="Name of the flow run (default: Prefect's generated name).")
    work_queue_name: str = Field("", description="Work queue of the run (default: the deployment's).")


class PrefectEventTrigger(ArgoModel):
    """This project's extension: emit one Prefect event per firing (automations can react to it).

    ``payload`` builds the event's payload as an http trigger's body; ``parameters`` may
    rewrite this block (e.g. ``dest: resource.order``). The event id is derived from the
    firing id, so a retried firing emits the same event.
    """

    event: str = Field(description="The event name, e.g. 'shop.order.paid'.")
    resource: dict[str, str] | None = Field(
        None, description="The event's resource labels; prefect.resource.id defaults to argo-events.sensor.<name>.")
    related: list[dict[str, str]] | None = Field(None, description="Related resources (each with prefect.resource.id "
                                                                   "and prefect.resource.role).")
    payload: list[TriggerParameter] | None = None
    parameters: list[TriggerParameter] | None = None


class UnsupportedTrigger(OpenModel):
    """A trigger type that loads but that this project does not execute."""

    parameters: list[TriggerParameter] | None = None
    payload: list[TriggerParameter] | None = None


TRIGGER_TYPES = ("k8s", "argo_workflow", "http", "nats", "kafka", "slack", "log", "airflow", "prefect",
                 "prefect_event", "aws_lambda", "custom", "open_whisk", "azure_event_hubs", "pulsar",
                 "azure_service_bus", "email")
EXECUTABLE = {"k8s", "argoWorkflow", "http", "nats", "kafka", "slack", "log", "airflow", "prefect", "prefectEvent",
              "awsLambda"}
EXTENSION_TRIGGERS = {"airflow": "starts an Airflow DAG run", "prefect": "creates a Prefect flow run",
                      "prefectEvent": "emits a Prefect event"}
"""Trigger kinds this project adds to Argo's (``validate`` names them; Argo refuses them)."""


MAX_THRESHOLD = 10_000
"""A threshold counts at most this many events (their ids live in one state entry)."""
DEFAULT_MAX_PENDING = 100_000


class Correlation(ArgoModel):
    """Extension (not in Argo Events): condition state kept per correlation key, a time
    window and thresholds. A plain Argo manifest never has it, and behaves as in Argo.

    ``keys`` maps every dependency of the condition to a GJSON path in its event; events
    with the same key value are matched together, each key value with its own condition
    state. ``window`` (a Go duration) makes an event count only that long after its time.
    ``threshold`` asks for N events of a dependency (within the window) before it counts.

    >>> c = Correlation.model_validate({"keys": {"order": "body.id", "payment": "body.orderId"},
    ...                                 "window": "15m", "maxPending": 1000})
    >>> c.window_seconds(), c.max_pending
    (900.0, 1000)
    """

    keys: dict[str, str] | None = Field(
        None, description="GJSON path of the correlation key per dependency, e.g. {order: body.id}.",
        json_schema_extra=extension("correlation keys"))
    window: str = Field("", description="Go duration: an event counts this long after its time, e.g. 15m.",
                        json_schema_extra=extension("correlation window"))
    max_pending: int | None = Field(
        None, description=f"Most keys with a partial match (default {DEFAULT_MAX_PENDING:,}); the oldest are "
                          "evicted beyond it, counted and logged.",
        json_schema_extra=extension("correlation maxPending"))
    threshold: dict[str, int] | None = Field(
        None, description="Events of a dependency needed before it counts, e.g. {failure: 3}.",
        json_schema_extra=extension("threshold"))

    def window_seconds(self) -> float | None:
        from airflow_argo_events.core.spec.durations import parse_duration

        return parse_duration(self.window) if self.window else None


class TriggerTemplate(ArgoModel):
    name: str = Field(description="Unique trigger name.")
    conditions: str = Field("", description="Boolean expression over dependency names; default: all, joined with &&.")
    conditions_reset: list[ConditionsResetCriteria] | None = None
    correlation: Correlation | None = Field(
        None, description="Extension: condition state per correlation key, a time window, thresholds.")
    k8s: StandardK8STrigger | None = None
    argo_workflow: ArgoWorkflowTrigger | None = None
    http: HTTPTrigger | None = None
    nats: NATSTrigger | None = None
    kafka: KafkaTrigger | None = None
    slack: SlackTrigger | None = None
    log: LogTrigger | None = None
    airflow: AirflowDagRunTrigger | None = Field(None, description="Extension: start an Airflow DAG run.",
                                                 json_schema_extra=extension("airflow trigger"))
    prefect: PrefectTrigger | None = Field(None, description="Extension: create a Prefect flow run.",
                                           json_schema_extra=extension("prefect trigger"))
    prefect_event: PrefectEventTrigger | None = Field(None, description="Extension: emit a Prefect event.",
                                                      json_schema_extra=extension("prefectEvent trigger"))
    aws_lambda: AWSLambdaTrigger | None = Field(None, alias="awsLambda")
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

    def extensions(self) -> list[tuple[str, str]]:
        """This project's additions to Argo the manifest uses, as ``(field path, what it does)``."""
        out = []
        for i, trig in enumerate(self.spec.triggers):
            t = trig.template
            if t is not None and t.kind in EXTENSION_TRIGGERS:
                out.append((f"spec.triggers[{i}].template.{t.kind}", EXTENSION_TRIGGERS[t.kind]))
        return out

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
