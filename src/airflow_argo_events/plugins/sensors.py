"""The sensors the triggerer runs, who may see them, and their live status (for the UI page).

A sensor run by Airflow is a ``SensorTrigger`` row in the ``trigger`` table: an
AssetWatcher's (linked to assets, and through them to the DAGs scheduled on those assets)
or a deferred ``EventSensor`` task's (linked to its task instance). Its status is read
from NATS with :func:`~airflow_argo_events.core.observe.status.read_sensor_status`, the
function ``argo-events sensor status`` calls: one code path.

Who sees what: a sensor belongs to the DAGs it serves (the DAGs scheduled on its assets,
the DAG its firings start with ``dag_id``, the DAG of its deferred task); a user sees it
when the auth manager lets them read at least one of those DAGs, and sees links only to
runs of DAGs they may read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_argo_events.core.observe.graph import render
from airflow_argo_events.core.redact import redact_text
from airflow_argo_events.plugins.page import RUN_ID_PREFIX

log = logging.getLogger(__name__)

SENSOR_CLASSPATH = "airflow_argo_events.triggers.sensor.SensorTrigger"
RECENT_RUNS = 5
MAX_SENSORS = 50
"""Sensors read per page at most (each is a few NATS requests); ``dag_id`` narrows the list."""
CONCURRENT_READS = 8
"""Statuses read from NATS at once for one page."""
STATUS_TIMEOUT = 10.0
"""Seconds to read one sensor's status from NATS before the page shows it as unreadable."""


@dataclass
class RunningSensor:
    """One SensorTrigger the triggerer runs, with what ties it to DAGs and assets."""

    trigger_id: int
    kwargs: dict[str, Any]
    triggerer_id: int | None = None
    assets: list[dict[str, Any]] = field(default_factory=list)
    """``{"id", "name", "uri", "watcher"}`` of the assets it watches (AssetWatcher)."""
    consumer_dags: list[str] = field(default_factory=list)
    """DAGs scheduled on those assets."""
    task: dict[str, Any] | None = None
    """``{"dag_id", "task_id", "run_id", "map_index"}`` of the deferred EventSensor task."""

    @property
    def target_dag(self) -> str | None:
        return self.kwargs.get("dag_id") or None

    @property
    def dag_ids(self) -> set[str]:
        """Every DAG this sensor belongs to: reading any of them shows the sensor."""
        ids = set(self.consumer_dags)
        if self.target_dag:
            ids.add(self.target_dag)
        if self.task:
            ids.add(self.task["dag_id"])
        return ids

    @property
    def kind(self) -> str:
        return "EventSensor task" if self.task else "AssetWatcher"


# ------------------------------------------------------------------ the Airflow database


def running_sensors(session: Any) -> list[RunningSensor]:
    """Every SensorTrigger row, with its assets, their consumer DAGs and its task instance
    (three queries whatever the number of triggers)."""
    from airflow.models.asset import AssetModel, AssetWatcherModel, DagScheduleAssetReference
    from airflow.models.trigger import Trigger
    from sqlalchemy import select

    out: dict[int, RunningSensor] = {}
    for trig in session.scalars(select(Trigger).where(Trigger.classpath == SENSOR_CLASSPATH).order_by(Trigger.id)):
        try:
            kwargs = dict(trig.kwargs)
        except Exception as err:  # a row whose kwargs cannot be decrypted (fernet key changed): skip it
            log.warning("trigger %s: kwargs unreadable (%s); not shown", trig.id, type(err).__name__)
            continue
        rs = RunningSensor(trig.id, kwargs, trig.triggerer_id)
        ti = trig.task_instance  # loaded with the triggers (selectin)
        if ti is not None:
            rs.task = {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id, "map_index": ti.map_index}
        out[trig.id] = rs
    if not out:
        return []
    watched = session.execute(
        select(AssetWatcherModel.trigger_id, AssetModel.id, AssetModel.name, AssetModel.uri, AssetWatcherModel.name)
        .join(AssetModel, AssetWatcherModel.asset_id == AssetModel.id)
        .where(AssetWatcherModel.trigger_id.in_(list(out))).order_by(AssetModel.id)).all()
    for trigger_id, asset_id, name, uri, watcher in watched:
        out[trigger_id].assets.append({"id": asset_id, "name": name, "uri": uri, "watcher": watcher})
    consumers: dict[int, set[str]] = {}
    if watched:
        for asset_id, dag_id in session.execute(
                select(DagScheduleAssetReference.asset_id, DagScheduleAssetReference.dag_id)
                .where(DagScheduleAssetReference.asset_id.in_({row[1] for row in watched}))).all():
            consumers.setdefault(asset_id, set()).add(dag_id)
    for rs in out.values():
        rs.consumer_dags = sorted(set().union(*(consumers.get(a["id"], set()) for a in rs.assets)))
    return list(out.values())


