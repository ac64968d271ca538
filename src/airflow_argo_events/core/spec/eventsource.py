"""Argo's ``EventSource`` manifest as typed models.

The source types this project runs (webhook, calendar, file, hdfs, nats, amqp, mqtt,
redis, redisStream) are typed field by field with Argo's names; every other Argo type
loads as an open block and is reported as not supported when run. Each type is a map
from event name to its config: the event name becomes the CloudEvent subject.

>>> es = EventSource.model_validate({"metadata": {"name": "hdfs"}, "spec": {"hdfs": {"example": {
...     "directory": "/tmp/", "type": "CREATE", "path": "x.txt", "addresses": ["nn:9870"]}}}})
>>> [(e.type, e.name) for e in es.events()]
[('hdfs', 'example')]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from airflow_argo_events.core.spec.base import (
    ArgoModel,
    ConfigMapKeySelector,
    ObjectMeta,
    OpenModel,
    SecretKeySelector,
)
from airflow_argo_events.core.spec.durations import parse_duration
from airflow_argo_events.core.spec.sensor import Backoff, BasicAuth, TLSConfig

FILE_OPS = ("CREATE", "WRITE", "REMOVE", "RENAME", "CHMOD")
HDFS_CONNECT_TIMEOUT = 5.0
HDFS_READ_TIMEOUT = 30.0


class EventSourceFilter(ArgoModel):
    expression: str = Field("", description="Expression over the payload; events where it is false are dropped.")


class WebhookContext(ArgoModel):
    endpoint: str = Field(description="HTTP path, e.g. /example.")
    method: str = Field(description="HTTP method accepted, e.g. POST.")
    port: str = Field(description="Port to listen on (a string, as in Argo).")
    url: str = ""
    server_cert_secret: SecretKeySelector | None = Field(
        None, description="PEM certificate (chain) to serve HTTPS with; needs serverKeySecret.")
    server_key_secret: SecretKeySelector | None = Field(
        None, description="PEM private key for serverCertSecret (unencrypted).")
    metadata: dict[str, str] | None = None
    auth_secret: SecretKeySelector | None = Field(None, description="Bearer token the caller must send.")
    max_payload_size: int | None = Field(None, description="Largest body accepted, bytes (default 1048576).")

    @model_validator(mode="before")
    @classmethod
    def _port_as_string(cls, v: Any) -> Any:
        if isinstance(v, dict) and isinstance(v.get("port"), int):
            v = {**v, "port": str(v["port"])}
        return v


class WebhookEventSource(WebhookContext):
    filter: EventSourceFilter | None = None
    signature: WebhookSignature | None = Field(
        None, description="This project's extension: verify GitHub/GitLab/Bitbucket/Stripe/HMAC signatures.")


class WebhookSignature(ArgoModel):
    """Signature check (an extension; Argo puts these in its github/gitlab/... source types)."""

    kind: Literal["github", "gitlab", "bitbucket", "stripe", "hmac"]
    secret: SecretKeySelector
    header: str = Field("", description="hmac only: header carrying the hex signature.")
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"


class CatchupConfiguration(ArgoModel):
    enabled: bool = False
    max_duration: str = ""


class EventPersistence(ArgoModel):
    catchup: CatchupConfiguration | None = None
    config_map: dict[str, Any] | None = None


class CalendarEventSource(ArgoModel):
    schedule: str = Field("", description="5-field cron.")
    interval: str = Field("", description="Go duration between events, e.g. 10s.")
    exclusion_dates: list[str] | None = None
    timezone: str = ""
    metadata: dict[str, str] | None = None
    persistence: EventPersistence | None = None
    filter: EventSourceFilter | None = None


class WatchPathConfig(ArgoModel):
    directory: str = ""
    path: str = ""
    path_regexp: str = ""


class FileEventSource(ArgoModel):
    event_type: str = Field(description="CREATE, WRITE, REMOVE, RENAME or CHMOD (several with |).")
    watch_path_config: WatchPathConfig
    polling: bool = False
    metadata: dict[str, str] | None = None
    filter: EventSourceFilter | None = None


class HDFSEventSource(ArgoModel):
    directory: str = Field(description="Directory watched recursively.")
    path: str = ""
    path_regexp: str = ""
    type: str = Field(description="Operations to report: CREATE, WRITE, REMOVE, RENAME, CHMOD, joined with |.")
    check_interval: str = Field("", description="Go duration between scans (default 1m).")
    addresses: list[str] = Field(description="WebHDFS addresses (namenode host:port) tried in order.")
    hdfs_user: str = ""
    krb_c_cache_secret: SecretKeySelector | None = Field(None, alias="krbCCacheSecret")
    krb_keytab_secret: SecretKeySelector | None = None
    krb_username: str = ""
    krb_realm: str = ""
    krb_config_config_map: ConfigMapKeySelector | None = None
    krb_service_principal_name: str = ""
    metadata: dict[str, str] | None = None
    filter: EventSourceFilter | None = None
    connect_timeout: str = Field(
        "", description="Extension (not in Argo): Go duration to wait for a namenode's TCP connection (default 5s).")
    read_timeout: str = Field(
        "", description="Extension (not in Argo): Go duration a namenode may stay silent during one WebHDFS "
                        "request before the next address is tried (default 30s).")

    def interval_seconds(self) -> float:
        return parse_duration(self.check_interval) if self.check_interval else 60.0

    def timeouts(self) -> tuple[float, float]:
        """(connect, read) seconds for every WebHDFS request."""
        return (parse_duration(self.connect_timeout) if self.connect_timeout else HDFS_CONNECT_TIMEOUT,
                parse_duration(self.read_timeout) if self.read_timeout else HDFS_READ_TIMEOUT)


class NATSAuthSpec(ArgoModel):
    basic: BasicAuth | None = None
    token: SecretKeySelector | None = None
    nkey: SecretKeySelector | None = None
    credential: SecretKeySelector | None = None


class NATSEventsSource(ArgoModel):
    url: str
    subject: str
    connection_backoff: Backoff | None = None
    json_body: bool = Field(False, alias="jsonBody")
    tls: TLSConfig | None = None
    metadata: dict[str, str] | None = None
    auth: NATSAuthSpec | None = None
    filter: EventSourceFilter | None = None
    queue: str | None = None


class AMQPAuth(ArgoModel):
    username: SecretKeySelector | None = None
    password: SecretKeySelector | None = None


class AMQPEventSource(ArgoModel):
    url: str = ""
    url_secret: SecretKeySelector | None = None
    exchange_name: str
    exchange_type: str
    routing_key: str
    connection_backoff: Backoff | None = None
    json_body: bool = Field(False, alias="jsonBody")
    tls: TLSConfig | None = None
    metadata: dict[str, str] | None = None
    exchange_declare: dict[str, Any] | None = None
    queue_declare: dict[str, Any] | None = None
    queue_bind: dict[str, Any] | None = None
    consume: dict[str, Any] | None = None
    auth: AMQPAuth | None = None
    filter: EventSourceFilter | None = None


class MQTTEventSource(ArgoModel):
    url: str
    topic: str
    client_id: str = Field("", alias="clientId")
    connection_backoff: Backoff | None = None
    json_body: bool = Field(False, alias="jsonBody")
    tls: TLSConfig | None = None
    metadata: dict[str, str] | None = None
    filter: EventSourceFilter | None = None
    auth: BasicAuth | None = None


class RedisEventSource(ArgoModel):
    host_address: str
    password: SecretKeySelector | None = None
    namespace: str = ""
    db: int = Field(0, alias="db")
    channels: list[str]
    tls: TLSConfig | None = None
    metadata: dict[str, str] | None = None
    filter: EventSourceFilter | None = None
    json_body: bool = Field(False, alias="jsonBody")
    username: str = ""


class RedisStreamEventSource(ArgoModel):
    host_address: str
    password: SecretKeySelector | None = None
    db: int = Field(0, alias="db")
    streams: list[str]
    max_msg_count_per_read: int = 0
    consumer_group: str = ""
    tls: TLSConfig | None = None
    metadata: dict[str, str] | None = None
    filter: EventSourceFilter | None = None
    username: str = ""


SUPPORTED = ("webhook", "calendar", "file", "hdfs", "nats", "amqp", "mqtt", "redis", "redisStream")
OTHER_TYPES = ("azureEventsHub", "azureQueueStorage", "azureServiceBus", "bitbucket", "bitbucketserver", "emitter",
               "generic", "gerrit", "github", "gitlab", "kafka", "minio", "nsq", "pubSub", "pulsar", "resource",
               "sftp", "slack", "sns", "sqs", "storageGrid", "stripe")


class EventSourceSpec(ArgoModel):
    template: dict[str, Any] | None = None
    service: dict[str, Any] | None = None
    event_bus_name: str = ""
    replicas: int | None = None
    webhook: dict[str, WebhookEventSource] | None = None
    calendar: dict[str, CalendarEventSource] | None = None
    file: dict[str, FileEventSource] | None = None
    hdfs: dict[str, HDFSEventSource] | None = None
    nats: dict[str, NATSEventsSource] | None = None
    amqp: dict[str, AMQPEventSource] | None = None
    mqtt: dict[str, MQTTEventSource] | None = None
    redis: dict[str, RedisEventSource] | None = None
    redis_stream: dict[str, RedisStreamEventSource] | None = None
    azure_events_hub: dict[str, OpenModel] | None = None
    azure_queue_storage: dict[str, OpenModel] | None = None
    azure_service_bus: dict[str, OpenModel] | None = None
    bitbucket: dict[str, OpenModel] | None = None
    bitbucketserver: dict[str, OpenModel] | None = None
    emitter: dict[str, OpenModel] | None = None
    generic: dict[str, OpenModel] | None = None
    gerrit: dict[str, OpenModel] | None = None
    github: dict[str, OpenModel] | None = None
    gitlab: dict[str, OpenModel] | None = None
    kafka: dict[str, OpenModel] | None = None
    minio: dict[str, OpenModel] | None = None
    nsq: dict[str, OpenModel] | None = None
    pub_sub: dict[str, OpenModel] | None = None
    pulsar: dict[str, OpenModel] | None = None
    resource: dict[str, OpenModel] | None = None
    sftp: dict[str, OpenModel] | None = None
    slack: dict[str, OpenModel] | None = None
    sns: dict[str, OpenModel] | None = None
    sqs: dict[str, OpenModel] | None = None
    storage_grid: dict[str, OpenModel] | None = None
    stripe: dict[str, OpenModel] | None = None


@dataclass(frozen=True)
class EventConfig:
    """One event of an EventSource: its type, name, and config block."""

    source: str
    type: str
    name: str
    spec: Any

    @property
    def supported(self) -> bool:
        return self.type in SUPPORTED


class EventSource(ArgoModel):
    """An Argo EventSource manifest; ``events()`` lists (type, name, config)."""

    api_version: str = Field("argoproj.io/v1alpha1", alias="apiVersion")
    kind: Literal["EventSource"] = "EventSource"
    metadata: ObjectMeta
    spec: EventSourceSpec
    status: dict[str, Any] | None = None

    def events(self) -> list[EventConfig]:
        out = []
        for fname, finfo in EventSourceSpec.model_fields.items():
            if fname in ("template", "service", "event_bus_name", "replicas"):
                continue
            block = getattr(self.spec, fname)
            if block:
                for name, cfg in block.items():
                    out.append(EventConfig(self.metadata.name, str(finfo.alias), name, cfg))
        return out

    def warnings(self) -> list[tuple[str, str]]:
        """What runs here but is likely a mistake, as ``(field path, message)``."""
        return eventsource_warnings(self)

    def event(self, name: str) -> EventConfig:
        for e in self.events():
            if e.name == name:
                return e
        raise KeyError(f"EventSource {self.metadata.name} has no event {name!r}; "
                       f"it has {', '.join(e.name for e in self.events())}")

    @model_validator(mode="after")
    def _validate(self) -> EventSource:
        errors = validate_eventsource(self)
        if errors:
            raise PydanticCustomError(
                "argo_validation", "{summary}",
                {"summary": "; ".join(f"{p}: {m}" for p, m in errors), "errors": errors},
            )
        return self


def _ops(text: str) -> list[str]:
    return [p.strip() for p in text.split("|") if p.strip()]


def validate_eventsource(es: EventSource) -> list[tuple[str, str]]:
    """Argo's per-type ``ValidateEventSource`` checks, with field paths."""
    errors: list[tuple[str, str]] = []
    events = es.events()
    if not events:
        errors.append(("spec", "at least one event source (webhook, calendar, file, hdfs, ...) is required"))
    names: dict[str, str] = {}
    tls_by_port: dict[str, tuple[str, Any]] = {}
    for e in events:
        where = f"spec.{e.type}.{e.name}"
        if e.name in names:
            errors.append((where, f"duplicate event name {e.name!r} (also under {names[e.name]})"))
        names[e.name] = e.type
        c = e.spec
        if e.type == "webhook":
            if not c.endpoint.startswith("/"):
                errors.append((f"{where}.endpoint", "must start with '/'"))
            if not c.port.isdigit():
                errors.append((f"{where}.port", f"must be a port number, got {c.port!r}"))
            if not c.method:
                errors.append((f"{where}.method", "is required"))
            if c.max_payload_size is not None and c.max_payload_size <= 0:
                errors.append((f"{where}.maxPayloadSize", "must be positive"))
            errors += _webhook_tls(c, where, tls_by_port)
        elif e.type == "calendar":
            if not c.schedule and not c.interval:
                errors.append((where, "one of schedule or interval is required"))
            if c.schedule:
                from croniter import croniter

                if len(c.schedule.split()) != 5 or not croniter.is_valid(c.schedule):
                    errors.append((f"{where}.schedule", f"invalid cron {c.schedule!r} (5 fields expected)"))
            if c.interval:
                try:
                    if parse_duration(c.interval) <= 0:
                        raise ValueError("must be positive")
                except ValueError as err:
                    errors.append((f"{where}.interval", str(err)))
            if c.timezone:
                from airflow_argo_events.core.spec.sensor import _zone

                try:
                    _zone(c.timezone)
                except ValueError as err:
                    errors.append((f"{where}.timezone", str(err)))
        elif e.type == "file":
            if not c.event_type:
                errors.append((f"{where}.eventType", "is required"))
            errors += _bad_ops(c.event_type, f"{where}.eventType")
            errors += _watch(c.watch_path_config.directory, c.watch_path_config.path, c.watch_path_config.path_regexp,
                             f"{where}.watchPathConfig")
        elif e.type == "hdfs":
            errors += _watch(c.directory, c.path, c.path_regexp, where)
            errors += _hdfs_auth(c, where)
            if not c.type:
                errors.append((f"{where}.type", "is required"))
            errors += _bad_ops(c.type, f"{where}.type")
            if not c.addresses:
                errors.append((f"{where}.addresses", "at least one address is required"))
            for field, value in (("checkInterval", c.check_interval), ("connectTimeout", c.connect_timeout),
                                 ("readTimeout", c.read_timeout)):
                if value:
                    try:
                        if parse_duration(value) <= 0:
                            raise ValueError(f"must be positive, got {value!r}")
                    except ValueError as err:
                        errors.append((f"{where}.{field}", str(err)))
        elif e.type == "amqp":
            if not (c.url or c.url_secret):
                errors.append((f"{where}.url", "url or urlSecret is required"))
            elif c.url and c.url_secret:
                errors.append((f"{where}.urlSecret", "only one of url or urlSecret may be set"))
            errors += _nonempty(c, where, ("routing_key", "routingKey"), ("exchange_type", "exchangeType"))
            errors += _basic_auth(c.auth, f"{where}.auth")
        elif e.type == "nats":
            errors += _nonempty(c, where, ("url", "url"), ("subject", "subject"))
            if c.queue == "":
                errors.append((f"{where}.queue", "must not be empty when set"))
        elif e.type == "mqtt":
            errors += _nonempty(c, where, ("url", "url"), ("topic", "topic"), ("client_id", "clientId"))
            errors += _basic_auth(c.auth, f"{where}.auth")
        elif e.type == "redis":
            errors += _nonempty(c, where, ("host_address", "hostAddress"))
            if c.password is not None and not c.namespace:
                errors.append((f"{where}.namespace", "is required with password (Argo reads the secret there)"))
        elif e.type == "redisStream":
            errors += _nonempty(c, where, ("host_address", "hostAddress"))
        if e.type in ("nats", "amqp", "mqtt", "redis", "redisStream"):
            errors += _tls(c.tls, f"{where}.tls")
    return errors


