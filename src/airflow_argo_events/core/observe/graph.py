"""A picture of a Sensor: EventSources -> dependencies (with filters) -> conditions -> actions.

:func:`sensor_graph` turns a Sensor manifest into a small graph model; :func:`to_mermaid`,
:func:`to_dot` and :func:`to_svg` draw it. Everything here is pure (no I/O, no clock), so
``argo-events sensor graph`` and the Airflow UI page draw the same picture, and the UI page
overlays the live state (which dependency each trigger holds, which it still waits for)
through ``live``.

The SVG is laid out here, in four (five with dead-letter actions) fixed columns, so no
Graphviz or browser is needed to get a picture; ``dot`` output is there for those who have
Graphviz and want its layout.

Text comes from user manifests, so every label is escaped for its format, cut to a
bounded length, and URLs lose their credentials (``core.redact``).

>>> from airflow_argo_events.core.spec.sensor import Sensor
>>> s = Sensor.model_validate({"metadata": {"name": "s"}, "spec": {
...     "dependencies": [{"name": "d", "eventSourceName": "es", "eventName": "e"}],
...     "triggers": [{"template": {"name": "t", "log": {}}}]}})
>>> print(to_mermaid(sensor_graph(s)).splitlines()[0])
flowchart LR
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from airflow_argo_events.core.redact import redact_url
from airflow_argo_events.core.sensor.conditions import Condition, ConditionError, canonical
from airflow_argo_events.core.spec.sensor import (
    EXECUTABLE,
    DataFilter,
    EventDependency,
    EventDependencyFilter,
    Sensor,
    Trigger,
)

NodeKind = Literal["source", "dependency", "condition", "action", "dlq"]
COLUMNS: tuple[NodeKind, ...] = ("source", "dependency", "condition", "action", "dlq")
FORMATS = ("mermaid", "dot", "svg")

MAX_LINE = 56
"""Characters per label line; longer text is cut with an ellipsis."""
MAX_LINES = 8
"""Detail lines per node; the rest are counted in a last ``+N more`` line."""


@dataclass(frozen=True)
class GraphNode:
    """One box: ``title`` in bold, then detail ``lines``; ``state`` colours it (live view)."""

    id: str
    kind: NodeKind
    title: str
    lines: tuple[str, ...] = ()
    state: Literal["", "satisfied", "waiting", "fired"] = ""


@dataclass(frozen=True)
class GraphEdge:
    src: str
    dst: str
    label: str = ""
    dashed: bool = False
    state: Literal["", "satisfied", "waiting"] = ""


@dataclass(frozen=True)
class SensorGraph:
    """The drawable form of a Sensor.

    >>> g = SensorGraph("s", (GraphNode("s0", "source", "es"),), ())
    >>> [n.title for n in g.column("source")]
    ['es']
    """

    name: str
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]
    notes: tuple[str, ...] = field(default=())

    def column(self, kind: NodeKind) -> list[GraphNode]:
        return [n for n in self.nodes if n.kind == kind]

    def node(self, node_id: str) -> GraphNode:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)


# ------------------------------------------------------------------ the model


# Characters XML 1.0 refuses (and that no label needs): C0/C1 controls, surrogates, U+FFFE/FFFF.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _cut(text: str, limit: int = MAX_LINE) -> str:
    text = " ".join(str(text).split())  # newlines and runs of blanks become one space
    text = _UNPRINTABLE.sub("\ufffd", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _wrap(text: str, limit: int = MAX_LINE, max_lines: int = 3) -> list[str]:
    """Words onto lines of at most ``limit`` characters (a longer word is cut)."""
    lines: list[str] = []
    for word in " ".join(text.split()).split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= limit:
            lines[-1] += " " + word
        else:
            lines.append(_cut(word, limit))
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = _cut(lines[-1] + " …", limit) if len(lines[-1]) + 2 <= limit else lines[-1][: limit - 1] + "…"
    return lines


def _bounded(lines: list[str]) -> tuple[str, ...]:
    lines = [_cut(x) for x in lines if x]
    if len(lines) > MAX_LINES:
        lines = lines[: MAX_LINES - 1] + [f"+{len(lines) - MAX_LINES + 1} more"]
    return tuple(lines)


def _data_filter(f: DataFilter) -> str:
    path = f"{f.path} (after template)" if f.template else f.path
    values = " | ".join(f.value)
    if f.type == "string":
        verb = "does not match" if f.comparator == "!=" else "matches"
        return f"{path} {verb} {values}"
    cmp = f.comparator or ("=" if f.type == "number" else "==")
    return f"{path} {cmp} {values}"


def filter_lines(dep: EventDependency) -> list[str]:
    """One short line per filter (and transform) of a dependency, in the order Argo applies them.

    >>> from airflow_argo_events.core.spec.sensor import EventDependency
    >>> filter_lines(EventDependency.model_validate({"name": "d", "eventSourceName": "s", "eventName": "e",
    ...     "filters": {"data": [{"path": "body.n", "type": "number", "comparator": ">=", "value": ["1"]}]}}))
    ['data: body.n >= 1']
    """
    out: list[str] = []
    t = dep.transform
    if t is not None and t.jq:
        out.append(f"transform jq: {t.jq}")
    elif t is not None and t.script:
        out.append("transform: Lua script")
    f: EventDependencyFilter | None = dep.filters
    if f is None:
        return out
    kinds: list[str] = []
    if f.exprs:
        op = f" ({f.expr_logical_operator or 'and'})" if len(f.exprs) > 1 else ""
        kinds.extend(f"expr{op}: {e.expr}" for e in f.exprs)
    if f.data:
        op = f" ({f.data_logical_operator or 'and'})" if len(f.data) > 1 else ""
        kinds.extend(f"data{op}: {_data_filter(d)}" for d in f.data)
    if f.context is not None:
        c = f.context
        pairs = [f"{k}={v}" for k, v in (("type", c.type), ("subject", c.subject), ("source", c.source),
                                         ("datacontenttype", c.datacontenttype)) if v]
        kinds.append("context: " + ", ".join(pairs))
    if f.time is not None:
        kinds.append(f"time: {f.time.start}-{f.time.stop} {f.time.timezone or 'UTC'}")
    if f.script:
        kinds.append("script: Lua filter")
    if len(kinds) > 1 and dep.filters_logical_operator == "or":
        out.append("any of these filters:")
    out.extend(kinds)
    return out


def action_lines(trigger: Trigger) -> list[str]:
    """What a trigger's action does, in a line, then its retry, rate and delivery settings."""
    tpl = trigger.template
    if tpl is None:
        return ["(no template)"]
    kind, body = tpl.kind, tpl.body
    what = kind or "(no action)"
    if kind == "http":
        what = f"http {body.method or 'POST'} {redact_url(body.url)}"
    elif kind in ("k8s", "argoWorkflow"):
        res = (body.source.resource if body.source is not None else None) or {}
        meta = res.get("metadata") or {} if isinstance(res, dict) else {}
        name = meta.get("name") or (f"{meta['generateName']}*" if meta.get("generateName") else "")
        obj = "/".join(x for x in (str(res.get("kind") or ""), str(name)) if x) if isinstance(res, dict) else ""
        op = body.operation or ("submit" if kind == "argoWorkflow" else "create")
        what = " ".join(x for x in (kind, op, obj) if x)
    elif kind == "nats":
        what = f"nats publish {body.subject}"
    elif kind == "kafka":
        what = f"kafka {body.topic}"
    elif kind == "slack":
        what = f"slack {body.channel}" if body.channel else "slack"
    elif kind == "airflow":
        what = f"Airflow DAG run of {body.dag_id}"
    elif kind == "awsLambda":
        what = f"awsLambda {body.invocation_type or 'RequestResponse'} {body.function_name}"
    elif kind and kind not in EXECUTABLE:
        what = f"{kind} (not run by this provider)"
    out = [what]
    r = trigger.retry_strategy
    if r is not None and (r.steps or 0) > 1:
        out.append(f"retry: {r.steps} steps from {r.duration or '1s'}")
    if trigger.rate_limit is not None and trigger.rate_limit.requests_per_unit:
        out.append(f"rate: {trigger.rate_limit.requests_per_unit}/{trigger.rate_limit.unit or 'Second'}")
    if trigger.at_least_once:
        out.append("atLeastOnce")
    return out