def recent_runs(session: Any, dag_id: str, limit: int = RECENT_RUNS) -> list[dict[str, Any]]:
    """The newest DAG runs a sensor's firings created (run id ``argo-events__<firing id>``)."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    rows = session.execute(
        select(DagRun.run_id, DagRun.state, DagRun.queued_at, DagRun.start_date)
        .where(DagRun.dag_id == dag_id, DagRun.run_id.startswith(RUN_ID_PREFIX, autoescape=True))
        .order_by(DagRun.id.desc()).limit(limit)).all()
    return [{"dag_id": dag_id, "run_id": r, "state": str(s.value if hasattr(s, "value") else s) if s else "",
             "queued_at": q.isoformat() if q else None, "start_date": d.isoformat() if d else None}
            for r, s, q, d in rows]


def dag_teams(session: Any, dag_ids: Iterable[str]) -> dict[str, str | None]:
    """DAG id -> team name (multi-team deployments; None otherwise)."""
    from airflow.models.dag import DagModel

    ids = list(dag_ids)
    if not ids:
        return {}
    try:
        mapping = DagModel.get_dag_id_to_team_name_mapping(ids, session=session)
    except AttributeError:  # Airflow before multi-team
        mapping = {}
    return {d: mapping.get(d) for d in ids}


# ------------------------------------------------------------------ who sees what


def readable_dags(auth_manager: Any, user: Any, teams: dict[str, str | None]) -> set[str]:
    """The DAGs of ``teams`` that ``user`` may read (``GET``), asked per team as Airflow's routes do."""
    by_team: dict[str | None, set[str]] = {}
    for dag_id, team in teams.items():
        by_team.setdefault(team, set()).add(dag_id)
    allowed: set[str] = set()
    for team, ids in by_team.items():
        allowed |= set(auth_manager.filter_authorized_dag_ids(dag_ids=ids, user=user, method="GET", team_name=team))
    return allowed


def visible(sensors: Iterable[RunningSensor], readable: set[str], dag_id: str | None = None) -> list[RunningSensor]:
    """The sensors a user whose readable DAGs are ``readable`` may see (and, with ``dag_id``,
    only that DAG's)."""
    out = []
    for s in sensors:
        ids = s.dag_ids
        if not ids & readable:
            continue
        if dag_id is not None and dag_id not in ids:
            continue
        out.append(s)
    return out


# ------------------------------------------------------------------ the live status


def airflow_actions(rs: RunningSensor, readable: set[str] | None = None, assets_ok: bool = True) -> list[str]:
    """What a firing does in Airflow: the trigger's event (an asset event or a resumed task),
    and a DAG run with ``dag_id``. The manifest's own actions are not run by a SensorTrigger.
    DAGs outside ``readable`` and, without ``assets_ok``, assets are not named."""
    def dag(d: str) -> str:
        return d if readable is None or d in readable else "a DAG you may not read"

    out = []
    if rs.target_dag:
        out.append(f"Airflow DAG run of {dag(rs.target_dag)}")
    out.extend(f"asset event on {a['uri'] if assets_ok else 'its asset'}" for a in rs.assets)
    if rs.task:
        task = f"{rs.task['dag_id']}.{rs.task['task_id']}" if dag(rs.task["dag_id"]) == rs.task["dag_id"] else \
            "a task of a DAG you may not read"
        out.append(f"resumes task {task}")
    return out or ["trigger event"]


