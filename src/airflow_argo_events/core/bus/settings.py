"""How to reach NATS: servers and credentials, as one hashable value."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from airflow_argo_events.core.redact import redact_text, redact_url

ENV_URL = "ARGO_EVENTS_NATS_URL"


@dataclass(frozen=True)
class NatsSettings:
    """Servers and credentials of one NATS deployment.

    Equal settings share one connection per process (see ``connection.py``), so the value
    is frozen and hashable. Secrets are excluded from ``repr``.

    >>> NatsSettings.from_url("nats://alice:s3cret@127.0.0.1:4222?name=etl").user
    'alice'
    """

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    token: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    nkey_seed: str | None = field(default=None, repr=False)
    nkey_seed_file: str | None = None
    creds_file: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_insecure: bool = False
    name: str | None = "airflow-argo-events"
    connect_timeout: float = 2.0
    label: str = ""
    """Where these settings came from (a connection id, ``--nats``): used in error messages."""

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> NatsSettings:
        """Parse ``nats://[user[:password]@]host[:port][,host2:port]?token=..&creds=..&tls_ca=..``.

        A bare ``host:port`` works too; ``tls://`` turns TLS on. A user without a
        password is a token, as in nats-py.
        """
        if "://" not in url:
            url = "nats://" + url
        parts = urlsplit(url)
        scheme = parts.scheme or "nats"
        # Each server of a list may carry its own userinfo (``nats://u:p@h1,u:p@h2``): the
        # first one found is used, as nats-py does.
        hosts, userinfos = [], []
        for piece in parts.netloc.split(","):
            info, at, host = piece.rpartition("@")
            if host:
                hosts.append(host)
            if at:
                userinfos.append(info)
        servers = tuple(f"{scheme}://{h}" if ":" in h else f"{scheme}://{h}:4222" for h in hosts)
        kwargs: dict[str, Any] = {"servers": servers or ("nats://127.0.0.1:4222",), "label": redact_url(url)}
        if userinfos:
            user, _, password = userinfos[0].partition(":")
            if password:
                kwargs["user"], kwargs["password"] = unquote(user), unquote(password)
            else:
                kwargs["token"] = unquote(user)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        mapping = {
            "token": "token", "user": "user", "password": "password", "nkey_seed": "nkey_seed",
            "nkey": "nkey_seed_file", "nkey_seed_file": "nkey_seed_file", "creds": "creds_file",
            "creds_file": "creds_file", "tls_ca": "tls_ca", "tls_cert": "tls_cert", "tls_key": "tls_key",
            "name": "name",
        }
        for key, value in query.items():
            if key in mapping:
                kwargs[mapping[key]] = value
            elif key == "tls_insecure":
                kwargs["tls_insecure"] = value.lower() in ("1", "true", "yes")
            elif key == "connect_timeout":
                kwargs["connect_timeout"] = float(value)
            else:
                raise ValueError(f"NATS URL {redact_url(url)}: unknown option {key!r}")
        kwargs.update(overrides)
        return cls(**kwargs)

    def with_label(self, label: str) -> NatsSettings:
        return replace(self, label=label)

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls_ca or self.tls_cert or any(s.startswith("tls://") for s in self.servers))

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.uses_tls:
            return None
        ctx = ssl.create_default_context(cafile=self.tls_ca) if self.tls_ca else ssl.create_default_context()
        if self.tls_cert:
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
        if self.tls_insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect``."""
        kw: dict[str, Any] = {
            "servers": list(self.servers),
            "connect_timeout": self.connect_timeout,
            "name": self.name,
        }
        if self.token:
            kw["token"] = self.token
        if self.user is not None:
            kw["user"], kw["password"] = self.user, self.password
        if self.nkey_seed:
            kw["nkeys_seed_str"] = self.nkey_seed
        if self.nkey_seed_file:
            kw["nkeys_seed"] = self.nkey_seed_file
        if self.creds_file:
            kw["user_credentials"] = self.creds_file
        tls = self.tls_context()
        if tls is not None:
            kw["tls"] = tls
        return kw

    def describe(self) -> str:
        """Where these settings point, fit for a log line (credentials redacted)."""
        return redact_text(self.label) if self.label else ", ".join(redact_url(s) for s in self.servers)


def settings_from_env() -> NatsSettings | None:
    url = os.environ.get(ENV_URL)
    return NatsSettings.from_url(url) if url else None  # named by its URL (credentials removed)
