"""``argo-events receive --port N``: a local HTTP endpoint for http actions, one JSON line per request.

The live examples in the docs point their http actions at it, so they run on a laptop
without outside services. Every request is answered 200 ``{"ok": true}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from airflow_argo_events.cli.common import run_until_signal
from airflow_argo_events.core.limits import loads_strict
from airflow_argo_events.core.redact import redact_headers

# Headers printed without --headers: the ones an action sets on purpose.
SHOWN = ("Idempotency-Key",)


def configure(p: argparse.ArgumentParser) -> None:
    """``receive`` (its name and one-line help are in cli/main.py)."""
    p.description = ('Answers every request with 200 {"ok": true} and prints {"method", "path", "query", '
                     '"idempotency_key", "body"} per request on stdout (the body parsed when it is JSON). '
                     "Runs until Ctrl-C/SIGTERM, or until --count requests arrived.")
    p.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on, default 127.0.0.1")
    p.add_argument("--count", type=int, default=0, help="exit with status 0 after N requests (0: until a signal)")
    p.add_argument("--headers", action="store_true", help="print every header (secrets redacted)")
    p.add_argument("--ready-file", metavar="PATH", help="create PATH once listening (removed on exit)")
    p.set_defaults(func=run)


def describe(request: web.Request, body: bytes, all_headers: bool) -> dict[str, Any]:
    """One request as a JSON-ready dict."""
    try:
        parsed: Any = loads_strict(body) if body else None
    except ValueError:
        parsed = body.decode("utf-8", "replace")
    line: dict[str, Any] = {"method": request.method, "path": request.path}
    if request.query_string:
        line["query"] = {k: request.query.getall(k) for k in request.query}
    if all_headers:
        line["headers"] = redact_headers(dict(request.headers))
    else:
        for name in SHOWN:
            if name in request.headers:
                line[name.lower().replace("-", "_")] = request.headers[name]
    line["body"] = parsed
    return line


def run(args: argparse.Namespace) -> int:
    async def main(stop: asyncio.Event) -> None:
        seen = 0

        async def handle(request: web.Request) -> web.Response:
            nonlocal seen
            body = await request.read()
            print(json.dumps(describe(request, body, args.headers), default=str), flush=True)
            seen += 1
            if args.count and seen >= args.count:
                asyncio.get_running_loop().call_later(0.1, stop.set)  # let this answer go out first
            return web.json_response({"ok": True})

        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, args.host, args.port).start()
        except OSError as err:
            await runner.cleanup()
            print(f"receive: cannot listen on {args.host}:{args.port}: {err.strerror or err}", file=sys.stderr)
            raise SystemExit(1) from None
        print(f"[argo-events] receiving on http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
        ready = Path(args.ready_file) if args.ready_file else None
        if ready:
            ready.write_text(f"http://{args.host}:{args.port}/\n")
        try:
            await stop.wait()
        finally:
            if ready:
                ready.unlink(missing_ok=True)
            await runner.cleanup()

    return run_until_signal(main)