RECREATE_TYPES = frozenset({"amqp", "calendar", "kafka", "pubSub", "azureEventsHub", "azureServiceBus", "nats",
                            "mqtt", "minio", "emitter", "nsq", "pulsar", "redis", "redisStream", "resource", "hdfs",
                            "file", "sftp", "generic"})
"""Argo's RecreateStrategyEventSources: types whose Deployment must not run twice at once."""

HDFS_RPC_PORT = 8020


def eventsource_warnings(es: EventSource) -> list[tuple[str, str]]:
    """What runs here but is likely a mistake, as ``(field path, message)`` for ``validate``."""
    out: list[tuple[str, str]] = []
    types = {e.type for e in es.events()}
    recreate = sorted(types & RECREATE_TYPES)
    rolling = sorted(types - RECREATE_TYPES)
    if recreate and rolling:
        out.append(("spec", f"Argo refuses {', '.join(rolling)} and {', '.join(recreate)} in one EventSource "
                            "(their Deployments update differently); it runs here, split it to deploy on Argo"))
    for e in es.events():
        if e.type != "hdfs":
            continue
        for i, address in enumerate(e.spec.addresses):
            if address.rpartition(":")[2] == str(HDFS_RPC_PORT):
                out.append((f"spec.hdfs.{e.name}.addresses[{i}]",
                            f"port {HDFS_RPC_PORT} is the namenode's Hadoop RPC port, which this provider does not "
                            "speak: WebHDFS is the namenode's HTTP port, usually 9870 "
                            f"(write {address.rpartition(':')[0]}:9870)"))
    return out


