"""What a running sensor saw, stored beside its state for ``sensor status`` to read.

The state proper (``s.*`` entries, the ``j.*`` journal) says what a sensor holds; it
does not say what the sensor last saw or how its last firings ended. The runtime keeps
that here, in memory, and stores it under one key of the sensor's bucket::

    obs     {"v": 1, "written", "instance", "counters": {...},
             "deps": {dep: {"id", "time", "at", "verdict"}},          last event per dependency
             "firings": {trigger: {"id", "at", "ok", "detail", "attempts", "status", "ref"}},
             "running": {firing id: {"trigger", "since", "attempts", "error"}}}

It is rewritten at most once a second (``FLUSH_EVERY``) and only when something changed:
never one write per event, so the hot path pays a few dict assignments per event. The
document is bounded: one item per dependency and per trigger, at most ``MAX_RUNNING``
running firings. It is advisory: losing the last second of it in a crash loses nothing
but what ``sensor status`` shows until the next event.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any

from airflow_argo_events.core.events import Event, format_time

OBS_KEY = "obs"
OBS_VERSION = 1
FLUSH_EVERY = 1.0
"""Seconds between two writes of ``obs`` at most."""
MAX_RUNNING = 100
MAX_TEXT = 300


def _iso(epoch: float) -> str:
    return format_time(datetime.fromtimestamp(epoch, timezone.utc))


def _cut(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


class Observations:
    """The runtime's notes for ``sensor status``; ``dump()`` is what is stored under ``obs``.

    >>> obs = Observations("abc123")
    >>> obs.attempt("f1", "notify", 1, False, "POST http://x: 503")
    >>> obs.dump({})["running"]["f1"]["error"]
    'POST http://x: 503'
    """

    def __init__(self, instance: str) -> None:
        self.instance = instance
        # dep -> (event id, event time, seen at (epoch), verdict or "" for passed): tuples, so
        # the per-event cost is one assignment; formatted only when stored.
        self.deps: dict[str, tuple[str, datetime | None, float, str]] = {}
        self.firings: dict[str, dict[str, Any]] = {}
        self.running: dict[str, dict[str, Any]] = {}
        self._dirty = False
        self._waiter: asyncio.Future[None] | None = None
        self.written = 0.0

    @property
    def dirty(self) -> bool:
        """Something changed since the last write of ``obs``."""
        return self._dirty

    @dirty.setter
    def dirty(self, value: bool) -> None:
        self._dirty = value
        if value and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def changed(self) -> None:
        """Return once something changed (at once if it has): the writer of an idle sensor
        sleeps instead of waking every second (10,000 of them share a triggerer)."""
        while not self._dirty:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def saw(self, dep: str, event: Event, at: float, verdict: str) -> None:
        """``verdict``: "" when the dependency accepted the event, else why not."""
        self.deps[dep] = (event.id, event.time, at, verdict)
        self.dirty = True

    def started(self, firing_id: str, trigger: str) -> None:
        if len(self.running) < MAX_RUNNING:
            # times as epoch floats, formatted in dump() (at most once a second, not per firing)
            self.running[firing_id] = {"trigger": trigger, "since": time.time(), "attempts": 0, "error": ""}
            self.dirty = True

    def attempt(self, firing_id: str, trigger: str, attempt: int, ok: bool, detail: str) -> None:
        """One attempt of an action ended (the executor's retries, the DAG run creation's)."""
        run = self.running.get(firing_id)
        if run is None:
            if len(self.running) >= MAX_RUNNING:
                return
            run = self.running[firing_id] = {"trigger": trigger, "since": time.time(), "attempts": 0,
                                             "error": ""}
        run["attempts"] = max(run["attempts"], attempt)
        if not ok:
            run["error"] = _cut(detail)
        self.dirty = True

    def finished(self, firing_id: str, trigger: str, ok: bool, detail: str = "", attempts: int = 0,
                 status: int | None = None, ref: str = "") -> None:
        """The firing left the journal: its outcome becomes the trigger's last firing."""
        run = self.running.pop(firing_id, None)
        self.firings[trigger] = {"id": firing_id, "at": time.time(), "ok": ok, "detail": _cut(detail),
                                 "attempts": attempts or (run or {}).get("attempts", 0), "status": status,
                                 "ref": ref}
        self.dirty = True

    def dump(self, counters: dict[str, int]) -> dict[str, Any]:
        deps = {d: {"id": i, "time": format_time(t) if t else None, "at": _iso(at),
                    "verdict": "passed" if not v else _cut(v)} for d, (i, t, at, v) in self.deps.items()}
        firings = {t: {**f, "at": _iso(f["at"])} for t, f in self.firings.items()}
        running = {fid: {**r, "since": _iso(r["since"])} for fid, r in self.running.items()}
        return {"v": OBS_VERSION, "written": _iso(time.time()), "instance": self.instance,
                "counters": dict(counters), "deps": deps, "firings": firings, "running": running}


def outcome_of(result: Any) -> tuple[bool, str, int, int | None, str]:
    """(ok, detail, attempts, status, ref) of whatever an ``execute`` returned: the
    ActionRunner's ``Outcome``, or nothing (the action was handed over, e.g. to Airflow)."""
    ok = getattr(result, "ok", None)
    if ok is None:
        return True, "handed over", 0, None, ""
    return (bool(ok), str(getattr(result, "detail", "") or ""), int(getattr(result, "attempts", 0) or 0),
            getattr(result, "status", None), str(getattr(result, "ref", "") or ""))
