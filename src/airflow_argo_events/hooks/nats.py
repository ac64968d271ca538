"""NatsHook: the ``nats`` connection type, the EventBus of DAGs and triggers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from airflow.sdk.bases.hook import BaseHook

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.exceptions import BusUnavailableError
from airflow_argo_events.core.redact import redact_text

_EXTRA_KEYS = ("token", "nkey_seed", "nkey_seed_file", "creds_file", "tls_ca", "tls_cert", "tls_key", "name")


class NatsHook(BaseHook):
    """Connects to NATS JetStream through an Airflow connection of type ``nats``.

    Host, port, login and password are the usual fields; ``extra`` may hold ``servers``
    (comma-separated URLs for a cluster), ``token``, ``nkey_seed`` / ``nkey_seed_file``,
    ``creds_file``, ``tls_ca``, ``tls_cert``, ``tls_key``, ``tls_insecure`` and ``stream``
    (default ``default``). The URI form works too::

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
        return {
            "hidden_fields": ["schema"],
            "relabeling": {"login": "User", "host": "Host (or leave empty and set servers in Extra)"},
            "placeholders": {
                "host": "127.0.0.1",
                "port": "4222",
                "extra": json.dumps(
                    {"servers": "nats://n1:4222,nats://n2:4222", "token": "", "creds_file": "/path/user.creds",
                     "nkey_seed_file": "", "tls_ca": "", "tls_cert": "", "tls_key": "", "stream": "default"}
                ),
            },
        }

    @classmethod
    def settings_from_connection(cls, conn: Any) -> tuple[NatsSettings, StreamSettings]:
        """NATS settings and stream of an Airflow Connection object."""
        extra = conn.extra_dejson or {}
        scheme = "tls" if extra.get("tls_ca") or extra.get("tls_cert") else "nats"
        if extra.get("servers"):
            servers = tuple(s.strip() for s in str(extra["servers"]).split(",") if s.strip())
        else:
            servers = (f"{scheme}://{conn.host or '127.0.0.1'}:{conn.port or 4222}",)
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
        return self.settings_from_connection(await self.aget_connection(self.nats_conn_id))

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
