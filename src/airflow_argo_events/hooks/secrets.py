"""Secret references of manifests (``{name, key}``) resolved through Airflow Variables and Connections.

Inside Airflow a manifest's ``secretKeyRef`` resolves, first hit wins, from the
environment and the secrets folder (as outside Airflow, ``core/secrets.py``), then:

1. the Airflow Variable ``<name>`` holding a JSON object: its ``<key>`` field, e.g. the
   Variable ``github-access`` = ``{"token": "ghp_..."}`` for ``{name: github-access, key: token}``;
2. the Airflow Connection ``<name>``: ``login`` (also as ``username``/``user``), ``password``,
   ``host``, ``schema`` or ``port`` when ``<key>`` names one of them, else that field of its extra.

Values are looked up once when a trigger or operator starts (Airflow answers asynchronously
from the triggerer), registered with Airflow's secret masker, and never logged by us.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from airflow_argo_events.core.secrets import Secrets, prefetch, secret_refs
from airflow_argo_events.version_compat import Variable, get_async_connection, mask_secret

log = logging.getLogger(__name__)

WHERE = "an Airflow Variable {name!r} holding a JSON object with {key!r}, or an Airflow Connection {name!r}"
_CONN_FIELDS = {"login": "login", "username": "login", "user": "login", "password": "password", "host": "host",
                "schema": "schema", "port": "port"}


def _variable(name: str) -> Any:
    return Variable.get(name, default=None)


async def airflow_secret(name: str, key: str) -> str | None:
    """``{name, key}`` from Airflow (see the module's docstring), or None when Airflow has neither."""
    try:
        # Variable.get is synchronous: in the triggerer it waits on the supervisor, so not on the loop.
        raw = await asyncio.to_thread(_variable, name)
    except Exception as err:  # a secrets backend that fails: the Connection may still have it
        log.debug("secret %s/%s: Airflow Variable %r not read: %s", name, key, name, type(err).__name__)
        raw = None
    value: Any = None
    if raw is not None:
        try:
            doc = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            doc = None
        if isinstance(doc, dict) and key in doc:
            value = doc[key]
    if value is None:
        try:
            conn = await get_async_connection(name)
        except Exception:  # not defined (AirflowNotFoundException) or not readable now
            conn = None
        if conn is not None:
            field = _CONN_FIELDS.get(key)
            value = getattr(conn, field, None) if field else (conn.extra_dejson or {}).get(key)
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    mask_secret(text)
    return text


async def airflow_secrets(model: Any) -> Secrets:
    """The secrets of ``model`` (an EventSource event's block, a Sensor): environment, secrets
    folder, then Airflow Variables and Connections, each looked up now."""
    return Secrets([await prefetch(secret_refs(model), airflow_secret)], elsewhere=WHERE)
