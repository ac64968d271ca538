"""The HTML of the "Argo Events" page: one card per sensor, from the views ``sensors.sensor_view`` builds.

Pure string building (no Airflow import), every value escaped. Links are relative to the
page (``/argo-events/``) so they work behind a proxy with a base path, and open in the
Airflow UI around the iframe (``target="_top"``).
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

from airflow_argo_events.core.observe.status import format_age

REFRESH_SECONDS = 5
RUN_ID_PREFIX = "argo-events__"
"""The run id prefix of the DAG runs a SensorTrigger with ``dag_id`` creates."""

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px;color:#1f2933;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:17px;margin:0} .muted{color:#616e7c}
.card{border:1px solid #d3d8de;border-radius:8px;padding:14px 16px;margin:14px 0}
.head{display:flex;gap:10px;align-items:baseline;flex-wrap:wrap}
.badge{font-size:12px;padding:1px 8px;border-radius:10px;background:#e4e7eb}
.ok{background:#d7f5dd;color:#155724} .bad{background:#fde2e1;color:#8a1c1c} .warn{background:#fff1c2;color:#6b4e00}
table{border-collapse:collapse;margin:8px 0;font-size:13px;width:100%}
th,td{border-bottom:1px solid #e4e7eb;padding:4px 8px;text-align:left;vertical-align:top}
th{color:#52606d;font-weight:600} code{font-size:12px} .graph{overflow-x:auto;margin:6px 0}
.error{color:#8a1c1c} details summary{cursor:pointer;color:#52606d;font-size:13px}
"""

_SCRIPT = """
const REFRESH = REFRESH_SECONDS * 1000;
async function refresh() {
  try {
    const url = new URL(window.location.href);
    url.searchParams.set("partial", "1");
    const r = await fetch(url, {credentials: "same-origin"});
    if (r.ok) { document.getElementById("sensors").innerHTML = await r.text(); }
  } catch (e) { /* the next refresh tries again */ }
  setTimeout(refresh, REFRESH);
}
setTimeout(refresh, REFRESH);
""".replace("REFRESH_SECONDS", str(REFRESH_SECONDS))


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def dag_link(dag_id: str) -> str:
    return f'<a target="_top" href="../dags/{quote(dag_id, safe="")}">{esc(dag_id)}</a>'


def run_link(dag_id: str, run_id: str, text: str | None = None) -> str:
    href = f"../dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
    return f'<a class="run" target="_top" href="{href}">{esc(text or run_id)}</a>'


def _owner(v: dict[str, Any]) -> str:
    parts = []
    for a in v.get("assets") or []:
        parts.append(f'asset <a target="_top" href="../assets/{quote(str(a["id"]), safe="")}">{esc(a["uri"])}</a>')
    if v.get("task"):
        t = v["task"]
        parts.append(f'task {dag_link(t["dag_id"])}.{esc(t["task_id"])} in {run_link(t["dag_id"], t["run_id"])}')
    if v.get("target_dag"):
        parts.append(f"starts runs of {dag_link(v['target_dag'])}")
    consumers = [d for d in v.get("dags") or [] if d != v.get("target_dag") and not (v.get("task") and
                                                                                   d == v["task"]["dag_id"])]
    if consumers:
        parts.append("scheduled: " + ", ".join(dag_link(d) for d in consumers))
    if v.get("hidden_dags"):
        parts.append(f'<span class="muted">and {int(v["hidden_dags"])} DAG(s) you may not read</span>')
    return " · ".join(parts)


def _dep_cell(d: dict[str, Any], stateful: bool = True) -> str:
    if not stateful:  # no && in the condition: nothing is saved, each accepted event fires at once
        return f'<span class="badge">{esc(d["name"])}</span>'
    if d.get("satisfied"):
        return (f'<span class="badge ok">✓ {esc(d["name"])}</span> <code>{esc(d.get("event_id"))}</code> '
                f'<span class="muted">{esc(format_age(d.get("age_seconds")))}</span>')
    return f'<span class="badge">… {esc(d["name"])}</span>'


def _firing(t: dict[str, Any], v: dict[str, Any]) -> str:
    f = t.get("last_firing")
    if not f:
        return '<span class="muted">none yet</span>'
    badge = '<span class="badge ok">ok</span>' if f.get("ok") else '<span class="badge bad">failed</span>'
    what = esc(f.get("detail"))
    target = v.get("target_dag")
    # With dag_id, the firing's DAG run id is derived from the firing id (triggers/sensor.py).
    ref = f.get("ref") or (RUN_ID_PREFIX + str(f["id"]) if target and f.get("ok") and f.get("id") else "")
    if ref and target:
        what = run_link(target, ref) + (f" · {what}" if what else "")
    elif ref:
        what = esc(ref) + (f" · {what}" if what else "")
    status = f' HTTP {esc(f["status"])}' if f.get("status") else ""
    return (f'{badge} <code class="firing">{esc(f.get("id"))}</code> {esc(f.get("at"))}{status}'
            f'{" · " + what if what else ""}')


