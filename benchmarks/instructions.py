"""Live sensor vs raw nats-py, counted in CPU instructions per message (valgrind's callgrind).

    python benchmarks/instructions.py [--small 1000] [--large 4000]

Timed rates on a shared 2-core machine swing by 10-30% between runs; instructions do not
(the same count twice, whatever else the machine does). Each side reads a backlog of
events from the stream and is run under callgrind twice, for ``--small`` and ``--large``
events; the difference over ``large - small`` is the cost of one message without the
process's start-up. The events are published beforehand by a process that is not counted.

Raw: nats-py ``fetch(64)`` + ``ack()``. Ours: SensorRuntime with a one-dependency sensor
(data filter, every event fires), as ``sensor_live.py``. The two sides of each pair run at
once (one per core); valgrind slows each about 50x, so this takes 2-4 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import nats  # noqa: E402
from _common import bench_nats, ratio  # noqa: E402
from sensor_live import DATA, sensor  # noqa: E402  (the same events and sensor as the timed benchmark)

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings  # noqa: E402
from airflow_argo_events.core.events import new_event  # noqa: E402
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime  # noqa: E402


async def publish(url: str, stream: str, n: int) -> None:
    async with EventBus(NatsSettings.from_url(url), StreamSettings(name=stream, replicas=1)) as bus:
        for _ in range(n):
            await bus.publish(new_event(source="shop", subject="order", type="webhook", data=DATA))


async def read_raw(url: str, stream: str, n: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        psub = await js.pull_subscribe(f"{stream}.shop.order", durable="d", stream=stream)
        got = 0
        while got < n:
            for m in await psub.fetch(64, timeout=5):
                await m.ack()
                got += 1
    finally:
        await js.delete_stream(stream)
        await nc.close()


async def read_ours(url: str, stream: str, n: int) -> None:
    settings = StreamSettings(name=stream, replicas=1)
    async with EventBus(NatsSettings.from_url(url), settings) as bus:
        done = asyncio.Event()
        seen = {"n": 0}

        async def count(_firing: object) -> None:
            seen["n"] += 1
            if seen["n"] == n:
                done.set()

        rt = SensorRuntime(sensor("ins" + stream), bus, count, deliver="all")
        await rt.start()
        stop = asyncio.Event()
        task = asyncio.create_task(rt.run(stop))
        try:
            await asyncio.wait_for(done.wait(), 900)
        finally:
            stop.set()
            await task
            await rt.close()
            await bus.js.delete_stream(stream)
            await bus.js.delete_key_value(rt.bucket)


def counted(url: str, side: str, n: int, workdir: str) -> int:
    """Instructions callgrind counts for one process reading ``n`` events (published first)."""
    stream = f"ins{side}{uuid.uuid4().hex[:8]}"
    asyncio.run(publish(url, stream, n))
    out = Path(workdir) / f"{stream}.out"
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
         "--read", side, "--url", url, "--stream", stream, "--n", str(n)],
        capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode or not found:
        raise SystemExit(f"{side} reading {n} events under valgrind failed:\n{proc.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=4000)
    parser.add_argument("--read", choices=["raw", "ours"], help=argparse.SUPPRESS)  # the counted process
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--stream", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read:
        asyncio.run((read_raw if args.read == "raw" else read_ours)(args.url, args.stream, args.n))
        return
    if shutil.which("valgrind") is None:  # not a failure of ours: say so and skip
        print("instructions: skipped, valgrind is not installed (Debian: apt-get install valgrind)")
        return
    with bench_nats() as url, tempfile.TemporaryDirectory() as work, ThreadPoolExecutor(2) as pool:
        print(f"NATS {url}; callgrind, {args.small} and {args.large} events per side")
        per: dict[str, float] = {}
        for side in ("raw", "ours"):
            small, large = pool.map(lambda n, s=side: counted(url, s, n, work), (args.small, args.large))
            per[side] = (large - small) / (args.large - args.small)
            print(f"{side:5} {per[side]:,.0f} instructions per message", flush=True)
        print(f"ours/raw: {per['ours'] / per['raw']:.2f}x the instructions; "
              f"as a rate ratio (CPU-bound): {ratio(per['raw'], per['ours'])} (target >= 0.75x)")


if __name__ == "__main__":
    main()