def _nonempty(c: Any, where: str, *fields: tuple[str, str]) -> list[tuple[str, str]]:
    return [(f"{where}.{alias}", "must not be empty") for name, alias in fields if not getattr(c, name)]


def _basic_auth(auth: Any, where: str) -> list[tuple[str, str]]:
    if auth is None:
        return []
    return [(f"{where}.{f}", "is required") for f in ("username", "password") if getattr(auth, f) is None]


def _tls(tls: Any, where: str) -> list[tuple[str, str]]:
    """Argo's ValidateTLSConfig: something to verify with, and a client certificate with its key."""
    if tls is None or tls.insecure_skip_verify:
        return []
    cert, key = tls.client_cert_secret is not None, tls.client_key_secret is not None
    if not (tls.ca_cert_secret is not None or cert or key or tls.enabled):
        return [(where, "set caCertSecret, or clientCertSecret and clientKeySecret, or enabled: true")]
    if cert != key:
        return [(where, "clientCertSecret and clientKeySecret go together")]
    return []


def _hdfs_auth(c: Any, where: str) -> list[tuple[str, str]]:
    """Argo's HDFS checks: a user or Kerberos, and everything Kerberos needs."""
    keytab, ccache = c.krb_keytab_secret is not None, c.krb_c_cache_secret is not None
    if not (c.hdfs_user or keytab or ccache):
        return [(where, "one of hdfsUser, krbCCacheSecret or krbKeytabSecret is required")]
    needed: list[tuple[str, Any]] = []
    if keytab:
        needed = [("krbServicePrincipalName", c.krb_service_principal_name),
                  ("krbConfigConfigMap", c.krb_config_config_map), ("krbUsername", c.krb_username),
                  ("krbRealm", c.krb_realm)]
    elif ccache:
        needed = [("krbServicePrincipalName", c.krb_service_principal_name),
                  ("krbConfigConfigMap", c.krb_config_config_map)]
    what = "krbKeytabSecret" if keytab else "krbCCacheSecret"
    return [(f"{where}.{name}", f"is required with {what}") for name, value in needed if not value]


