"""``argo-events state list`` and ``state delete NAME``: the sensors' KV buckets and durable consumers.

A sensor's state is named from its whole definition (core/runtime/identity.py), so a
changed definition leaves the old bucket and consumers behind: these commands find and
remove them. A bucket's ``meta`` key says whose it is::

    {"version": 2, "sensor", "stream", "identity", "consumers": [...], "triggers": [...],
     "started": RFC3339, "definition": sha256}

Buckets of the older layout have no ``meta``; they are listed as ``legacy`` when their
name has one of the prefixes this project used (``sensor-``, ``airflow-``, ``ti-``,
``manifest-``), and their consumers are found by recomputing durable names.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from airflow_argo_events.cli.common import run_async
from airflow_argo_events.cli.nats_target import nats_target
from airflow_argo_events.core.bus import EventBus, StateStore, StreamSettings, durable_name
from airflow_argo_events.core.limits import loads_strict
from airflow_argo_events.core.runtime.state import count_journal

LEGACY_PREFIXES = ("sensor-", "airflow-", "ti-", "manifest-")
KV_STREAM = "KV_"


@dataclass
class StateInfo:
    name: str
    sensor: str | None
    stream: str | None
    keys: int
    bytes: int
    pending: int | None
    started: str | None
    legacy: bool
    consumers: list[str] = field(default_factory=list)
    definition: str | None = None


def configure_list(ls: argparse.ArgumentParser) -> None:
    ls.add_argument("--json", action="store_true", help="one JSON array instead of the table")
    ls.add_argument("--all", action="store_true", help="also KV buckets that are not sensor state")
    _nats(ls)
    ls.set_defaults(func=run_list)


def configure_delete(rm: argparse.ArgumentParser) -> None:
    rm.add_argument("name", metavar="NAME", help="a state name from 'argo-events state list'")
    rm.add_argument("--yes", action="store_true", help="do not ask (required when stdin is not a terminal)")
    _nats(rm)
    rm.set_defaults(func=run_delete)


def _nats(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nats", help="NATS URL (default $ARGO_EVENTS_NATS_URL, else local/embedded)")


# ---------------------------------------------------------------- reading


async def _meta(js: JetStreamContext, bucket: str) -> dict[str, Any] | None:
    kv = await js.key_value(bucket)
    try:
        entry = await kv.get("meta")
    except Exception:  # KeyNotFoundError, KeyDeletedError: no meta, an older layout
        return None
    if not entry.value:
        return None
    try:
        meta = loads_strict(entry.value)
    except ValueError:
        return {"unreadable": True}
    return meta if isinstance(meta, dict) else {"unreadable": True}


async def _count_journal(js: JetStreamContext, bucket: str) -> int:
    """Firings in the journal, by server-side filtered scans of ``s.*`` and ``j.*`` (not of
    every key; the scans a sensor loads its entries and journal with)."""
    return await count_journal(StateStore(await js.key_value(bucket), bucket, js))


async def _legacy_pending(js: JetStreamContext, bucket: str) -> int | None:
    kv = await js.key_value(bucket)
    try:
        entry = await kv.get("state")
        doc = loads_strict(entry.value or b"{}")
    except Exception:
        return None
    pending = doc.get("pending") if isinstance(doc, dict) else None
    return len(pending) if isinstance(pending, dict) else None


async def _info(js: JetStreamContext, stream_info: Any) -> StateInfo | None:
    bucket = stream_info.config.name[len(KV_STREAM):]
    state = stream_info.state
    meta = await _meta(js, bucket)
    if meta is not None and not meta.get("unreadable"):
        pending: int | None
        try:
            pending = await asyncio.wait_for(_count_journal(js, bucket), timeout=30)
        except Exception:
            pending = None
        return StateInfo(bucket, meta.get("sensor"), meta.get("stream"), state.messages, state.bytes, pending,
                         meta.get("started"), False, list(meta.get("consumers") or []), meta.get("definition"))
    if meta is None and not bucket.startswith(LEGACY_PREFIXES):
        return None
    return StateInfo(bucket, None, None, state.messages, state.bytes, await _legacy_pending(js, bucket), None,
                     True)


async def list_states(js: JetStreamContext, everything: bool = False) -> list[StateInfo]:
    """Every sensor state bucket (and, with ``everything``, every other KV bucket as legacy)."""
    out: list[StateInfo] = []
    for si in await js.streams_info():
        if not si.config.name.startswith(KV_STREAM):
            continue
        try:
            info = await _info(js, si)
        except NotFoundError:  # deleted since it was listed (BucketNotFoundError is one)
            continue
        if info is None and everything:
            b = si.config.name[len(KV_STREAM):]
            info = StateInfo(b, None, None, si.state.messages, si.state.bytes, None, None, True)
        if info is not None:
            out.append(info)
    return sorted(out, key=lambda s: s.name)


async def owned_consumers(js: JetStreamContext, name: str, meta: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(stream, consumer) pairs of a state: those its meta lists, and any whose durable name is
    this state's for the subject it reads (how the runtime names them; finds legacy ones too)."""
    found: set[tuple[str, str]] = set()
    if meta and meta.get("stream"):
        found.update((meta["stream"], c) for c in meta.get("consumers") or [])
    for si in await js.streams_info():
        stream = si.config.name
        if stream.startswith(KV_STREAM) or not si.state.consumer_count:
            continue
        try:
            consumers = await js.consumers_info(stream)
        except NotFoundError:  # deleted since it was listed (other users of the server)
            continue
        for ci in consumers:
            subject = ci.config.filter_subject or ""
            prefix = f"{stream}."
            if not subject.startswith(prefix) or "." not in subject[len(prefix):]:
                continue
            source, event = subject[len(prefix):].split(".", 1)
            if ci.name == durable_name(name, source, event):
                found.add((stream, ci.name))
    return sorted(found)


