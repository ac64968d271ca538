"""The "Argo Events" page of the Airflow UI: an Airflow 3 plugin registered by this provider.

A FastAPI app mounted by the API server at ``/argo-events`` (no extra process) serves the
page and its JSON, and an external view puts "Argo Events" in the UI's Browse menu (the
page opens inside the UI) and an "Argo Events" tab on every DAG (only that DAG's sensors).

Authentication and authorisation are Airflow's: the user comes from the UI's session cookie
or a bearer token (the API server's ``get_user``), and the auth manager says which DAGs
they may read; a sensor is listed only for users who may read one of its DAGs.

``GET /argo-events/`` the page; ``?dag_id=`` one DAG's sensors; ``?partial=1`` only the cards
``GET /argo-events/api/sensors`` the same as JSON: per sensor, ``status`` is what
``argo-events sensor status --json`` prints.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from airflow_argo_events.plugins import page as pages
from airflow_argo_events.plugins import sensors as sensors_mod

URL_PREFIX = "/argo-events"


def _nats_settings(conn_id: str) -> Any:
    """The bus settings of a ``nats`` connection, looked up as the API server does (DB, secrets)."""
    from airflow.models.connection import Connection

    from airflow_argo_events.hooks.nats import NatsHook

    return NatsHook.settings_from_connection(Connection.get_connection_from_secrets(conn_id))


def _load(user: Any, dag_id: str | None) -> dict[str, Any]:
    """Blocking (database): the sensors ``user`` may see (at most MAX_SENSORS), the DAGs they may
    read, whether they may read assets, and the recent runs per DAG."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.utils.session import create_session

    auth = get_auth_manager()
    with create_session() as session:
        running = sensors_mod.running_sensors(session)
        teams = sensors_mod.dag_teams(session, sorted({d for s in running for d in s.dag_ids}))
        readable = sensors_mod.readable_dags(auth, user, teams)
        shown = sensors_mod.visible(running, readable, dag_id)
        total = len(shown)
        shown = shown[: sensors_mod.MAX_SENSORS]
        runs = {s.target_dag: sensors_mod.recent_runs(session, s.target_dag)
                for s in shown if s.target_dag and s.target_dag in readable}
    return {"sensors": shown, "total": total, "readable": readable, "runs": runs,
            "assets_ok": bool(auth.is_authorized_asset(method="GET", user=user))}


async def _views(user: Any, dag_id: str | None) -> tuple[list[dict[str, Any]], int]:
    loaded = await asyncio.to_thread(app.state.load, user, dag_id)
    slots = asyncio.Semaphore(sensors_mod.CONCURRENT_READS)

    async def one(s: sensors_mod.RunningSensor) -> dict[str, Any]:
        async with slots:
            return await sensors_mod.sensor_view(s, loaded["readable"], loaded["runs"].get(s.target_dag or "", []),
                                                 app.state.nats_settings, loaded["assets_ok"])

    return list(await asyncio.gather(*(one(s) for s in loaded["sensors"]))), loaded["total"]


async def _user(request: Request) -> Any:
    """The Airflow user of the request (bearer token or the UI's cookie), or None."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials

    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    creds = HTTPAuthorizationCredentials(scheme=scheme, credentials=token) if token else None
    try:
        return await get_user(request, None, creds)
    except HTTPException:
        return None


def _login_url(request: Request) -> str:
    from airflow.api_fastapi.app import get_auth_manager

    try:
        return str(get_auth_manager().get_url_login(next_url=str(request.url)))
    except Exception:
        return "../auth/login"


UserDep = Annotated[Any, Depends(_user)]


def create_app() -> FastAPI:
    api = FastAPI(title="Argo Events", docs_url=None, redoc_url=None, openapi_url=None)
    # Seams for tests: where the sensors come from, and how a connection becomes bus settings.
    api.state.load = _load
    api.state.nats_settings = _nats_settings

    @api.get("/", response_class=HTMLResponse)
    async def index(request: Request, user: UserDep, dag_id: str | None = None, partial: bool = False) -> Any:
        if user is None:
            if partial:
                return HTMLResponse('<p class="error">Your session expired: reload the page.</p>', status_code=401)
            return RedirectResponse(_login_url(request), status_code=307)
        views, total = await _views(user, dag_id or None)
        if partial:
            return HTMLResponse(pages.sensors_fragment(views, dag_id, total))
        return HTMLResponse(pages.page(views, dag_id, total))

    @api.get("/api/sensors")
    async def sensors_json(user: UserDep, dag_id: str | None = None) -> Any:
        if user is None:
            return JSONResponse({"detail": "Not authenticated"}, status_code=401)
        views, _ = await _views(user, dag_id or None)
        return [{k: v for k, v in view.items() if k not in ("graph_svg",)} for view in views]

    return api


app = create_app()


class ArgoEventsPlugin(AirflowPlugin):
    """Registered through ``get_provider_info()["plugins"]``; Airflow loads it in the API server."""

    name = "argo_events"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Argo Events"}]
    external_views = [
        # Relative hrefs: the UI resolves them against its base URL, so a proxy prefix keeps working.
        {"name": "Argo Events", "href": "argo-events/", "url_route": "argo-events", "destination": "nav",
         "category": "browse"},
        {"name": "Argo Events", "href": "argo-events/?dag_id={DAG_ID}", "url_route": "argo-events-dag",
         "destination": "dag"},
    ]