def _webhook_tls(c: Any, where: str, seen: dict[str, tuple[str, Any]]) -> list[tuple[str, str]]:
    """Cert and key come together, and every endpoint sharing a port agrees on them (one server per port)."""
    cert, key = c.server_cert_secret, c.server_key_secret
    if (cert is None) != (key is None):
        missing = "serverKeySecret" if key is None else "serverCertSecret"
        return [(f"{where}.{missing}", "HTTPS needs both serverCertSecret and serverKeySecret; "
                 f"add {missing} or remove the other")]
    tls = None if cert is None else ((cert.name, cert.key), (key.name, key.key))
    other = seen.setdefault(c.port, (where, tls))
    if other[1] != tls:
        return [(f"{where}.serverCertSecret", f"port {c.port} is shared with {other[0]}, which serves "
                 f"{'HTTPS with other secrets' if other[1] and tls else 'HTTPS' if other[1] else 'plain HTTP'}; "
                 "endpoints on one port must use the same serverCertSecret/serverKeySecret")]
    return []


def _bad_ops(text: str, where: str) -> list[tuple[str, str]]:
    bad = [o for o in _ops(text) if o not in FILE_OPS]
    return [(where, f"unknown operation {', '.join(bad)}; use {'|'.join(FILE_OPS)}")] if bad else []


def _watch(directory: str, path: str, regexp: str, where: str) -> list[tuple[str, str]]:
    """Argo's WatchPathConfig.Validate: an absolute directory, and a relative path or a regexp."""
    errors = []
    if not directory:
        errors.append((f"{where}.directory", "is required"))
    elif not directory.startswith("/"):
        errors.append((f"{where}.directory", f"must be an absolute path, got {directory!r}"))
    if not path and not regexp:
        errors.append((where, "one of path or pathRegexp is required"))
    elif path and regexp:
        errors.append((where, "path and pathRegexp cannot be set together"))
    if path.startswith("/"):
        errors.append((f"{where}.path", f"must be relative to directory, got {path!r}"))
    if regexp:
        try:
            re.compile(regexp)
        except re.error as err:
            errors.append((f"{where}.pathRegexp", f"invalid regexp: {err}"))
    return errors
