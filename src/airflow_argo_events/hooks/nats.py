"""NatsHook: the ``nats`` connection type, the EventBus of DAGs and triggers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.exceptions import BusUnavailableError
from airflow_argo_events.core.redact import redact_text
from airflow_argo_events.get_provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR
from airflow_argo_events.version_compat import BaseHook, get_async_connection

_EXTRA_KEYS = ("token", "nkey_seed", "nkey_seed_file", "creds_file", "tls_ca", "tls_cert", "tls_key", "name")


class NatsHook(BaseHook):
    """Connects to NATS JetStream through an Airflow connection of type ``nats``.

    Host, port, login and password are the usual fields. For a cluster, ``extra`` may hold
    ``servers`` (a list of URLs, or one comma-separated string), or Host may list the nodes
    (``n1,n2,n3``, each on Port unless it names its own). ``extra`` may also hold ``token``,
    ``nkey_seed`` / ``nkey_seed_file``, ``creds_file``, ``tls_ca``, ``tls_cert``, ``tls_key``,
    ``tls_insecure`` and ``stream`` (default ``default``). The URI form works too::

        AIRFLOW_CONN_NATS_DEFAULT='nats://alice:s3cret@nats.example:4222?stream=default'

    Every user of equal settings in one process shares one NATS socket.

    :param nats_conn_id: the Airflow connection id.

    .. code-block:: python

        async with NatsHook("nats_default").get_async_conn() as bus:
            await bus.publish(event)
    """

    conn_name_attr = "nats_conn_id"
    default_conn_name = "nats_default"
    conn_type = "nats"
    hook_name = "NATS JetStream"

    def __init__(self, nats_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nats_conn_id = nats_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Form layout for Airflow 3.0/3.1 (3.2+ reads ``ui-field-behaviour`` from get_provider_info)."""
        return {
            "hidden_fields": UI_FIELD_BEHAVIOUR["hidden-fields"],
            "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
            "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields for Airflow 3.0/3.1's form (3.2+ reads ``conn-fields`` from get_provider_info)."""
        try:
            from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
            from flask_babel import lazy_gettext
            from wtforms import BooleanField, PasswordField, StringField
        except ImportError:  # no FAB: the UI has no form widgets to show
            return {}
        widgets: dict[str, Any] = {}
        for name, field in CONN_FIELDS.items():
            label = lazy_gettext(field["label"])
            if field["schema"].get("type") == "boolean":
                widgets[name] = BooleanField(label, description=field["description"])
            elif field["schema"].get("format") == "password":
                widgets[name] = PasswordField(label, widget=BS3PasswordFieldWidget(), description=field["description"])
            else:
                widgets[name] = StringField(label, widget=BS3TextFieldWidget(), description=field["description"])
        return widgets

    @classmethod
    def settings_from_connection(cls, conn: Any) -> tuple[NatsSettings, StreamSettings]:
        """NATS settings and stream of an Airflow Connection object."""
        extra = {k.removeprefix(f"extra__{cls.conn_type}__"): v for k, v in (conn.extra_dejson or {}).items()
                 if v not in (None, "")}
        scheme = "tls" if extra.get("tls_ca") or extra.get("tls_cert") else "nats"
        # A cluster: ``servers`` (a list, or one comma-separated string), else a comma-separated Host.
        servers = _server_list(extra.get("servers"), scheme, 4222) or _server_list(
            conn.host or "127.0.0.1", scheme, conn.port or 4222)
        kwargs: dict[str, Any] = {k: extra[k] for k in _EXTRA_KEYS if extra.get(k)}
        if conn.login:
            kwargs["user"], kwargs["password"] = conn.login, conn.password or ""
        elif conn.password and "token" not in kwargs:
            kwargs["token"] = conn.password
        if str(extra.get("tls_insecure", "")).lower() in ("1", "true", "yes"):
            kwargs["tls_insecure"] = True
        settings = NatsSettings(servers=servers, label=f"connection {conn.conn_id!r} ({','.join(servers)})", **kwargs)
        return settings, StreamSettings(name=extra.get("stream") or "default")

    def get_settings(self) -> tuple[NatsSettings, StreamSettings]:
        return self.settings_from_connection(self.get_connection(self.nats_conn_id))

    async def aget_settings(self) -> tuple[NatsSettings, StreamSettings]:
        return self.settings_from_connection(await get_async_connection(self.nats_conn_id))

    @contextlib.asynccontextmanager
    async def get_async_conn(self) -> AsyncIterator[EventBus]:
        """An entered EventBus on the shared connection."""
        settings, stream = await self.aget_settings()
        async with EventBus(settings, stream) as bus:
            yield bus

    def get_conn(self) -> NatsSettings:
        """The connection's NATS settings (nats-py clients are async; see ``get_async_conn``)."""
        return self.get_settings()[0]

    def test_connection(self) -> tuple[bool, str]:
        settings, stream = self.get_settings()

        async def probe() -> str:
            async with EventBus(settings, stream, ensure=False) as bus:
                info = await bus.js.account_info()
                return f"connected to {settings.describe()}; JetStream streams: {info.streams}"

        try:
            return True, asyncio.run(probe())
        except BusUnavailableError as err:
            return False, str(err)
        except Exception as err:
            return False, f"NATS {settings.describe()}: {redact_text(str(err))}"


def _server_list(value: Any, scheme: str, port: int) -> tuple[str, ...]:
    """NATS URLs from a list or a comma-separated string; a bare ``host[:port]`` gets ``scheme``
    and ``port``.

    >>> _server_list("n1, nats://n2:4223", "nats", 4222)
    ('nats://n1:4222', 'nats://n2:4223')
    >>> _server_list(["tls://n1:4443", "n2"], "tls", 4222)
    ('tls://n1:4443', 'tls://n2:4222')
    """
    if not value:
        return ()
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        if "://" not in text:
            text = f"{scheme}://{text}"
        try:
            has_port = urlsplit(text).port is not None
        except ValueError:
            raise ValueError(f"NATS server {text!r}: the port is not a number") from None
        if not has_port:
            text = f"{text.rstrip('/')}:{port}"
        out.append(text)
    return tuple(out)
