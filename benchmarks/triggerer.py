"""Capacity: many SensorTriggers in one process (as in one triggerer), waiting alone vs shared.

    python benchmarks/triggerer.py [--n 10000] [--modes own,shared] [--before main] [--sample 200] [--idle 10]

Each mode runs in a child process of its own (clean memory and CPU figures) against the
same NATS server: ``own`` is every trigger long-polling its own durable consumer (what
``ARGO_EVENTS_SHARED_WAIT=0`` selects), ``shared`` the process-wide wait of
``core/runtime/shared_wait.py`` (the default). Each child starts N SensorTriggers the way
the triggerer runs them (``run()`` iterated in tasks of one event loop), each on its own
dependency, and reports (``--before REF`` adds the package as of a git ref, e.g. the code
before a change, as a third mode run first):

- time until all N are consuming (every durable consumer exists), and until each of them
  has yielded one TriggerEvent for an event published to it after that (a burst of N);
- memory per trigger (RSS growth / N) in the triggerer process and in nats-server (every
  trigger has its KV bucket, a stream, and a durable consumer on the server);
- idle CPU of both processes while all N wait (measured 15 s after the last one started);
- publish->TriggerEvent p50/p95 with all N live (``--sample`` triggers, one at a time),
  next to one trigger alone and raw nats-py (publish, pull, ack) measured in the same run;
- how long cancelling all N takes (the triggerer cancels triggers it hands to another).

The server is a private embedded nats-server (10,000 KV buckets do not belong on a shared
one) unless ARGO_EVENTS_NATS_URL names one; only the streams this run created are deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp())
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from _common import pct, ratio  # noqa: E402

SETTLE = 15.0
BURST_LIMIT = 600.0
MODES = {"own": "0", "shared": "1"}
"""Mode -> ARGO_EVENTS_SHARED_WAIT for the child."""


def rss_mb(pid: int | str = "self") -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU of this process, or of ``pid`` (from /proc; 0 when unreadable)."""
    if pid is None:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


async def consume(trigger: Any, queue: asyncio.Queue) -> None:
    """What the triggerer does with a trigger: iterate run() in a task, cancel it to stop."""
    async for event in trigger.run():
        queue.put_nowait((time.perf_counter(), event))


async def raw_round_trip(url: str, n: int = 50) -> list[float]:
    """Raw nats-py: publish -> a waiting pull fetch -> ack, one at a time."""
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    name = "trigraw" + uuid.uuid4().hex[:8]
    await js.add_stream(name=name, subjects=[f"{name}.>"])
    try:
        psub = await js.pull_subscribe(f"{name}.bench.raw", durable="d", stream=name)
        lat = []
        for i in range(n):
            t0 = time.perf_counter()
            await js.publish(f"{name}.bench.raw", b"{}", headers={"Nats-Msg-Id": f"r{i}"})
            (m,) = await psub.fetch(1, timeout=5)
            await m.ack()
            lat.append(time.perf_counter() - t0)
        return lat
    finally:
        await js.delete_stream(name)
        await nc.close()


