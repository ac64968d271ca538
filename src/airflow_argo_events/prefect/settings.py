"""Where Prefect and the bus are, the Prefect way: Prefect's settings and profiles, and a ``NatsCredentials`` block."""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from airflow_argo_events.core.actions.prefect import PrefectApiSettings
from airflow_argo_events.core.bus.settings import ENV_URL, NatsSettings

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


def prefect_api_settings() -> PrefectApiSettings:
    """Prefect's API URL and credentials as Prefect resolves them (environment, profile, .env, prefect.toml).

    >>> prefect_api_settings().url                          # doctest: +SKIP
    'http://127.0.0.1:4200/api'
    """
    from prefect.settings import get_current_settings

    api = get_current_settings().api
    if not api.url:
        raise LookupError("PREFECT_API_URL is not set: point it at your Prefect server or Cloud workspace "
                          "('prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api')")
    key = api.key.get_secret_value() if api.key is not None else None
    auth = api.auth_string.get_secret_value() if getattr(api, "auth_string", None) is not None else None
    return PrefectApiSettings(str(api.url).rstrip("/"), key, auth)


class NatsCredentials(Block):
    """How to reach the NATS JetStream bus, stored once in Prefect (UI or ``.save()``).

    Example:
        ```python
        from airflow_argo_events.prefect import NatsCredentials

        NatsCredentials(url="nats://nats.internal:4222", user="flows", password="...").save("bus")
        # later, in any flow: wait_for_events(..., nats="bus")
        ```
    """

    _block_type_name = "NATS Credentials"
    _block_type_slug = "argo-events-nats-credentials"
    _description = "The NATS JetStream event bus of airflow-argo-events."

    url: str = Field(default=DEFAULT_NATS_URL, description="NATS server URL(s), comma-separated.")
    user: str | None = Field(default=None, description="User name.")
    password: SecretStr | None = Field(default=None, description="Password of the user.")
    token: SecretStr | None = Field(default=None, description="Authentication token (instead of user/password).")
    creds_file: str | None = Field(default=None, description="Path of a NATS .creds file (JWT + NKey).")
    stream: str = Field(default="default", description="JetStream stream / subject prefix of the bus.")

    def nats_settings(self) -> NatsSettings:
        extra: dict[str, Any] = {}
        if self.user:
            extra["user"] = self.user
        if self.password is not None:
            extra["password"] = self.password.get_secret_value()
        if self.token is not None:
            extra["token"] = self.token.get_secret_value()
        if self.creds_file:
            extra["creds_file"] = self.creds_file
        return NatsSettings.from_url(self.url, **extra).with_label(f"NatsCredentials block ({self.url})")


async def resolve_nats(nats: str | NatsSettings | NatsCredentials | None, stream: str | None) -> tuple[NatsSettings, str]:
    """(settings, stream) from a URL, a ``NatsCredentials`` block (or its saved name), ``$ARGO_EVENTS_NATS_URL``,
    else the local default ``nats://127.0.0.1:4222``."""
    import os

    if isinstance(nats, str) and "://" not in nats and ":" not in nats:
        nats = await NatsCredentials.aload(nats)  # a saved block's name
    if isinstance(nats, NatsCredentials):
        return nats.nats_settings(), stream or nats.stream
    if isinstance(nats, NatsSettings):
        return nats, stream or "default"
    url = nats or os.environ.get(ENV_URL) or DEFAULT_NATS_URL
    label = "nats=" if nats else (f"${ENV_URL}" if os.environ.get(ENV_URL) else "default")
    return NatsSettings.from_url(url).with_label(f"{label} {NatsSettings.from_url(url).describe()}"), stream or "default"