def _condition(trigger: Trigger, dep_names: list[str]) -> tuple[str, Condition | None]:
    """The condition's text (Argo's default, every dependency with ``&&``, when none is set)."""
    tpl = trigger.template
    text = " ".join((tpl.conditions if tpl is not None else "").split())
    try:
        if text:
            return text, Condition.parse(text)
        return " && ".join(dep_names), Condition.all_of(dep_names)
    except ConditionError:  # validated manifests never get here; a hand-built one still draws
        return text or "(none)", None


def sensor_graph(sensor: Sensor, live: Mapping[str, Mapping[str, bool]] | None = None,
                 actions: Sequence[str] | None = None) -> SensorGraph:
    """The graph of ``sensor``.

    ``live`` (trigger name -> dependency name -> satisfied) marks each dependency -> condition
    edge satisfied or waiting and adds what each condition still waits for; the Airflow UI
    page passes what ``sensor status`` reads. ``actions`` replaces what every action node
    says it does: inside Airflow a firing is a trigger event (an asset event, a resumed
    task, a DAG run), not the manifest's action.
    """
    nodes: list[GraphNode] = []
    edges: list[GraphEdge] = []
    deps = sensor.spec.dependencies
    sources: dict[str, str] = {}
    for dep in deps:
        if dep.event_source_name not in sources:
            sources[dep.event_source_name] = f"s{len(sources)}"
            nodes.append(GraphNode(sources[dep.event_source_name], "source", _cut(dep.event_source_name),
                                   ("EventSource",)))
    dep_ids: dict[str, str] = {}
    for i, dep in enumerate(deps):
        dep_ids[canonical(dep.name)] = f"d{i}"
        nodes.append(GraphNode(f"d{i}", "dependency", _cut(dep.name), _bounded(filter_lines(dep))))
        edges.append(GraphEdge(sources[dep.event_source_name], f"d{i}", _cut(dep.event_name, 32)))
    names = [d.name for d in deps]
    for i, trig in enumerate(sensor.spec.triggers):
        tpl = trig.template
        tname = tpl.name if tpl is not None else f"trigger {i}"
        text, cond = _condition(trig, names)
        state_of = (live or {}).get(tname)
        # A short expression is the node's title; a long one is wrapped under "condition".
        title, lines = (text, []) if len(text) <= MAX_LINE else ("condition", _wrap(text, max_lines=3))
        if tpl is not None and not tpl.conditions.strip() and len(names) > 1:
            lines.append("(default: every dependency)")
        for reset in (tpl.conditions_reset or []) if tpl is not None else []:
            if reset.by_time is not None and reset.by_time.cron:
                lines.append(f"reset: cron {reset.by_time.cron} {reset.by_time.timezone or 'UTC'}")
        node_state: Literal["", "satisfied", "waiting"] = ""
        env = {canonical(k): bool(v) for k, v in (state_of or {}).items()}
        if state_of is not None and cond is not None:
            if cond.evaluate(env):
                node_state = "satisfied"
            else:
                node_state = "waiting"
                missing = [n for n in cond.names if not env.get(n)]
                lines.append("waiting for: " + ", ".join(missing))
        nodes.append(GraphNode(f"c{i}", "condition", title, _bounded(lines), node_state))
        for n in cond.names if cond is not None else []:
            if n in dep_ids:
                st: Literal["", "satisfied", "waiting"] = ""
                if state_of is not None:
                    st = "satisfied" if env.get(n) else "waiting"
                edges.append(GraphEdge(dep_ids[n], f"c{i}", state=st))
        nodes.append(GraphNode(f"a{i}", "action", _cut(tname),
                               _bounded(list(actions) if actions is not None else action_lines(trig))))
        edges.append(GraphEdge(f"c{i}", f"a{i}"))
        if trig.dlq_trigger is not None:
            dlq = trig.dlq_trigger
            dname = dlq.template.name if dlq.template is not None else "dlqTrigger"
            nodes.append(GraphNode(f"q{i}", "dlq", _cut(dname), _bounded(["dead-letter action", *action_lines(dlq)])))
            edges.append(GraphEdge(f"a{i}", f"q{i}", "on failure", dashed=True))
    return SensorGraph(_cut(sensor.metadata.name), tuple(nodes), tuple(edges))


