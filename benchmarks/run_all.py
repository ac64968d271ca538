"""Every benchmark of this folder, one after the other (``make bench``); Prefect's stays apart.

    python benchmarks/run_all.py [--full] [--only engine,webhook] [--list]

Quick sizes by default (the whole run takes 3-5 minutes on a 2-core machine); ``--full``
gives each benchmark its own default sizes (tens of minutes: the soak alone publishes a
million events). Each benchmark prints its ratios against a baseline of the same run;
this runner adds a header per benchmark and the time each took. A benchmark that fails
is reported and the others still run; the exit status says whether any failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent

# name: (what it measures, quick arguments, full arguments)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "engine": ("sensor engine events/s on one core, against hand-written checks", ["--n", "20000"], []),
    "bus": ("EventBus publish/consume/round trip against raw nats-py", ["--n", "2000", "--rtt", "200"], []),
    "sensor_live": ("live sensor publish->firing latency and firings/s against raw nats-py",
                    ["--n", "2000", "--rtt", "200"], []),
    "instructions": ("live sensor vs raw nats-py in CPU instructions per message (callgrind: no noise)",
                     ["--small", "300", "--large", "1300"], []),
    "webhook": ("webhook EventSource requests/s (200 after the JetStream ack) against a bare aiohttp handler",
                ["--seconds", "1.5", "--rounds", "1"], []),
    "cluster": ("3-node cluster: live sensor on R1 vs R3, firing pause when the R3 leader is SIGKILLed",
                ["--n", "1000", "--rtt", "100", "--kill-n", "1200", "--rate", "400"], []),
    "triggerer": ("many SensorTriggers in one process: memory, idle CPU, latency", ["--n", "200"], []),
    "correlation": ("correlation keys: engine and live, against a plain Argo sensor",
                    ["--orders", "10000", "--live-orders", "1000", "--drain-wait", "5"], []),
    # quick: without sqs (moto answers a few requests a second and logs each) and redisStream
    # (its runtime takes 60 s to stop after the run, see docs/benchmarks.md); --full runs them
    "sources": ("queue sources to the bus against each raw client", ["--n", "200", "--only", "kafka,amqp,nats"], []),
    "soak": ("a long run through a slow action: memory and KV stay flat",
             ["--quick", "--action-ms", "2", "--every", "5"], []),
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true", help="each benchmark's own default sizes")
    parser.add_argument("--only", default="", help="comma-separated names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args()
    if args.list:
        for name, (what, quick, _) in BENCHMARKS.items():
            print(f"{name:12} {what}\n{'':12} quick: python benchmarks/{name}.py {' '.join(quick)}")
        return 0
    names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    failed, t_all = [], time.monotonic()
    for name in names:
        what, quick, full = BENCHMARKS[name]
        argv = [sys.executable, str(HERE / f"{name}.py"), *(full if args.full else quick)]
        print(f"\n=== {name}: {what}\n$ python benchmarks/{name}.py {' '.join(argv[2:])}", flush=True)
        t0 = time.monotonic()
        # Airflow's own INFO lines (the triggerer benchmark runs real SensorTriggers) would bury the figures
        code = subprocess.call(argv, env={"AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING", **os.environ})
        print(f"--- {name}: {time.monotonic() - t0:.0f} s{'' if code == 0 else f', exit status {code}'}", flush=True)
        if code:
            failed.append(name)
    print(f"\nall benchmarks: {time.monotonic() - t_all:.0f} s" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