# ---------------------------------------------------------------- commands


def _table(rows: list[StateInfo]) -> str:
    def cell(v: Any) -> str:
        return "-" if v is None else str(v)

    head = ("NAME", "SENSOR", "STREAM", "KEYS", "BYTES", "PENDING", "STARTED")
    lines = [head] + [(r.name, "legacy" if r.legacy else cell(r.sensor), cell(r.stream), str(r.keys),
                       str(r.bytes), cell(r.pending), cell(r.started)) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def run_list(args: argparse.Namespace) -> int:
    async def go() -> None:
        with nats_target(args.nats, quiet=True) as settings:
            async with EventBus(settings, StreamSettings(), ensure=False) as bus:
                rows = await list_states(bus.js, everything=args.all)
        if args.json:
            print(json.dumps([asdict(r) for r in rows], indent=2))
        elif rows:
            print(_table(rows))
        else:
            print("no sensor state", file=sys.stderr)

    return run_async(go)


def _confirm(name: str, what: str) -> bool | None:
    """True/False from the terminal; None when stdin is not one."""
    if not sys.stdin.isatty():
        return None
    answer = input(f"delete sensor state {name} ({what})? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def run_delete(args: argparse.Namespace) -> int:
    name = args.name

    async def go() -> int:
        with nats_target(args.nats, quiet=True) as settings:
            async with EventBus(settings, StreamSettings(), ensure=False) as bus:
                js = bus.js
                try:
                    await js.stream_info(KV_STREAM + name)
                except NotFoundError:
                    print(f"no sensor state named {name!r} (see 'argo-events state list')", file=sys.stderr)
                    return 1
                meta = await _meta(js, name)
                consumers = await owned_consumers(js, name, meta)
                what = f"the KV bucket and {len(consumers)} durable consumer(s)"
                if not args.yes:
                    ok = _confirm(name, what)
                    if ok is None:
                        print(f"not deleting {name}: stdin is not a terminal; add --yes to delete {what}",
                              file=sys.stderr)
                        return 2
                    if not ok:
                        return 1
                for stream, consumer in consumers:
                    try:
                        info = await js.consumer_info(stream, consumer)
                        if info.num_waiting:
                            print(f"warning: consumer {consumer} on {stream} has readers waiting: a sensor is "
                                  "running on this state and will recreate what it needs", file=sys.stderr)
                        await js.delete_consumer(stream, consumer)
                    except NotFoundError:
                        pass
                await js.delete_key_value(name)
                print(f"deleted {name}: KV bucket and {len(consumers)} consumer(s)"
                      + (" (legacy layout)" if meta is None else ""))
                return 0

    return run_async(go)
