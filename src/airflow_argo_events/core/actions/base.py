"""What every action shares: the result type, the context it runs in, and the Action base."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_argo_events.core.secrets import Secrets

if TYPE_CHECKING:
    import aiohttp

    from airflow_argo_events.core.sensor.engine import Firing

log = logging.getLogger("airflow_argo_events.actions")


@dataclass(frozen=True)
class ActionResult:
    """Outcome of one attempt. ``retryable=False`` stops the retry loop at once."""

    ok: bool
    detail: str = ""
    status: int | None = None
    retryable: bool = True
    ref: str = ""
    """What the attempt created or found, by name (a DAG run id), for ``sensor status``."""


@dataclass
class ActionContext:
    """Services actions need, injected so tests and the Airflow layer can swap them."""

    secrets: Secrets = field(default_factory=Secrets)
    k8s_factory: Callable[[Any], Any] | None = None
    """Builds a ``K8sApi`` for a trigger (the Airflow layer provides one over KubernetesHook)."""
    airflow_conn: Callable[[str], Awaitable[tuple[str, str | None, str | None, str | None]]] | None = None
    """Resolves an Airflow connection id to (base URL, user, password, token or None)."""
    slack_api_url: str = "https://slack.com/api"
    prefect_api: Any = None
    """A ``PrefectApiSettings`` for the prefect actions; None: Prefect's environment and profile."""
    _session: aiohttp.ClientSession | None = None

    async def http(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class Action(ABC):
    """Executes firings of one trigger template."""

    kind = ""

    def __init__(self, name: str, ctx: ActionContext) -> None:
        self.name = name
        self.ctx = ctx

    @abstractmethod
    async def execute(self, firing: Firing) -> ActionResult: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


class UnsupportedAction(Action):
    """A trigger type that loads but that this project does not execute."""

    def __init__(self, name: str, ctx: ActionContext, kind: str) -> None:
        super().__init__(name, ctx)
        self.kind = kind

    async def execute(self, firing: Firing) -> ActionResult:
        return ActionResult(False, f"trigger type {self.kind!r} is not supported by airflow-argo-events",
                            retryable=False)
