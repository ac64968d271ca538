"""What the long-running commands share: logging, loading one manifest, running until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from airflow_argo_events.core.exceptions import ArgoEventsError, SpecError
from airflow_argo_events.core.spec.loader import load_one

EXIT_INVALID = 2


def live_logging() -> None:
    """INFO lines from this package on stderr (one per event or firing)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr,
                        force=True)
    logging.getLogger("airflow_argo_events").setLevel(logging.INFO)


def load_or_report(path: str, kind: str) -> Any | None:
    """The manifest, or None after printing ``file: path: message`` lines."""
    try:
        return load_one(path, kind)
    except SpecError as err:
        for line in err.lines():
            print(line, file=sys.stderr)
        return None


def run_async(main: Callable[[], Awaitable[int | None]]) -> int:
    """Run ``main()``; its int is the exit status. Our errors become one line and exit 1."""
    try:
        return asyncio.run(main()) or 0  # type: ignore[arg-type]
    except ArgoEventsError as err:
        print(str(err), file=sys.stderr)
        return 1


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run ``main(stop)``; SIGINT/SIGTERM set ``stop``."""

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    return run_async(go)
