"""aiokafka connection settings from Argo's Kafka fields (url, tls, sasl), shared by the source and the trigger."""

from __future__ import annotations

from typing import Any

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.secrets import Secrets


def client_kwargs(url: str, tls: Any, sasl: Any, secrets: Secrets, where: str) -> dict[str, Any]:
    """``bootstrap_servers``, ``security_protocol``, ``ssl_context`` and SASL settings for aiokafka.

    >>> client_kwargs("k1:9092, k2:9092", None, None, Secrets(), "x")
    {'bootstrap_servers': ['k1:9092', 'k2:9092'], 'security_protocol': 'PLAINTEXT'}
    """
    from airflow_argo_events.core.actions.base import ActionContext
    from airflow_argo_events.core.actions.http import tls_context

    out: dict[str, Any] = {"bootstrap_servers": [u.strip() for u in url.split(",") if u.strip()]}
    ssl_context = None
    if tls is not None:
        try:
            ssl_context = tls_context(tls, ActionContext(secrets=secrets), where)
        except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
            raise SpecError([(f"{where}.tls", f"unusable certificate or key: {err}")]) from None
    if sasl is not None:
        mechanism = sasl.get_mechanism()
        if mechanism == "GSSAPI":
            raise SpecError([(f"{where}.sasl.mechanism", "GSSAPI (Kerberos) is not supported here")])
        user = secrets.get(sasl.user_secret, f"{where}.sasl.userSecret")
        password = secrets.get(sasl.password_secret, f"{where}.sasl.passwordSecret")
        out["sasl_mechanism"] = mechanism
        if mechanism == "OAUTHBEARER":
            out["sasl_oauth_token_provider"] = _static_token(password)
        else:
            out["sasl_plain_username"], out["sasl_plain_password"] = user, password
    if ssl_context is not None:
        out["ssl_context"] = ssl_context
    out["security_protocol"] = ("SASL_" if sasl is not None else "") + ("SSL" if ssl_context else "PLAINTEXT")
    return out


def _static_token(value: str) -> Any:
    """OAUTHBEARER with the token read from passwordSecret (Argo leaves the provider to sarama's config)."""
    from aiokafka.abc import AbstractTokenProvider

    class StaticToken(AbstractTokenProvider):  # type: ignore[misc]
        async def token(self) -> str:
            return value

    return StaticToken()