def _scrub_owner(owner: dict[str, Any], readable: set[str]) -> dict[str, Any]:
    """The status's ``owner`` without the DAGs (and their tasks and runs) the user may not read."""
    out = dict(owner)
    if out.get("dag_id") and out["dag_id"] not in readable:
        for key in ("dag_id", "task_id", "run_id"):
            out.pop(key, None)
    if out.get("creates_runs_of") and out["creates_runs_of"] not in readable:
        out.pop("creates_runs_of")
    return out


async def sensor_view(rs: RunningSensor, readable: set[str], runs: list[dict[str, Any]],
                      read_settings: Any, assets_ok: bool = True) -> dict[str, Any]:
    """What the page shows of one sensor: status (or the one-line error that stopped reading it),
    graph with the live state, and links only to DAGs the user may read.

    ``read_settings(conn_id)`` returns ``(NatsSettings, StreamSettings)`` (a thread-safe, blocking
    connection lookup; it runs in a worker thread).
    """
    from airflow_argo_events.core.bus import EventBus
    from airflow_argo_events.core.observe.status import read_sensor_status
    from airflow_argo_events.triggers.sensor import SensorTrigger

    view: dict[str, Any] = {
        "trigger_id": rs.trigger_id, "kind": rs.kind, "running_in_triggerer": rs.triggerer_id is not None,
        "assets": rs.assets if assets_ok else [], "dags": sorted(rs.dag_ids & readable),
        "hidden_dags": len(rs.dag_ids - readable),
        "target_dag": rs.target_dag if rs.target_dag in readable else None,
        "task": rs.task if rs.task and rs.task["dag_id"] in readable else None,
        "runs": [r for r in runs if r["dag_id"] in readable], "status": None, "error": None,
        "sensor": str(rs.kwargs.get("name") or ""), "graph_svg": "", "mermaid": "",
    }
    try:
        trigger = SensorTrigger(**rs.kwargs)
    except Exception as err:  # kwargs of another version of this provider
        view["error"] = f"cannot rebuild the trigger from its kwargs: {type(err).__name__}: {redact_text(str(err))}"
        return view
    from airflow_argo_events.core.spec.loader import parse_manifest

    try:
        sensor = parse_manifest(trigger.sensor, None, "Sensor")
    except Exception as err:
        view["error"] = f"the sensor manifest does not load: {redact_text(str(err))}"
        return view
    view["sensor"] = sensor.metadata.name
    actions = airflow_actions(rs, readable, assets_ok)
    async def read() -> Any:
        settings, stream = await asyncio.to_thread(read_settings, trigger.nats_conn_id)
        async with EventBus(settings, stream, ensure=False) as bus:
            return await read_sensor_status(bus.js, trigger.state_for(bus.stream.name), sensor=sensor)

    try:
        status = await asyncio.wait_for(read(), STATUS_TIMEOUT)
    except Exception as err:  # NATS away, connection missing, state not created yet: one line on the page
        view["error"] = f"{type(err).__name__}: {redact_text(str(err)) or 'no detail'}"
        view["graph_svg"] = render(sensor, "svg", actions=actions)
        view["mermaid"] = render(sensor, "mermaid", actions=actions)
        return view
    view["status"] = status.to_dict()
    view["status"]["owner"] = _scrub_owner(view["status"].get("owner") or {}, readable)
    view["lag"] = status.lag
    live = {t.name: {d.name: d.satisfied for d in t.dependencies} for t in status.triggers if t.stateful}
    view["graph_svg"] = render(sensor, "svg", live, actions)
    view["mermaid"] = render(sensor, "mermaid", live, actions)
    return view

