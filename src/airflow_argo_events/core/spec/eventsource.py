"""Argo's ``EventSource`` manifest as typed models.

The source types this project runs (webhook, calendar, file, hdfs, nats, amqp, mqtt,
redis, redisStream, kafka, sqs, sns, github, gitlab, slack, stripe, bitbucketserver,
bitbucket, resource, sftp, generic) are typed field by field with Argo's names; every other Argo type
loads as an open block and is reported as not supported when run. Each type is a map
from event name to its config: the event name becomes the CloudEvent subject.

>>> es = EventSource.model_validate({"metadata": {"name": "hdfs"}, "spec": {"hdfs": {"example": {
...     "directory": "/tmp/", "type": "CREATE", "path": "x.txt", "addresses": ["nn:9870"], "hdfsUser": "hdfs"}}}})
>>> [(e.type, e.name) for e in es.events()]
[('hdfs', 'example')]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
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
from airflow_argo_events.core.spec.extensions import extension
from airflow_argo_events.core.spec.sensor import Backoff, BasicAuth, SASLConfig, TLSConfig

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
        None, description="This project's extension: verify GitHub/GitLab/Bitbucket/Stripe/HMAC signatures.",
        json_schema_extra=extension("webhook signature"))


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


class SFTPEventSource(ArgoModel):
    """Argo's sftp event source: poll a directory on an SFTP server for files created or removed.

    >>> SFTPEventSource.model_validate({"eventType": "CREATE", "watchPathConfig": {"directory": "/in/",
    ...     "path": "x.txt"}, "address": {"name": "sftp", "key": "address"}}).poll_interval_seconds()
    10.0
    """

    event_type: str = Field("", description="CREATE or REMOVE (a changed file counts as CREATE, as in Argo).")
    watch_path_config: WatchPathConfig = Field(default_factory=WatchPathConfig,
                                               description="The remote directory, and the file name or regexp.")
    username: SecretKeySelector | None = Field(None, description="Secret holding the SSH user name.")
    password: SecretKeySelector | None = Field(None, description="Secret holding the password (host key not checked).")
    ssh_key_secret: SecretKeySelector | None = Field(
        None, description="Secret holding a private key and, on a line of its own, the server's public host key.")
    address: SecretKeySelector | None = Field(None, description="Secret holding host:port of the SFTP server.")
    metadata: dict[str, str] | None = None
    filter: EventSourceFilter | None = None
    poll_interval_duration: str = Field("", description="Go duration between listings (default 10s).")

    def poll_interval_seconds(self) -> float:
        return parse_duration(self.poll_interval_duration) if self.poll_interval_duration else 10.0


class GenericEventSource(ArgoModel):
    """Argo's generic event source: a gRPC server streams events (``Eventing/StartEventSource``).

    >>> GenericEventSource.model_validate({"url": "localhost:8080", "config": "a: 1", "insecure": True}).insecure
    True
    """

    url: str = Field("", description="host:port of the gRPC server that implements the event source.")
    config: str = Field("", description="Sent to the server as it is (the server decides what it means).")
    insecure: bool = Field(False, description="Plaintext gRPC; otherwise TLS with gRPC's default roots.")
    json_body: bool = Field(False, alias="jsonBody", description="Event payloads are JSON: put them in body as JSON.")
    metadata: dict[str, str] | None = None
    auth_secret: SecretKeySelector | None = Field(None, description="Secret holding a bearer token sent as "
                                                                    "'authorization: Bearer <token>'.")
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
        "", description="Extension (not in Argo): Go duration to wait for a namenode's TCP connection (default 5s).",
        json_schema_extra=extension("hdfs connectTimeout"))
    read_timeout: str = Field(
        "", description="Extension (not in Argo): Go duration a namenode may stay silent during one WebHDFS "
                        "request before the next address is tried (default 30s).",
        json_schema_extra=extension("hdfs readTimeout"))

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


class PrefectEventSource(ArgoModel):
    """This project's extension: a Prefect server's events (its ``/events/out`` stream) onto the bus.

    Each Prefect event becomes one CloudEvent (id = the Prefect event's id, time = its
    ``occurred``); the position (the last event's time) is kept in the bus's KV, so a
    restarted EventSource resumes there, ``resumeOverlap`` earlier, without losing events.
    """

    api_url: str = Field("", description="Prefect API URL, e.g. http://127.0.0.1:4200/api (default: "
                                         "PREFECT_API_URL from the environment or the active Prefect profile).")
    api_key_secret: SecretKeySelector | None = Field(None, description="Prefect Cloud API key (default: PREFECT_API_KEY).")
    events: list[str] | None = Field(None, description="Event names to forward; a trailing * matches a prefix "
                                                       "(e.g. prefect.flow-run.*). Default: all.")
    resources: list[str] | None = Field(None, description="Resource ids to forward (prefect.resource.id); a trailing "
                                                          "* matches a prefix. Default: all.")
    resource_labels: dict[str, str] | None = Field(None, description="Resource labels the events must have.")
    resume_overlap: str = Field("", description="Go duration re-read before the saved position on a restart "
                                                "(events arrive slightly out of time order), default 60s.")
    storage_delay: str = Field("", description="Go duration after which the stored events are read once more "
                                               "after each (re)subscription: Prefect streams an event before it "
                                               "stores it (every 5s by default), default 15s.")
    metadata: dict[str, str] | None = None
    filter: EventSourceFilter | None = None


EXTENSION_TYPES = {"prefect": "forwards a Prefect server's events to the bus"}
"""Event source types this project adds to Argo's (``validate`` names them; Argo refuses them)."""


class KafkaConsumerGroup(ArgoModel):
    group_name: str = Field(description="Consumer group; offsets are committed there after the bus has the event.")
    oldest: bool = Field(False, description="A new group starts at the oldest record (else the newest).")
    rebalance_strategy: str = Field("", description="range (default), roundrobin or sticky.")


class KafkaEventSource(ArgoModel):
    """Argo's kafka event source: a consumer group (or one partition) of a topic.

    >>> KafkaEventSource.model_validate({"url": "kafka:9092", "topic": "t", "consumerGroup": {
    ...     "groupName": "g"}}).consumer_group.group_name
    'g'
    """

    url: str = Field(description="Brokers, comma-separated host:port.")
    partition: str = Field("", description="Partition to read when there is no consumerGroup (from the newest).")
    topic: str
    connection_backoff: Backoff | None = None
    tls: TLSConfig | None = None
    json_body: bool = Field(False, alias="jsonBody")
    metadata: dict[str, str] | None = None
    consumer_group: KafkaConsumerGroup | None = None
    limit_events_per_second: int = Field(0, description="At most this many events a second (0: no limit).")
    version: str = Field("", description="Kafka version for sarama; the client here negotiates it.")
    sasl: SASLConfig | None = None
    filter: EventSourceFilter | None = None
    config: str = Field("", description="sarama YAML config: Go-specific, not applied here (validate warns).")
    schema_registry: dict[str, Any] | None = Field(None, description="Avro via a schema registry: not supported here.")
    aws_msk_iam_auth: dict[str, Any] | None = Field(None, alias="awsMskIamAuth",
                                                    description="MSK IAM auth: not supported here.")


class SQSEventSource(ArgoModel):
    """Argo's sqs event source: long-poll a queue, delete each message once the bus has it."""

    access_key: SecretKeySelector | None = None
    secret_key: SecretKeySelector | None = None
    region: str
    queue: str = Field(description="Queue name (not URL).")
    wait_time_seconds: int = Field(0, description="Long-poll seconds per receive, 0-20 (default 3).")
    role_arn: str = Field("", alias="roleARN", description="Role to assume through STS.")
    json_body: bool = Field(False, alias="jsonBody")
    queue_account_id: str = ""
    metadata: dict[str, str] | None = None
    dlq: bool = Field(False, description="Leave messages whose body is not JSON (jsonBody) for the queue's DLQ.")
    filter: EventSourceFilter | None = None
    endpoint: str = Field("", description="Another SQS endpoint (LocalStack, moto, a VPC endpoint).")
    session_token: SecretKeySelector | None = None


class SNSEventSource(ArgoModel):
    """Argo's sns event source: an HTTP endpoint subscribed to a topic (confirmed, optionally signature-checked)."""

    webhook: WebhookContext | None = Field(None, description="Where SNS posts: port, endpoint, method and public url.")
    topic_arn: str
    access_key: SecretKeySelector | None = None
    secret_key: SecretKeySelector | None = None
    region: str
    role_arn: str = Field("", alias="roleARN", description="Role to assume through STS.")
    metadata: dict[str, str] | None = None
    validate_signature: bool = Field(False, description="Check each message's SNS signature (v1 SHA1, v2 SHA256).")
    filter: EventSourceFilter | None = None
    endpoint: str = Field("", description="Another SNS endpoint; signing certificates are fetched from it too.")


class ResourceSelector(ArgoModel):
    key: str = Field(description="Label key, or a GJSON path into the object for fields.")
    operation: str = Field("", description="Labels: =, ==, !=, in, notin, exists, !, gt, lt (default =); "
                                           "fields: =, == or != (default ==).")
    value: str = Field("", description="Labels: the value (comma-separated for in/notin); fields: a regular "
                                       "expression.")


class ResourceFilter(ArgoModel):
    prefix: str = Field("", description="Only objects whose name starts with this.")
    labels: list[ResourceSelector] | None = Field(None, description="Label selector sent to the API server.")
    fields: list[ResourceSelector] | None = Field(None, description="Checked on each object: GJSON path, regex.")
    created_by: str = Field("", description="RFC 3339 time: only objects created before it.")
    after_start: bool = Field(False, description="Only changes made after the source started.")

    @model_validator(mode="before")
    @classmethod
    def _created_by_as_text(cls, v: Any) -> Any:
        # YAML reads an unquoted 2019-04-06T12:52:11Z as a timestamp; Argo's field is that time's RFC 3339 text.
        if isinstance(v, dict) and isinstance(v.get("createdBy"), datetime):
            t = v["createdBy"]
            t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
            v = {**v, "createdBy": t.isoformat().replace("+00:00", "Z")}
        return v


class ResourceEventSource(ArgoModel):
    """Argo's resource event source: watch one kind of Kubernetes object (add, update, delete).

    >>> ResourceEventSource.model_validate({"namespace": "argo", "group": "argoproj.io", "version": "v1alpha1",
    ...     "resource": "workflows", "eventTypes": ["ADD"]}).event_types
    ['ADD']
    """

    namespace: str = Field("", description="Namespace to watch; empty for all namespaces.")
    filter: ResourceFilter | None = None
    group: str = Field("", description="API group; empty for the core group (pods, configmaps).")
    version: str = Field("", description="API version, e.g. v1.")
    resource: str = Field("", description="Resource (plural), e.g. workflows.")
    event_types: list[str] | None = Field(None, description="ADD, UPDATE and/or DELETE.")
    metadata: dict[str, str] | None = None


class OwnedRepositories(ArgoModel):
    owner: str = ""
    names: list[str] = Field(default_factory=list)


class GithubAppCreds(ArgoModel):
    private_key: SecretKeySelector | None = Field(None, description="The GitHub App's PEM private key.")
    app_id: int = Field(0, alias="appID")
    installation_id: int = Field(0, alias="installationID")


class GithubEventSource(ArgoModel):
    """Argo's github event source: a webhook checked with X-Hub-Signature(-256), hooks managed through the API."""

    id: int = 0
    webhook: WebhookContext | None = None
    owner: str = Field("", description="Deprecated: use repositories.")
    repository: str = Field("", description="Deprecated: use repositories.")
    events: list[str] = Field(default_factory=list, description="GitHub event names the hook sends, or *.")
    api_token: SecretKeySelector | None = Field(None, description="Token to create/delete the hooks with.")
    webhook_secret: SecretKeySelector | None = Field(None, description="Secret deliveries are signed with.")
    insecure: bool = False
    active: bool = False
    content_type: str = Field("", description="json or form.")
    github_base_url: str = Field("", alias="githubBaseURL", description="GitHub Enterprise API URL.")
    github_upload_url: str = Field("", alias="githubUploadURL")
    delete_hook_on_finish: bool = False
    metadata: dict[str, str] | None = None
    repositories: list[OwnedRepositories] | None = None
    organizations: list[str] | None = None
    github_app: GithubAppCreds | None = Field(None, alias="githubApp")
    filter: EventSourceFilter | None = None

    def owned_repositories(self) -> list[OwnedRepositories]:
        if self.repositories:
            return list(self.repositories)
        if self.owner and self.repository:
            return [OwnedRepositories(owner=self.owner, names=[self.repository])]
        return []

    def needs_hooks(self) -> bool:
        """Argo's NeedToCreateHooks: credentials and a public webhook url."""
        creds = self.api_token is not None or (self.github_app is not None and self.github_app.private_key is not None)
        return creds and self.webhook is not None and bool(self.webhook.url)


class GitlabEventSource(ArgoModel):
    """Argo's gitlab event source: a webhook checked with X-Gitlab-Token, hooks managed through the API."""

    webhook: WebhookContext | None = None
    project_id: str = Field("", alias="projectID", description="Deprecated: use projects.")
    events: list[str] | None = Field(None, description="Hook options to turn on, e.g. PushEvents, TagPushEvents.")
    access_token: SecretKeySelector | None = None
    enable_ssl_verification: bool = Field(False, alias="enableSSLVerification")
    gitlab_base_url: str = Field("", alias="gitlabBaseURL")
    delete_hook_on_finish: bool = False
    metadata: dict[str, str] | None = None
    projects: list[str] | None = None
    secret_token: SecretKeySelector | None = Field(None, description="Token GitLab sends in X-Gitlab-Token.")
    filter: EventSourceFilter | None = None
    groups: list[str] | None = None

    def project_ids(self) -> list[str]:
        return list(self.projects) if self.projects else ([self.project_id] if self.project_id else [])

    def needs_hooks(self) -> bool:
        return self.access_token is not None and self.webhook is not None and bool(self.webhook.url)


class SlackEventSource(ArgoModel):
    """Argo's slack event source: Events API, interactions and slash commands, signed with v0 signatures."""

    signing_secret: SecretKeySelector | None = None
    token: SecretKeySelector | None = Field(None, description="Verification token Events API bodies carry.")
    webhook: WebhookContext | None = None
    metadata: dict[str, str] | None = None
    filter: EventSourceFilter | None = None


class StripeEventSource(ArgoModel):
    """Argo's stripe event source: Stripe events, optionally filtered by type."""

    webhook: WebhookContext | None = None
    create_webhook: bool = False
    api_key: SecretKeySelector | None = Field(None, alias="apiKey")
    event_filter: list[str] | None = None
    metadata: dict[str, str] | None = None
    signing_secret: SecretKeySelector | None = Field(
        None, description="Extension (not in Argo): the endpoint's whsec_ secret; Stripe-Signature is checked.",
        json_schema_extra=extension("stripe signingSecret"))


class BitbucketRepository(ArgoModel):
    owner: str = ""
    repository_slug: str = ""


class BitbucketBasicAuth(ArgoModel):
    username: SecretKeySelector | None = None
    password: SecretKeySelector | None = None


class BitbucketAuth(ArgoModel):
    basic: BitbucketBasicAuth | None = None
    oauth_token: SecretKeySelector | None = Field(None, alias="oauthToken")


class BitbucketEventSource(ArgoModel):
    """Argo's bitbucket (Cloud) event source."""

    delete_hook_on_finish: bool = False
    metadata: dict[str, str] | None = None
    webhook: WebhookContext | None = None
    auth: BitbucketAuth | None = None
    events: list[str] | None = None
    owner: str = ""
    project_key: str = ""
    repository_slug: str = ""
    repositories: list[BitbucketRepository] | None = None
    filter: EventSourceFilter | None = None
    webhook_secret: SecretKeySelector | None = Field(
        None, description="Extension (not in Argo): the hook's secret; X-Hub-Signature (sha256) is checked.",
        json_schema_extra=extension("bitbucket webhookSecret"))

    def repos(self) -> list[BitbucketRepository]:
        if self.repositories:
            return list(self.repositories)
        if self.owner and self.repository_slug:
            return [BitbucketRepository(owner=self.owner, repository_slug=self.repository_slug)]
        return []


class BitbucketServerRepository(ArgoModel):
    project_key: str = ""
    repository_slug: str = ""


class BitbucketServerEventSource(ArgoModel):
    """Argo's bitbucketserver event source: deliveries signed with X-Hub-Signature."""

    webhook: WebhookContext | None = None
    project_key: str = ""
    repository_slug: str = ""
    projects: list[str] | None = None
    repositories: list[BitbucketServerRepository] | None = None
    events: list[str] | None = None
    skip_branch_refs_changed_on_open_pr: bool = Field(False, alias="skipBranchRefsChangedOnOpenPR")
    one_event_per_change: bool = False
    access_token: SecretKeySelector | None = None
    webhook_secret: SecretKeySelector | None = None
    bitbucketserver_base_url: str = Field("", alias="bitbucketserverBaseURL")
    delete_hook_on_finish: bool = False
    metadata: dict[str, str] | None = None
    filter: EventSourceFilter | None = None
    tls: TLSConfig | None = None
    check_interval: str = ""

    def repos(self) -> list[BitbucketServerRepository]:
        if self.repositories:
            return list(self.repositories)
        if self.project_key and self.repository_slug:
            return [BitbucketServerRepository(project_key=self.project_key, repository_slug=self.repository_slug)]
        return []


SUPPORTED = ("webhook", "calendar", "file", "hdfs", "nats", "amqp", "mqtt", "redis", "redisStream",
             "kafka", "sqs", "sns", "github", "gitlab", "slack", "stripe", "bitbucketserver", "bitbucket",
             "prefect", "resource", "sftp", "generic")
OTHER_TYPES = ("azureEventsHub", "azureQueueStorage", "azureServiceBus", "emitter",
               "gerrit", "minio", "nsq", "pubSub", "pulsar", "storageGrid")


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
    prefect: dict[str, PrefectEventSource] | None = Field(None, description="Extension: a Prefect server's events.",
                                                          json_schema_extra=extension("prefect event source"))
    azure_events_hub: dict[str, OpenModel] | None = None
    azure_queue_storage: dict[str, OpenModel] | None = None
    azure_service_bus: dict[str, OpenModel] | None = None
    bitbucket: dict[str, BitbucketEventSource] | None = None
    bitbucketserver: dict[str, BitbucketServerEventSource] | None = None
    emitter: dict[str, OpenModel] | None = None
    generic: dict[str, GenericEventSource] | None = None
    gerrit: dict[str, OpenModel] | None = None
    github: dict[str, GithubEventSource] | None = None
    gitlab: dict[str, GitlabEventSource] | None = None
    kafka: dict[str, KafkaEventSource] | None = None
    minio: dict[str, OpenModel] | None = None
    nsq: dict[str, OpenModel] | None = None
    pub_sub: dict[str, OpenModel] | None = None
    pulsar: dict[str, OpenModel] | None = None
    resource: dict[str, ResourceEventSource] | None = None
    sftp: dict[str, SFTPEventSource] | None = None
    slack: dict[str, SlackEventSource] | None = None
    sns: dict[str, SNSEventSource] | None = None
    sqs: dict[str, SQSEventSource] | None = None
    storage_grid: dict[str, OpenModel] | None = None
    stripe: dict[str, StripeEventSource] | None = None


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

    def extensions(self) -> list[tuple[str, str]]:
        """This project's additions to Argo the manifest uses, as ``(field path, what it does)``."""
        return [(f"spec.{e.type}.{e.name}", EXTENSION_TYPES[e.type]) for e in self.events() if e.type in EXTENSION_TYPES]

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
            errors += _webhook_context(c, where, tls_by_port)
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
        elif e.type == "prefect":
            for field, name in ((c.resume_overlap, "resumeOverlap"), (c.storage_delay, "storageDelay")):
                if field:
                    try:
                        if parse_duration(field) < 0:
                            raise ValueError(f"must not be negative, got {field!r}")
                    except ValueError as err:
                        errors.append((f"{where}.{name}", str(err)))
            if c.api_url and not c.api_url.startswith(("http://", "https://")):
                errors.append((f"{where}.apiUrl", f"must be an http(s) URL, got {c.api_url!r}"))
        elif e.type == "kafka":
            errors += _kafka(c, where)
        elif e.type == "sns":
            errors += _nonempty(c, where, ("topic_arn", "topicArn"), ("region", "region"))
            errors += _webhook_context(c.webhook, f"{where}.webhook", tls_by_port)
            if (c.access_key is None) != (c.secret_key is None):
                errors.append((f"{where}.{'secretKey' if c.secret_key is None else 'accessKey'}",
                               "accessKey and secretKey go together"))
        elif e.type == "sqs":
            errors += _nonempty(c, where, ("region", "region"), ("queue", "queue"))
            if not 0 <= c.wait_time_seconds <= 20:
                errors.append((f"{where}.waitTimeSeconds", f"must be 0 to 20 (SQS's limit), got {c.wait_time_seconds}"))
            if (c.access_key is None) != (c.secret_key is None):
                errors.append((f"{where}.{'secretKey' if c.secret_key is None else 'accessKey'}",
                               "accessKey and secretKey go together"))
        elif e.type == "resource":
            errors += _resource(c, where)
        elif e.type == "sftp":
            errors += _sftp(c, where)
        elif e.type == "generic":
            errors += _nonempty(c, where, ("url", "url"), ("config", "config"))
        elif e.type in SERVICE_WEBHOOKS:
            errors += _service_webhook(e.type, c, where, tls_by_port)
        if e.type in ("nats", "amqp", "mqtt", "redis", "redisStream", "kafka"):
            errors += _tls(c.tls, f"{where}.tls")
    return errors


SERVICE_WEBHOOKS = ("github", "gitlab", "slack", "stripe", "bitbucketserver", "bitbucket")
"""Argo's types that are a webhook with a service's signature and payload (``core/sources/services.py``)."""
GITLAB_HOOK_EVENTS = ("ConfidentialNoteEvents", "PushEvents", "IssuesEvents", "ConfidentialIssuesEvents",
                      "MergeRequestsEvents", "TagPushEvents", "NoteEvents", "JobEvents", "PipelineEvents",
                      "WikiPageEvents", "EmojiEvents")
"""go-gitlab's AddProjectHookOptions fields Argo turns on by name (its ``events``)."""


def _webhook_context(w: Any, where: str, tls_by_port: dict[str, tuple[str, Any]]) -> list[tuple[str, str]]:
    """Argo's ValidateWebhookContext, plus this server's one-TLS-setting-per-port rule."""
    if w is None:
        return [(where, "is required (port, endpoint and method to listen on)")]
    errors = []
    if not w.endpoint.startswith("/"):
        errors.append((f"{where}.endpoint", "must start with '/'"))
    if not w.port.isdigit():
        errors.append((f"{where}.port", f"must be a port number, got {w.port!r}"))
    if not w.method:
        errors.append((f"{where}.method", "is required"))
    if w.max_payload_size is not None and w.max_payload_size <= 0:
        errors.append((f"{where}.maxPayloadSize", "must be positive"))
    return errors + _webhook_tls(w, where, tls_by_port)


def _service_webhook(kind: str, c: Any, where: str, tls_by_port: dict[str, tuple[str, Any]]) -> list[tuple[str, str]]:
    """Argo's validate() of the github, gitlab, slack, stripe, bitbucketserver and bitbucket types."""
    errors: list[tuple[str, str]] = []
    if kind == "github":
        repos, orgs = c.owned_repositories(), c.organizations
        if not repos and not orgs:
            errors.append((f"{where}.repositories", "either repositories or organizations is required"))
        if repos and orgs:
            errors.append((f"{where}.organizations", "only one of repositories and organizations is allowed"))
        for i, r in enumerate(c.repositories or []):
            if not r.owner or not r.names:
                errors.append((f"{where}.repositories[{i}]", "owner and names are required"))
        if c.needs_hooks() and not c.events:
            errors.append((f"{where}.events", "must be defined to create a github webhook"))
        if c.content_type not in ("", "json", "form"):
            errors.append((f"{where}.contentType", f'must be "json" or "form", got {c.content_type!r}'))
        if bool(c.github_base_url) != bool(c.github_upload_url):
            missing = "githubUploadURL" if c.github_base_url else "githubBaseURL"
            errors.append((f"{where}.{missing}", "githubBaseURL and githubUploadURL go together"))
        app = c.github_app
        if app is not None and (app.private_key is None or app.app_id <= 0 or app.installation_id <= 0):
            errors.append((f"{where}.githubApp", "privateKey, appID and installationID are required"))
    elif kind == "gitlab":
        if c.events is None:
            errors.append((f"{where}.events", "can't be empty"))
        if not c.gitlab_base_url:
            errors.append((f"{where}.gitlabBaseURL", "can't be empty"))
        if c.access_token is None:
            errors.append((f"{where}.accessToken", "is required"))
        for i, name in enumerate(c.events or []):
            if name not in GITLAB_HOOK_EVENTS:
                errors.append((f"{where}.events[{i}]", f"unknown event {name!r}; use {', '.join(GITLAB_HOOK_EVENTS)}"))
    elif kind == "slack":
        if c.token is None:
            errors.append((f"{where}.token", "is required"))
        if c.signing_secret is None:
            errors.append((f"{where}.signingSecret", "is required"))
    elif kind == "stripe":
        if c.create_webhook and c.api_key is None:
            errors.append((f"{where}.apiKey", "is required with createWebhook"))
    elif kind == "bitbucketserver":
        if not c.bitbucketserver_base_url:
            errors.append((f"{where}.bitbucketserverBaseURL", "can't be empty"))
        hooks = c.access_token is not None and c.webhook is not None and c.webhook.url and (c.repos() or c.projects)
        if hooks and not c.events:
            errors.append((f"{where}.events", "must be defined to create a bitbucket server webhook"))
        if c.check_interval:
            try:
                if parse_duration(c.check_interval) <= 0:
                    raise ValueError(f"must be positive, got {c.check_interval!r}")
            except ValueError as err:
                errors.append((f"{where}.checkInterval", str(err)))
        errors += _tls(c.tls, f"{where}.tls")
    elif kind == "bitbucket":
        if not c.repos():
            errors.append((f"{where}.repositories", "at least one repository is required"))
        if c.auth is None:
            errors.append((f"{where}.auth", "is required (basic or oauthToken)"))
        elif c.auth.basic is not None:
            errors += _basic_auth(c.auth.basic, f"{where}.auth.basic")
        hooks = c.auth is not None and (c.auth.basic is not None or c.auth.oauth_token is not None)
        if hooks and c.webhook is not None and c.webhook.url and not c.events:
            errors.append((f"{where}.events", "must be defined to create a bitbucket webhook"))
    return errors + _webhook_context(c.webhook, f"{where}.webhook", tls_by_port)


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
        out += _hook_registration_warnings(e)
        if e.type == "kafka":
            out += _kafka_warnings(e.spec, f"spec.kafka.{e.name}")
        if e.type != "hdfs":
            continue
        for i, address in enumerate(e.spec.addresses):
            if address.rpartition(":")[2] == str(HDFS_RPC_PORT):
                out.append((f"spec.hdfs.{e.name}.addresses[{i}]",
                            f"port {HDFS_RPC_PORT} is the namenode's Hadoop RPC port, which this provider does not "
                            "speak: WebHDFS is the namenode's HTTP port, usually 9870 "
                            f"(write {address.rpartition(':')[0]}:9870)"))
    return out


def _hook_registration_warnings(e: EventConfig) -> list[tuple[str, str]]:
    """What Argo's bitbucketserver does that this provider does not."""
    c, where = e.spec, f"spec.{e.type}.{e.name}"
    out: list[tuple[str, str]] = []
    url = c.webhook is not None and bool(c.webhook.url) if e.type == "bitbucketserver" else False
    if e.type == "bitbucketserver" and url and c.access_token is not None and c.tls is not None:
        out.append((f"{where}.tls", "not applied to the Bitbucket Server API calls here (the system's CAs are used)"))
    if e.type == "bitbucketserver" and c.skip_branch_refs_changed_on_open_pr:
        out.append((f"{where}.skipBranchRefsChangedOnOpenPR", "not applied here: every refs_changed change is sent"))
    return out


def _kafka_warnings(c: Any, where: str) -> list[tuple[str, str]]:
    out = []
    if c.config:
        out.append((f"{where}.config", "sarama's YAML config is Go-specific and is not applied here"))
    for alias, value in (("schemaRegistry", c.schema_registry), ("awsMskIamAuth", c.aws_msk_iam_auth)):
        if value is not None:
            out.append((f"{where}.{alias}", "not supported here: this event refuses to run"))
    return out


KAFKA_STRATEGIES = ("", "range", "roundrobin", "sticky")
SASL_MECHANISMS = ("", "PLAIN", "OAUTHBEARER", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI")


def _kafka(c: Any, where: str) -> list[tuple[str, str]]:
    """Argo's kafka validate(), plus what Argo finds only when it connects (partition, strategy)."""
    errors = _nonempty(c, where, ("url", "url"), ("topic", "topic"))
    if not c.partition and c.consumer_group is None:
        errors.append((where, "consumerGroup or partition must be specified"))
    if c.partition and c.consumer_group is None and not c.partition.isdigit():
        errors.append((f"{where}.partition", f"must be a partition number, got {c.partition!r}"))
    if c.consumer_group is not None:
        if not c.consumer_group.group_name:
            errors.append((f"{where}.consumerGroup.groupName", "must not be empty"))
        if c.consumer_group.rebalance_strategy not in KAFKA_STRATEGIES:
            errors.append((f"{where}.consumerGroup.rebalanceStrategy",
                           f"must be range, roundrobin or sticky, got {c.consumer_group.rebalance_strategy!r}"))
    if c.limit_events_per_second < 0:
        errors.append((f"{where}.limitEventsPerSecond", "must not be negative"))
    errors += _sasl(c.sasl, f"{where}.sasl")
    if c.aws_msk_iam_auth is not None and not c.aws_msk_iam_auth.get("region"):
        errors.append((f"{where}.awsMskIamAuth.region", "must be specified"))
    return errors


RESOURCE_EVENT_TYPES = ("ADD", "UPDATE", "DELETE")


def _resource(c: Any, where: str) -> list[tuple[str, str]]:
    """Argo's resource validate(), plus what Argo finds only at start (selectors, event types, createdBy)."""
    from airflow_argo_events.core.sensor.regex import RegexError, go_regex
    from airflow_argo_events.core.spec.k8s_selectors import FIELD_OPERATIONS, requirement

    errors = _nonempty(c, where, ("version", "version"), ("resource", "resource"))
    if c.event_types is None:
        errors.append((f"{where}.eventTypes", "is required (ADD, UPDATE and/or DELETE)"))
    elif not c.event_types:
        errors.append((f"{where}.eventTypes", "must list at least one of ADD, UPDATE, DELETE"))
    for i, t in enumerate(c.event_types or ()):
        if t not in RESOURCE_EVENT_TYPES:
            errors.append((f"{where}.eventTypes[{i}]", f"unknown event type {t!r}; use ADD, UPDATE or DELETE"))
    f = c.filter
    if f is None:
        return errors
    for i, sel in enumerate(f.labels or ()):
        at = f"{where}.filter.labels[{i}]"
        if not sel.key:
            errors.append((f"{at}.key", "must not be empty"))
            continue
        try:
            requirement(sel.key, sel.operation, sel.value)
        except ValueError as err:
            errors.append((at, str(err)))
    for i, sel in enumerate(f.fields or ()):
        at = f"{where}.filter.fields[{i}]"
        if not sel.key:
            errors.append((f"{at}.key", "must not be empty"))
        if sel.operation not in FIELD_OPERATIONS:
            errors.append((f"{at}.operation", f"must be =, == or !=, got {sel.operation!r}"))
        try:
            go_regex(sel.value)
        except RegexError as err:
            errors.append((f"{at}.value", str(err)))
    if f.created_by:
        try:
            parse_rfc3339(f.created_by)
        except ValueError as err:
            errors.append((f"{where}.filter.createdBy", str(err)))
    return errors


_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def parse_rfc3339(text: str) -> datetime:
    """Go's ``time.Parse(time.RFC3339, text)`` (what a Kubernetes ``metav1.Time`` reads), as an aware datetime.

    >>> parse_rfc3339("2019-04-06T12:52:11Z").isoformat()
    '2019-04-06T12:52:11+00:00'
    """
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r} (e.g. 2019-04-06T12:52:11Z)")
    frac = (m.group(7) or ".0")[1:]
    zone = m.group(8)
    tz = timezone.utc
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        return datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)),
                        int(m.group(6)), int(frac[:6].ljust(6, "0")), tzinfo=tz)
    except ValueError as err:
        raise ValueError(f"not an RFC 3339 time: {text!r} ({err})") from None