# ------------------------------------------------------------------ Mermaid

_MERMAID_SHAPES: dict[NodeKind, tuple[str, str]] = {
    "source": ('(["', '"])'), "dependency": ('["', '"]'), "condition": ('{{"', '"}}'),
    "action": ('[["', '"]]'), "dlq": ('>"', '"]'),
}
_STYLE = {
    # kind: (fill, stroke)
    "source": ("#e3f2fd", "#1565c0"), "dependency": ("#f5f5f5", "#616161"), "condition": ("#fff8e1", "#b28704"),
    "action": ("#e8f5e9", "#2e7d32"), "dlq": ("#fce4ec", "#c62828"),
}
_STATE_STROKE = {"satisfied": "#2e7d32", "waiting": "#ef6c00", "fired": "#2e7d32"}
_MERMAID_ESCAPES = {"#": "#35;", '"': "#34;", "<": "#60;", ">": "#62;", "&": "#38;", "`": "#96;"}
# "&" only where the browser would read an entity (``&lt;``): ``a && b`` stays readable.
_MERMAID_RE = re.compile(r'[#"<>`]|&(?=#?\w+;)')


def mermaid_text(text: str) -> str:
    """``text`` safe inside a quoted Mermaid label: entity codes for what Mermaid or HTML would read.

    >>> mermaid_text('a "b" <c> #1; && &lt;')
    'a #34;b#34; #60;c#62; #35;1; && #38;lt;'
    """
    return _MERMAID_RE.sub(lambda m: _MERMAID_ESCAPES[m.group(0)], text)