def _pending(t: dict[str, Any]) -> str:
    rows = t.get("pending") or []
    if not rows:
        return '<span class="muted">none</span>'
    out = []
    for p in rows[:10]:
        state = "running" if p.get("running") else "waiting"
        err = f' <span class="error">{esc(p.get("last_error"))}</span>' if p.get("last_error") else ""
        out.append(f'<code>{esc(p.get("id"))}</code> {state}, {int(p.get("attempts") or 0)} attempt(s){err}')
    if len(rows) > 10:
        out.append(f"… and {len(rows) - 10} more")
    return "<br>".join(out)


def sensor_card(v: dict[str, Any]) -> str:
    st = v.get("status") or {}
    running = st.get("running")
    badge = ('<span class="badge ok">reading</span>' if running else
             '<span class="badge warn">not reading</span>') if st else '<span class="badge bad">status unavailable</span>'
    lag = f'<span class="badge">lag {int(v.get("lag") or 0)}</span>' if st else ""
    out = [f'<section class="card sensor" data-sensor="{esc(v.get("sensor"))}">',
           f'<div class="head"><h2>{esc(v.get("sensor"))}</h2>{badge}{lag}'
           f'<span class="muted">{esc(v.get("kind"))}</span></div>',
           f'<div class="muted">{_owner(v)}</div>']
    if v.get("error"):
        out.append(f'<p class="error">{esc(v["error"])}</p>')
    if st:
        out.append(f'<div class="muted">state <code>{esc(st.get("state"))}</code> on stream '
                   f'<code>{esc(st.get("stream"))}</code>, started {esc(st.get("started") or "-")}</div>')
    if v.get("graph_svg"):
        out.append(f'<div class="graph">{v["graph_svg"]}</div>')
    if st:
        out.append("<table><tr><th>trigger</th><th>condition</th><th>dependencies</th><th>waits for</th>"
                   "<th>last firing</th><th>pending firings</th></tr>")
        for t in st.get("triggers") or []:
            deps = " ".join(_dep_cell(d, t.get("stateful", True)) for d in t.get("dependencies") or [])
            out.append(f'<tr class="trigger"><td>{esc(t["name"])}</td><td><code>{esc(t.get("condition"))}</code></td>'
                       f'<td>{deps}</td><td>{esc(t.get("waiting_for"))}</td><td>{_firing(t, v)}</td>'
                       f"<td>{_pending(t)}</td></tr>")
        out.append("</table>")
        out.append("<table><tr><th>dependency</th><th>event</th><th>lag</th><th>last event seen</th></tr>")
        for d in st.get("dependencies") or []:
            c = d.get("consumer") or {}
            lag_txt = (f'{int(c.get("pending") or 0)} not delivered, {int(c.get("ack_pending") or 0)} unacked'
                       if c and not c.get("error") else esc(c.get("error") or "-"))
            e = d.get("last_event")
            seen = (f'<code>{esc(e.get("id"))}</code> {esc(e.get("verdict"))} '
                    f'<span class="muted">{esc(format_age(e.get("age_seconds")))}</span>') if e else \
                '<span class="muted">none yet</span>'
            out.append(f"<tr><td>{esc(d['name'])}</td><td>{esc(d.get('event_source'))} / "
                       f"{esc(d.get('event_name'))}</td><td>{lag_txt}</td><td>{seen}</td></tr>")
        out.append("</table>")
        counters = st.get("counters") or {}
        if counters:
            out.append('<div class="muted">' + ", ".join(f"{esc(k)} {int(n)}" for k, n in sorted(counters.items()))
                       + "</div>")
        for w in st.get("warnings") or []:
            out.append(f'<p class="muted">note: {esc(w)}</p>')
    runs = v.get("runs") or []
    if runs:
        out.append("<table><tr><th>DAG runs started by firings</th><th>state</th><th>queued</th></tr>")
        for r in runs:
            out.append(f'<tr><td>{run_link(r["dag_id"], r["run_id"])}</td><td>{esc(r.get("state"))}</td>'
                       f'<td>{esc(r.get("queued_at"))}</td></tr>')
        out.append("</table>")
    if v.get("mermaid"):
        out.append(f'<details><summary>Mermaid source of the graph</summary><pre>{esc(v["mermaid"])}</pre></details>')
    out.append("</section>")
    return "\n".join(out)


def sensors_fragment(views: list[dict[str, Any]], dag_id: str | None = None, total: int | None = None) -> str:
    if not views:
        where = f" for DAG {esc(dag_id)}" if dag_id else ""
        return (f'<p class="muted empty">No Argo Events sensor{where} is running in the triggerer, or none '
                "belongs to a DAG you may read.</p>")
    more = ""
    if total is not None and total > len(views):
        more = (f'<p class="muted">Showing {len(views)} of {int(total)} sensors: open a DAG\'s "Argo Events" tab '
                "to see its own.</p>")
    return more + "\n".join(sensor_card(v) for v in views)


def page(views: list[dict[str, Any]], dag_id: str | None = None, total: int | None = None) -> str:
    title = "Argo Events sensors" + (f" of {dag_id}" if dag_id else "")
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1><div class=\"muted\">Every SensorTrigger the triggerer runs (AssetWatchers and "
        f"deferred EventSensor tasks), read live from NATS; refreshed every {REFRESH_SECONDS}s. The same data as "
        "<code>argo-events sensor status</code>.</div>"
        f'<div id="sensors">{sensors_fragment(views, dag_id, total)}</div>'
        f"<script>{_SCRIPT}</script></body></html>"
    )