def _sasl(sasl: Any, where: str) -> list[tuple[str, str]]:
    """Argo's ValidateSASLConfig."""
    if sasl is None:
        return []
    errors = []
    if sasl.mechanism not in SASL_MECHANISMS:
        errors.append((f"{where}.mechanism", f"must be one of {', '.join(m for m in SASL_MECHANISMS if m)}, "
                                             f"got {sasl.mechanism!r}"))
    errors += [(f"{where}.{f}", "is required") for f, v in (("userSecret", sasl.user_secret),
                                                            ("passwordSecret", sasl.password_secret)) if v is None]
    return errors


SFTP_OPS = ("CREATE", "REMOVE")


def _sftp(c: Any, where: str) -> list[tuple[str, str]]:
    """Argo's sftp validate() (eventType, watchPathConfig), plus what Argo finds only when it starts."""
    w = c.watch_path_config
    errors = _watch(w.directory, w.path, w.path_regexp, f"{where}.watchPathConfig")
    if not c.event_type:
        errors.append((f"{where}.eventType", "is required (CREATE or REMOVE)"))
    elif c.event_type not in SFTP_OPS:
        # Argo compares it with one operation's name, so anything else never matches
        errors.append((f"{where}.eventType", f"must be CREATE or REMOVE, got {c.event_type!r}"))
    for field, value in (("address", c.address), ("username", c.username)):
        if value is None:
            errors.append((f"{where}.{field}", "is required (a secret reference: name and key)"))
    if c.password is None and c.ssh_key_secret is None:
        errors.append((f"{where}.password", "password or sshKeySecret is required"))
    if c.poll_interval_duration:
        try:
            if parse_duration(c.poll_interval_duration) <= 0:
                raise ValueError(f"must be positive, got {c.poll_interval_duration!r}")
        except ValueError as err:
            errors.append((f"{where}.pollIntervalDuration", str(err)))
    return errors


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