def _mermaid_label(node: GraphNode) -> str:
    return "<br/>".join([f"<b>{mermaid_text(node.title)}</b>", *(mermaid_text(x) for x in node.lines)])


def to_mermaid(graph: SensorGraph) -> str:
    """A Mermaid ``flowchart LR`` (GitHub, GitLab and mkdocs-material render it)."""
    out = ["flowchart LR", f"  %% Sensor {mermaid_text(graph.name)}, drawn by argo-events sensor graph"]
    for n in graph.nodes:
        left, right = _MERMAID_SHAPES[n.kind]
        out.append(f"  {n.id}{left}{_mermaid_label(n)}{right}")
    link_styles: list[str] = []
    for i, e in enumerate(graph.edges):
        arrow = "-.->" if e.dashed or e.state == "waiting" else ("==>" if e.state == "satisfied" else "-->")
        label = f'|"{mermaid_text(e.label)}"|' if e.label else ""
        out.append(f"  {e.src} {arrow}{label} {e.dst}")
        if e.state:
            link_styles.append(f"  linkStyle {i} stroke:{_STATE_STROKE[e.state]}")
    out.extend(link_styles)
    for kind in COLUMNS:
        ids = [n.id for n in graph.column(kind)]
        if ids:
            fill, stroke = _STYLE[kind]
            out.append(f"  classDef {kind} fill:{fill},stroke:{stroke},color:#212121")
            out.append(f"  class {','.join(ids)} {kind}")
    for state in ("satisfied", "waiting"):
        ids = [n.id for n in graph.nodes if n.state == state]
        if ids:
            out.append(f"  classDef {state} stroke:{_STATE_STROKE[state]},stroke-width:3px")
            out.append(f"  class {','.join(ids)} {state}")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ Graphviz

_DOT_SHAPES: dict[NodeKind, str] = {
    "source": 'shape=box, style="rounded,filled"', "dependency": 'shape=box, style="filled"',
    "condition": 'shape=hexagon, style="filled"', "action": 'shape=box, style="filled,bold"',
    "dlq": 'shape=box, style="filled,dashed"',
}


def _dot_label(node: GraphNode) -> str:
    rows = [f"<B>{html.escape(node.title)}</B>", *(html.escape(x) for x in node.lines)]
    return "<" + '<BR ALIGN="LEFT"/>'.join(rows) + '<BR ALIGN="LEFT"/>>'


