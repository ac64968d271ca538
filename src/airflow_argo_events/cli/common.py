"""What the long-running commands share: logging, loading one manifest, running until a signal."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_argo_events.core.exceptions import ArgoEventsError, SpecError

if TYPE_CHECKING:
    from airflow_argo_events.core.observe.metrics import Metrics

# cli/main.py imports this module for every command: the manifest models and the metrics
# are imported by the functions that use them, so `argo-events --help` stays light.

EXIT_INVALID = 2


TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"
"""The one log format of every command (messages name their sensor/eventsource/NATS themselves)."""
LOG_FORMATS = ("text", "json")
_settings = {"format": os.environ.get("ARGO_EVENTS_LOG_FORMAT", "text"), "verbose": False}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339, UTC), level, logger, message (and the traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
               .replace("+00:00", "Z"), "level": record.levelname, "logger": record.name,
               "message": record.getMessage()}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure_logging(level: int, fmt: str | None = None) -> None:
    """Log to stderr in the chosen format (``text`` or ``json``); every command goes through here."""
    fmt = fmt or _settings["format"]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def set_log_options(fmt: str, verbose: bool) -> None:
    """What ``argo-events --log-format/-v`` chose, for the commands that log live."""
    _settings["format"] = fmt
    _settings["verbose"] = verbose
    configure_logging(logging.DEBUG if verbose else logging.WARNING, fmt)


def live_logging() -> None:
    """INFO lines from this package on stderr (one decision per event, one line per firing);
    DEBUG with ``-v``."""
    configure_logging(logging.INFO)
    logging.getLogger("airflow_argo_events").setLevel(logging.DEBUG if _settings["verbose"] else logging.INFO)


def add_metrics_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics-port", type=int, metavar="N",
                   help="serve Prometheus metrics with Argo Events' names on http://0.0.0.0:N/metrics "
                        "(Argo uses 7777); 0 picks a free port")


def start_metrics(port: int | None, manifest: Any) -> Metrics:
    """Argo's metrics served on ``port``, labelled with the manifest's namespace (``default``
    when it has none, as Kubernetes); nothing at all without ``--metrics-port``."""
    from airflow_argo_events.core.observe.metrics import NO_METRICS, PrometheusMetrics

    if port is None:
        return NO_METRICS
    metrics = PrometheusMetrics(namespace=manifest.metadata.namespace or "default")
    bound = metrics.serve(port)
    logging.getLogger("airflow_argo_events").info("%s %s: metrics on http://0.0.0.0:%d/metrics",
                                                  manifest.kind.lower(), manifest.metadata.name, bound)
    return metrics


def load_or_report(path: str, kind: str) -> Any | None:
    """The manifest, or None after printing ``file: path: message`` lines."""
    from airflow_argo_events.core.spec.loader import load_one

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
