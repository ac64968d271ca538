"""Kubernetes ``secretKeyRef``s resolved outside Kubernetes.

A manifest's ``{name: slack-secret, key: token}`` is looked up, first hit wins, in:

1. the environment: ``ARGO_EVENTS_SECRET_<NAME>_<KEY>`` (upper case, other characters
   as ``_``), e.g. ``ARGO_EVENTS_SECRET_SLACK_SECRET_TOKEN``;
2. a folder laid out like a mounted Kubernetes secret: ``$ARGO_EVENTS_SECRETS_DIR/<name>/<key>``;
3. any extra resolvers given (the Airflow layer adds Airflow Variables and Connections).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from airflow_argo_events.core.exceptions import ArgoEventsError

Resolver = Callable[[str, str], "str | None"]


class SecretNotFound(ArgoEventsError):
    """No resolver knows the secret."""


def env_name(name: str, key: str) -> str:
    return "ARGO_EVENTS_SECRET_" + re.sub(r"[^A-Z0-9]", "_", f"{name}_{key}".upper())


def from_env(name: str, key: str) -> str | None:
    return os.environ.get(env_name(name, key))


def from_dir(name: str, key: str) -> str | None:
    base = os.environ.get("ARGO_EVENTS_SECRETS_DIR")
    if not base:
        return None
    path = Path(base) / name / key
    try:
        return path.read_text().rstrip("\n")
    except OSError:
        return None


class Secrets:
    """Resolves selectors through a chain of resolvers.

    >>> Secrets([lambda n, k: "s3cret" if n == "db" else None]).get({"name": "db", "key": "pw"})
    's3cret'
    """

    def __init__(self, extra: Sequence[Resolver] = ()) -> None:
        self._chain: list[Resolver] = [from_env, from_dir, *extra]

    def get(self, selector: Any, where: str = "") -> str:
        if selector is None:
            raise SecretNotFound(f"{where}: no secret given")
        name = selector["name"] if isinstance(selector, dict) else selector.name
        key = selector["key"] if isinstance(selector, dict) else selector.key
        for resolve in self._chain:
            value = resolve(name, key)
            if value is not None:
                return value
        hint = f"set {env_name(name, key)} or put it in $ARGO_EVENTS_SECRETS_DIR/{name}/{key}"
        raise SecretNotFound(f"{where + ': ' if where else ''}secret {name}/{key} not found; {hint}")

    def maybe(self, selector: Any, where: str = "") -> str | None:
        return None if selector is None else self.get(selector, where)