def to_dot(graph: SensorGraph) -> str:
    """Graphviz DOT, one rank per column (``dot -Tsvg`` or ``-Tpng`` draws it)."""
    out = ["digraph sensor {", "  rankdir=LR;",
           f"  graph [label={_dot_string('Sensor ' + graph.name)}, labelloc=t, fontname=\"Helvetica\"];",
           '  node [fontname="Helvetica", fontsize=11];', '  edge [fontname="Helvetica", fontsize=10];']
    for n in graph.nodes:
        fill, stroke = _STYLE[n.kind]
        if n.state:
            stroke = _STATE_STROKE[n.state]
        out.append(f'  {n.id} [{_DOT_SHAPES[n.kind]}, fillcolor="{fill}", color="{stroke}", label={_dot_label(n)}];')
    for e in graph.edges:
        attrs = []
        if e.label:
            attrs.append(f"label={_dot_string(e.label)}")
        if e.dashed or e.state == "waiting":
            attrs.append("style=dashed")
        if e.state:
            attrs.append(f'color="{_STATE_STROKE[e.state]}"')
        out.append(f"  {e.src} -> {e.dst}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    for kind in COLUMNS:
        ids = [n.id for n in graph.column(kind)]
        if len(ids) > 1:
            out.append("  { rank=same; " + "; ".join(ids) + "; }")
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_string(text: str) -> str:
    # Escape the backslash too: DOT reads \n, \l, \N and \G inside strings.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ------------------------------------------------------------------ SVG (laid out here)

_CHAR_W = 7.3
"""Width of a character of 12px monospace (DejaVu Sans Mono and most others: 0.6 em)."""
_LINE_H = 16
_PAD_X, _PAD_Y = 10, 8
_COL_GAP, _ROW_GAP, _TOP = 64, 18, 56
_HEADERS = {"source": "EventSources", "dependency": "Dependencies, filters", "condition": "Conditions",
            "action": "Actions", "dlq": "On failure"}


@dataclass(frozen=True)
class _Box:
    x: float
    y: float
    w: float
    h: float


def _layout(graph: SensorGraph) -> tuple[dict[str, _Box], dict[NodeKind, float], float, float]:
    sizes = {n.id: (max(len(x) for x in (n.title, *n.lines)) * _CHAR_W + 2 * _PAD_X + (24 if n.kind == "condition"
                                                                                        else 0),
                    (1 + len(n.lines)) * _LINE_H + 2 * _PAD_Y) for n in graph.nodes}
    columns = [k for k in COLUMNS if graph.column(k)]
    col_w = {k: max(len(_HEADERS[k]) * _CHAR_W + 8, *(sizes[n.id][0] for n in graph.column(k))) for k in columns}
    # The gap after a column leaves room for the labels of the edges leaving it (event names).
    gap = {k: max([_COL_GAP] + [len(e.label) * _CHAR_W * 0.9 + 40 for e in graph.edges
                                if e.label and graph.node(e.src).kind == k]) for k in columns}
    col_h = {k: sum(sizes[n.id][1] for n in graph.column(k)) + _ROW_GAP * (len(graph.column(k)) - 1) for k in columns}
    height = max(col_h.values(), default=0.0)
    boxes: dict[str, _Box] = {}
    col_x: dict[NodeKind, float] = {}
    x = 20.0
    for k in columns:
        col_x[k] = x
        y = _TOP + (height - col_h[k]) / 2  # centre each column on the tallest
        for n in graph.column(k):
            w, h = sizes[n.id]
            boxes[n.id] = _Box(x + (col_w[k] - w) / 2, y, w, h)
            y += h + _ROW_GAP
        x += col_w[k] + gap[k]
    return boxes, col_x, x - gap[columns[-1]] + 20 if columns else 40.0, _TOP + height + 20


def _f(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _shape(n: GraphNode, b: _Box, fill: str, stroke: str, width: float) -> str:
    common = f'fill="{fill}" stroke="{stroke}" stroke-width="{_f(width)}"'
    if n.kind == "condition":
        d = 12
        pts = [(b.x, b.y + b.h / 2), (b.x + d, b.y), (b.x + b.w - d, b.y), (b.x + b.w, b.y + b.h / 2),
               (b.x + b.w - d, b.y + b.h), (b.x + d, b.y + b.h)]
        return f'<polygon points="{" ".join(f"{_f(px)},{_f(py)}" for px, py in pts)}" {common}/>'
    rx = {"source": 14, "dependency": 3, "action": 3, "dlq": 3}[n.kind]
    dash = ' stroke-dasharray="5 3"' if n.kind == "dlq" else ""
    return f'<rect x="{_f(b.x)}" y="{_f(b.y)}" width="{_f(b.w)}" height="{_f(b.h)}" rx="{rx}" {common}{dash}/>'


def to_svg(graph: SensorGraph) -> str:
    """A standalone SVG drawing, laid out in columns without Graphviz or a browser."""
    boxes, col_x, width, height = _layout(graph)
    esc = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_f(width)}" height="{_f(height)}" '
           f'viewBox="0 0 {_f(width)} {_f(height)}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" '
           'font-size="12" role="img">',
           f"<title>Sensor {esc(graph.name)}</title>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#616161"/></marker></defs>',
           f'<rect width="{_f(width)}" height="{_f(height)}" fill="#ffffff"/>',
           f'<text x="20" y="22" font-weight="bold" font-size="14">Sensor {esc(graph.name)}</text>']
    for kind, x in col_x.items():
        out.append(f'<text x="{_f(x)}" y="44" fill="#757575">{esc(_HEADERS[kind])}</text>')
    labels: list[str] = []
    for e in graph.edges:
        a, b = boxes[e.src], boxes[e.dst]
        x1, y1, x2, y2 = a.x + a.w, a.y + a.h / 2, b.x, b.y + b.h / 2
        dx = max(24.0, (x2 - x1) / 2)
        color = _STATE_STROKE.get(e.state, "#616161")
        width_ = 2.5 if e.state == "satisfied" else 1.3
        dash = ' stroke-dasharray="5 4"' if e.dashed or e.state == "waiting" else ""
        out.append(f'<path d="M{_f(x1)},{_f(y1)} C{_f(x1 + dx)},{_f(y1)} {_f(x2 - dx)},{_f(y2)} {_f(x2)},{_f(y2)}" '
                   f'fill="none" stroke="{color}" stroke-width="{_f(width_)}"{dash} marker-end="url(#arrow)"/>')
        if e.label:
            mx, my = (x1 + x2) / 2, (y1 + y2) / 2
            w = len(e.label) * _CHAR_W * 0.9 + 8
            labels.append(f'<rect x="{_f(mx - w / 2)}" y="{_f(my - 9)}" width="{_f(w)}" height="15" rx="3" '
                          f'fill="#ffffff" opacity="0.9"/><text x="{_f(mx)}" y="{_f(my + 3)}" text-anchor="middle" '
                          f'font-size="11" fill="#424242">{esc(e.label)}</text>')
    for n in graph.nodes:
        b = boxes[n.id]
        fill, stroke = _STYLE[n.kind]
        out.append(f'<g class="node {n.kind}{" " + n.state if n.state else ""}">'
                   + _shape(n, b, fill, _STATE_STROKE.get(n.state, stroke), 3 if n.state else 1.3))
        inset = 12 if n.kind == "condition" else 0
        ty = b.y + _PAD_Y + 12
        out.append(f'<text x="{_f(b.x + _PAD_X + inset)}" y="{_f(ty)}" font-weight="bold">{esc(n.title)}</text>')
        for line in n.lines:
            ty += _LINE_H
            out.append(f'<text x="{_f(b.x + _PAD_X + inset)}" y="{_f(ty)}" fill="#424242">{esc(line)}</text>')
        out.append("</g>")
    out.extend(labels)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render(sensor: Sensor, fmt: str = "mermaid", live: Mapping[str, Mapping[str, bool]] | None = None,
           actions: Sequence[str] | None = None) -> str:
    """``sensor`` drawn as ``mermaid``, ``dot`` or ``svg`` (``live`` and ``actions``: see :func:`sensor_graph`)."""
    graph = sensor_graph(sensor, live, actions)
    if fmt == "mermaid":
        return to_mermaid(graph)
    if fmt == "dot":
        return to_dot(graph)
    if fmt == "svg":
        return to_svg(graph)
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