async def child(url: str, n: int, sample: int, idle: float, server_pid: int | None,
                cleanup: bool) -> dict[str, Any]:
    stream = "trig" + uuid.uuid4().hex[:8]
    os.environ["AIRFLOW_CONN_NATS_DEFAULT"] = f"{url}?stream={stream}"
    from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
    from airflow_argo_events.core.bus.connection import pool_size
    from airflow_argo_events.core.events import new_event
    from airflow_argo_events.core.exceptions import EventBusError
    from airflow_argo_events.triggers import SensorTrigger

    def trigger(name: str, event: str) -> Any:
        return SensorTrigger(name=name, dependencies=[{"name": "d", "eventSourceName": "bench", "eventName": event}])

    out: dict[str, Any] = {}
    async with EventBus(NatsSettings.from_url(url), StreamSettings(name=stream, replicas=1), ensure=False) as bus:
        # NATS 2.15 allows 1,000 consumers per stream unless the stream says otherwise, and
        # every trigger's dependency is one durable consumer (docs/operations.md).
        await bus.js.add_stream(name=stream, subjects=[f"{stream}.>"], max_consumers=n + 100)

        async def consumers() -> int:
            while True:
                try:
                    return (await bus.js.stream_info(stream)).state.consumer_count
                except asyncio.TimeoutError:  # the API is busy with the triggers' start-ups
                    print("stream info timed out; asking again", file=sys.stderr)

        out["publish_retries"] = 0

        async def publish(event: str, i: int = 0) -> None:
            ev = new_event(source="bench", subject=event, type="webhook", data={"i": i})
            while True:  # as an EventSource does: the same id again (Nats-Msg-Id de-duplicates)
                try:
                    await bus.publish(ev)
                    return
                except EventBusError:  # a server swamped by the triggers answers late
                    out["publish_retries"] += 1

        try:
            # One trigger alone, in this process, before the crowd.
            solo_q: asyncio.Queue = asyncio.Queue()
            solo = asyncio.create_task(consume(trigger("solo", "solo"), solo_q))
            while await consumers() < 1:  # DeliverNew: wait for the consumer
                if solo.done():
                    raise RuntimeError(f"the trigger stopped: {solo.exception()!r}")
                await asyncio.sleep(0.05)
            solo_lat = []
            for i in range(30):
                await asyncio.sleep(0.05)
                t0 = time.perf_counter()
                await publish("solo", i)
                t1, _ = await asyncio.wait_for(solo_q.get(), 30)
                solo_lat.append(t1 - t0)
            solo.cancel()
            await asyncio.gather(solo, return_exceptions=True)
            out["solo"] = solo_lat

            rss0, srss0 = rss_mb(), rss_mb(server_pid) if server_pid else 0.0
            queues = [asyncio.Queue() for _ in range(n)]
            t0 = time.perf_counter()
            tasks = [asyncio.create_task(consume(trigger(f"t{i}", f"e{i}"), queues[i])) for i in range(n)]
            while await consumers() < n + 1:  # + the solo trigger's durable
                dead = [t for t in tasks if t.done()]
                if dead:
                    raise RuntimeError(f"{len(dead)} trigger(s) stopped: {dead[0].exception()!r}")
                await asyncio.sleep(0.25)
            out["consuming_s"] = time.perf_counter() - t0
            # Settle: a subscription pulls as before ("hot") for 2 * ack_wait + 1 = 11 s after it
            # started or last received something; idle means after that, in both modes alike.
            await asyncio.sleep(SETTLE)
            out["rss_kb"] = 1024 * (rss_mb() - rss0) / n
            out["server_rss_kb"] = 1024 * ((rss_mb(server_pid) if server_pid else 0.0) - srss0) / n
            out["tasks_per_trigger"] = len(asyncio.all_tasks()) / n
            out["connections"] = pool_size()

            c0, s0, w0 = cpu_seconds(), cpu_seconds(server_pid), time.perf_counter()
            await asyncio.sleep(idle)
            wall = time.perf_counter() - w0
            out["idle_cpu"] = (cpu_seconds() - c0) / wall
            out["server_idle_cpu"] = (cpu_seconds(server_pid) - s0) / wall if server_pid else None

            lat = []
            for i in range(0, n, max(1, n // sample)):
                await asyncio.sleep(0.02)
                t1 = time.perf_counter()
                await publish(f"e{i}", i)
                try:
                    t2, _ = await asyncio.wait_for(queues[i].get(), 120)
                except asyncio.TimeoutError:
                    dead = [t for t in tasks if t.done()]
                    print(f"no firing for trigger {i} within 120 s; {len(dead)} trigger tasks ended:",
                          [repr(t.exception()) for t in dead[:3]], file=sys.stderr)
                    raise
                lat.append(t2 - t1)
            out["live"] = lat

            # Every trigger fires once: proves all N are live, and times the fan-out.
            t0 = time.perf_counter()
            for lo in range(0, n, 500):
                await asyncio.gather(*(publish(f"e{i}", i) for i in range(lo, min(n, lo + 500))))
            out["burst_publish_s"] = time.perf_counter() - t0
            fired: list[float] = []
            getters = [asyncio.ensure_future(q.get()) for q in queues]
            for g in getters:
                g.add_done_callback(lambda _: fired.append(time.perf_counter()))
            _, late = await asyncio.wait(getters, timeout=BURST_LIMIT)
            for g in late:
                g.cancel()
            out["burst_s"] = max(fired) - t0 if not late else None
            out["burst_missing"] = len(late)
            if late:
                print(f"{len(late)} of {n} triggers had not fired {BURST_LIMIT:.0f} s after the burst",
                      file=sys.stderr)
            await asyncio.sleep(2)
            out["repeated"] = sum(q.qsize() for q in queues)  # a second TriggerEvent for one event

            t0 = time.perf_counter()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            out["cancel_s"] = time.perf_counter() - t0
        finally:
            if cleanup:  # a server of our own is stopped with its store; a shared one is cleaned
                for name in [i.config.name for i in await bus.js.streams_info()]:
                    if stream in name:  # ours: the stream and the triggers' KV buckets (named after it)
                        await bus.js.delete_stream(name)
    return out


async def diagnosed(main: Any) -> Any:
    """Run ``main``; ``kill -USR1 <child>`` prints where the tasks wait, and an error is printed
    at once (before asyncio.run cancels the 10,000 trigger tasks, which takes a while)."""
    import collections
    import signal
    import traceback

    def where() -> None:
        tops = collections.Counter()
        for task in asyncio.all_tasks():
            frames = task.get_stack(limit=50)
            tops[" <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in frames[-3:][::-1]) or repr(task)] += 1
        for top, count in tops.most_common(15):
            print(f"{count:6} {top}", file=sys.stderr)

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, where)
    try:
        return await main
    except BaseException:
        traceback.print_exc()
        raise


def run_child(mode: str, url: str, args: argparse.Namespace, server_pid: int | None,
              before_src: str | None = None) -> dict[str, Any]:
    env = {**os.environ, "ARGO_EVENTS_SHARED_WAIT": MODES.get(mode, "1")}
    if mode == "before":  # the package as of --before, ahead of the installed one
        env["PYTHONPATH"] = os.pathsep.join(p for p in (before_src, os.environ.get("PYTHONPATH")) if p)
    cmd = [sys.executable, __file__, "--child", url, "--n", str(args.n), "--sample", str(args.sample),
           "--idle", str(args.idle)] + (["--server-pid", str(server_pid)] if server_pid else [])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    try:
        stdout, _ = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode:
        print(f"the {mode} child failed with exit code {proc.returncode} (its error is above)", file=sys.stderr)
        return {"failed": True, "wall_s": time.perf_counter() - t0}
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - t0
    return result


def export_src(ref: str, into: str) -> str:
    """``src/`` of the repository as of ``ref`` (git archive), for the 'before' mode."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "archive", ref, "src"], cwd=root, check=True, stdout=subprocess.PIPE).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return os.path.join(into, "src")


def ms(values: list[float], q: float | None = None) -> float:
    return 1e3 * (statistics.median(values) if q is None else pct(values, q))


def report(n: int, raw: list[float], results: dict[str, dict[str, Any]]) -> None:
    modes = list(results)
    bases = [b for b in ("own", "before") if b in results] if "shared" in results else []
    print(f"\n{n:,} SensorTriggers in one process; raw nats-py publish->pull->ack p50 {ms(raw):.2f} ms "
          f"(same server, same run)")
    cols = " | ".join(f"{m:>12}" for m in modes) + "".join(f" | {'shared/' + b:>13}" for b in bases)
    print(f"{'':44} | {cols}")

    def row(label: str, key: Any, fmt: str) -> None:
        def value(mode: str) -> Any:
            return None if results[mode].get("failed") else key(results[mode])

        vals = [value(m) for m in modes]
        line = f"{label:44} | " + " | ".join(f"{v:>12{fmt}}" if v is not None else f"{'n/a':>12}" for v in vals)
        for b in bases:
            base, shared = value(b), value("shared")
            line += f" | {ratio(shared, base) if base is not None and shared is not None else 'n/a':>13}"
        print(line)

    row("all consuming after (s)", lambda r: r["consuming_s"], ".1f")
    row("all fired once after a burst of N (s)", lambda r: r["burst_s"], ".1f")
    row(f"  not fired {BURST_LIMIT:.0f} s after the burst", lambda r: r.get("burst_missing", 0), "d")
    row("  TriggerEvents repeated", lambda r: r.get("repeated", 0), "d")
    row("memory per trigger, triggerer (KB RSS)", lambda r: r["rss_kb"], ".1f")
    row("memory per trigger, nats-server (KB RSS)", lambda r: r["server_rss_kb"], ".1f")
    row("asyncio tasks per trigger", lambda r: r["tasks_per_trigger"], ".2f")
    row("idle CPU, triggerer (% of a core)", lambda r: 100 * r["idle_cpu"], ".1f")
    row("idle CPU, nats-server (% of a core)",
        lambda r: None if r["server_idle_cpu"] is None else 100 * r["server_idle_cpu"], ".1f")
    row("publish->TriggerEvent, one alone p50 (ms)", lambda r: ms(r["solo"]), ".2f")
    row(f"publish->TriggerEvent, {n:,} live p50 (ms)", lambda r: ms(r["live"]), ".2f")
    row(f"publish->TriggerEvent, {n:,} live p95 (ms)", lambda r: ms(r["live"], 0.95), ".2f")
    row("cancel all N (s)", lambda r: r["cancel_s"], ".1f")
    row("NATS connections (the bench's own included)", lambda r: r["connections"], "d")
    row("bench publishes retried after a 5 s timeout", lambda r: r.get("publish_retries", 0), "d")
    for m in modes:
        r = results[m]
        if r.get("failed"):
            print(f"{m}: FAILED after {r['wall_s']:.0f}s (see its error above)")
            continue
        print(f"{m}: live p50 = {ratio(ms(r['live']), ms(raw))} of raw, {ratio(ms(r['live']), ms(r['solo']))} "
              f"of one trigger alone; idle CPU target < 5% of a core: "
              f"{'met' if r['idle_cpu'] < 0.05 else 'NOT met'}; child ran {r['wall_s']:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--modes", default="own,shared", help="comma-separated: own, shared")
    parser.add_argument("--sample", type=int, default=200, help="triggers timed one at a time with all N live")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement")
    parser.add_argument("--before", metavar="GIT_REF",
                        help="first run the package as of GIT_REF (e.g. main) as mode 'before'")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = asyncio.run(diagnosed(child(args.child, args.n, args.sample, args.idle, args.server_pid,
                                            not args.server_pid)))
        print(json.dumps(result))
        return
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server and the child on kill
    # A triggerer's file descriptors: one socket, but the embedded server's store needs one per stream.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    from airflow_argo_events.core.bus.embedded import EmbeddedNats

    url = os.environ.get("ARGO_EVENTS_NATS_URL")
    server = None if url else EmbeddedNats.start()
    tmp = tempfile.mkdtemp(prefix="triggerer-bench-")
    try:
        url = url or server.url  # type: ignore[union-attr]
        pid = server.process.pid if server and server.process else None
        raw = asyncio.run(raw_round_trip(url))
        modes = (["before"] if args.before else []) + args.modes.split(",")
        before_src = export_src(args.before, tmp) if args.before else None
        results = {m: run_child(m, url, args, pid, before_src) for m in modes}
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    report(args.n, raw, results)


if __name__ == "__main__":
    main()
