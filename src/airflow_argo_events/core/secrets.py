"""Kubernetes ``secretKeyRef``s resolved outside Kubernetes.

A manifest's ``{name: slack-secret, key: token}`` is looked up, first hit wins, in:

1. the environment: ``ARGO_EVENTS_SECRET_<NAME>_<KEY>`` (upper case, other characters
   as ``_``), e.g. ``ARGO_EVENTS_SECRET_SLACK_SECRET_TOKEN``;
2. a folder laid out like a mounted Kubernetes secret: ``$ARGO_EVENTS_SECRETS_DIR/<name>/<key>``;
3. any extra resolvers given: inside Airflow, the triggers and operators add Airflow
   Variables and Connections (``hooks/secrets.py``), looked up ahead through
   :func:`prefetch` because Airflow answers asynchronously and a source reads its
   secrets synchronously.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from airflow_argo_events.core.exceptions import ArgoEventsError

Resolver = Callable[[str, str], "str | None"]
AsyncResolver = Callable[[str, str], Awaitable["str | None"]]


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

    def __init__(self, extra: Sequence[Resolver] = (), elsewhere: str = "") -> None:
        self._chain: list[Resolver] = [from_env, from_dir, *extra]
        self._elsewhere = elsewhere
        """Where ``extra`` looks, for the not-found message ({name} and {key} are filled in)."""

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
        if self._elsewhere:
            hint = hint.replace(" or put", ", put") + ", or " + self._elsewhere.format(name=name, key=key)
        raise SecretNotFound(f"{where + ': ' if where else ''}secret {name}/{key} not found; {hint}")

    def maybe(self, selector: Any, where: str = "") -> str | None:
        return None if selector is None else self.get(selector, where)


def secret_refs(model: Any) -> list[tuple[str, str]]:
    """Every ``secretKeyRef`` as ``(name, key)`` in a manifest model or a part of it, once each, in order.

    >>> from airflow_argo_events.core.spec.eventsource import EventSource
    >>> es = EventSource.model_validate({"metadata": {"name": "w"}, "spec": {"webhook": {"e": {
    ...     "port": "12000", "endpoint": "/e", "method": "POST", "authSecret": {"name": "hooks", "key": "token"}}}}})
    >>> secret_refs(es.event("e").spec)
    [('hooks', 'token')]
    """
    from pydantic import BaseModel

    from airflow_argo_events.core.spec.base import SecretKeySelector

    found: dict[tuple[str, str], None] = {}

    def walk(node: Any) -> None:
        if isinstance(node, SecretKeySelector):
            found[(node.name, node.key)] = None
        elif isinstance(node, BaseModel):
            for name in type(node).model_fields:
                walk(getattr(node, name))
        elif isinstance(node, (list, tuple)):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)

    walk(model)
    return list(found)


async def prefetch(refs: Iterable[tuple[str, str]], lookup: AsyncResolver) -> Resolver:
    """Ask ``lookup`` now for each ref the environment and the secrets folder do not have;
    a resolver over what it found, for :class:`Secrets` (``extra``).

    A source reads its secrets synchronously, while Airflow answers only asynchronously
    (inside the triggerer, through the API server), hence the lookup ahead.
    """
    found: dict[tuple[str, str], str] = {}
    for name, key in refs:
        if from_env(name, key) is None and from_dir(name, key) is None:
            value = await lookup(name, key)
            if value is not None:
                found[(name, key)] = value

    def resolve(name: str, key: str) -> str | None:
        return found.get((name, key))

    return resolve
