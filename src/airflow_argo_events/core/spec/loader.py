"""Load Argo manifests (several YAML documents per file) into typed models.

Manifests are read as untrusted input, within limits that no real manifest reaches
(docs/reference/limits.md): size, nesting depth, and the expansion of YAML aliases (a
"billion laughs" file is a few hundred bytes that expand to 10^9 nodes). Each breach is
one SpecError line naming the file.

>>> [m.kind for m in load_text("kind: EventBus\\nmetadata: {name: default}\\nspec: {jetstream: {}}")]
['EventBus']
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.spec.base import check_fields, spec_error

log = logging.getLogger("airflow_argo_events.spec")

API_VERSION = "argoproj.io/v1alpha1"

MAX_MANIFEST_BYTES = 1_572_864
"""1.5 MiB, Kubernetes' limit for one object (etcd's request size); a file may hold several
documents but no more bytes than that. Bigger files are refused before parsing."""

MAX_MANIFEST_DEPTH = 128
"""Nesting of YAML mappings/sequences (as ``MAX_JSON_DEPTH`` for events). Deeper would reach
Python's recursion limit in the parser; real manifests, embedded workflows included, stay under 30."""

MAX_MANIFEST_NODES = 200_000
"""YAML nodes per file with every alias expanded (a node is a scalar, list or mapping). Real
manifests have hundreds to a few thousand; a billion-laughs file has 10^9 and is refused
while it is parsed; 200,000 still load in about two seconds."""

class _PureParser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


try:  # libyaml parses (fast); the composer stays in Python so that it can count
    from yaml.cyaml import CParser as _FastParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _FastParser = _PureParser  # type: ignore[misc,assignment]


class _Bounded(yaml.composer.Composer):
    """Composes nodes counting depth and alias-expanded size (mixed into a parser below)."""

    _depth: int
    _expanded: int
    _sizes: dict[int, int]

    def _setup(self) -> None:
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)  # type: ignore[arg-type]
        yaml.resolver.Resolver.__init__(self)  # type: ignore[arg-type]
        self._depth = 0
        self._expanded = 0
        self._sizes = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)
            # An alias repeats its anchor's whole subtree wherever it is used.
            self._grow(self._sizes.get(id(node), 1), event.start_mark)
            return node
        self._depth += 1
        if self._depth > MAX_MANIFEST_DEPTH:
            raise yaml.YAMLError(f"nested deeper than {MAX_MANIFEST_DEPTH} levels "
                                 f"(line {self.peek_event().start_mark.line + 1})")
        before = self._expanded
        self._grow(1, None)
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._sizes[id(node)] = self._expanded - before
        return node

    def _grow(self, n: int, mark: Any) -> None:
        self._expanded += n
        if self._expanded > MAX_MANIFEST_NODES:
            if mark is None:
                raise yaml.YAMLError(f"more than {MAX_MANIFEST_NODES} YAML nodes")
            raise yaml.YAMLError(f"expands to more than {MAX_MANIFEST_NODES} YAML nodes (alias at line "
                                 f"{mark.line + 1}; an alias repeats its anchor's whole content)")


class _FastLoader(_Bounded, _FastParser, yaml.constructor.SafeConstructor,  # type: ignore[misc]
                  yaml.resolver.Resolver):
    def __init__(self, stream: str) -> None:
        _FastParser.__init__(self, stream)
        self._setup()


class _PureLoader(_Bounded, _PureParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    def __init__(self, stream: str) -> None:
        _PureParser.__init__(self, stream)
        self._setup()


def load_yaml(text: str) -> list[Any]:
    """Every document of a YAML text, within the manifest limits; ``yaml.YAMLError`` otherwise."""
    if len(text) > MAX_MANIFEST_BYTES:
        raise yaml.YAMLError(f"larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        return _load(_FastLoader, text)
    except yaml.MarkedYAMLError:
        # A syntax error: PyYAML's own parser words it as users have always seen it.
        return _load(_PureLoader, text)


def _load(cls: type[_FastLoader] | type[_PureLoader], text: str) -> list[Any]:
    loader = cls(text)
    try:
        docs = []
        while loader.check_data():
            docs.append(loader.get_data())
        return docs
    finally:
        loader.dispose()


def _kinds() -> dict[str, type[BaseModel]]:
    from airflow_argo_events.core.spec.eventbus import EventBus

    kinds: dict[str, type[BaseModel]] = {"EventBus": EventBus}
    try:
        from airflow_argo_events.core.spec.sensor import Sensor

        kinds["Sensor"] = Sensor
    except ImportError:  # pragma: no cover - during bootstrap only
        pass
    try:
        from airflow_argo_events.core.spec.eventsource import EventSource

        kinds["EventSource"] = EventSource
    except ImportError:  # pragma: no cover
        pass
    return kinds


ARGO_GROUP = "argoproj.io"
OTHER_ARGO_KINDS = frozenset({
    # Argo Workflows
    "Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate", "CronWorkflow", "WorkflowEventBinding",
    "WorkflowTaskSet", "WorkflowTaskResult", "WorkflowArtifactGCTask",
    # Argo CD
    "Application", "ApplicationSet", "AppProject",
    # Argo Rollouts
    "Rollout", "AnalysisTemplate", "ClusterAnalysisTemplate", "AnalysisRun", "Experiment",
})
"""Kinds of the other Argo projects: they share the ``argoproj.io`` group and sit next to
Sensors in Argo's tutorials (a WorkflowTemplate the Sensor submits)."""


@dataclass(frozen=True)
class Note:
    """Something the loader tells without refusing the file: a skipped document or a warning."""

    source: str | None
    path: str
    message: str
    level: str = "warning"
    """``warning`` (worth fixing: an ignored field, a port that cannot work) or ``note``."""

    def line(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.level}: {self.path}: {self.message}" if self.path else \
            f"{where}{self.level}: {self.message}"


def _report(notes: list[Note] | None, new: list[Note]) -> None:
    """Into ``notes`` when the caller collects them; else one log line each (runtimes, adapters)."""
    if notes is not None:
        notes.extend(new)
        return
    for n in new:
        log.log(logging.WARNING if n.level == "warning" else logging.INFO, "%s", n.line())


def skip_reason(doc: Any) -> str | None:
    """Why a document is not ours to load (a ConfigMap, a WorkflowTemplate), or None.

    Only documents that say what they are (``apiVersion`` and ``kind``) are skipped; an
    unknown kind in Argo's group is refused by :func:`parse_manifest` (likely a typo).
    """
    if not isinstance(doc, dict):
        return None
    kind, api = doc.get("kind"), doc.get("apiVersion")
    if not isinstance(kind, str) or not isinstance(api, str) or kind in _kinds():
        return None
    group = api.rpartition("/")[0] if "/" in api else ""
    if group == ARGO_GROUP and kind not in OTHER_ARGO_KINDS:
        return None
    name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
    return f"{api} {kind}{f' {name!r}' if name else ''} skipped: not an Argo Events kind"


def parse_manifest(doc: Any, source: str | None = None, expect: str | None = None, *,
                   notes: list[Note] | None = None, strict: bool = False) -> Any:
    """One manifest dict -> its model; SpecError with field paths otherwise.

    Fields Argo would ignore are warnings (into ``notes``, else logged), or errors when
    ``strict``; keys in another letter case are read as Go's decoder reads them.
    """
    if not isinstance(doc, dict):
        raise SpecError([("", f"a manifest must be a mapping, got {type(doc).__name__}")], source)
    kind = doc.get("kind")
    kinds = _kinds()
    if expect and kind is None:
        kind = expect
    if kind not in kinds:
        raise SpecError([("kind", f"unknown kind {kind!r}; expected one of {', '.join(sorted(kinds))}")], source)
    if expect and kind != expect:
        raise SpecError([("kind", f"expected {expect}, got {kind}")], source)
    api = doc.get("apiVersion")
    if api is not None and api != API_VERSION:
        raise SpecError([("apiVersion", f"unsupported apiVersion {api!r}; expected {API_VERSION}")], source)
    doc, fields = check_fields(kinds[kind], doc)
    found = fields.problems()
    try:
        model = kinds[kind].model_validate(doc)
    except ValidationError as err:
        spec_err = spec_error(err, source)
        if strict:
            spec_err = SpecError(spec_err.errors + found, source)
        else:
            _report(notes, [Note(source, p, m) for p, m in found])
        raise spec_err from None
    if strict and found:
        raise SpecError(found, source)
    more = model.warnings() if hasattr(model, "warnings") else []
    _report(notes, [Note(source, p, m) for p, m in found + more])
    return model


def load_text(text: str, source: str | None = None, expect: str | None = None, *,
              notes: list[Note] | None = None, strict: bool = False) -> list[Any]:
    """Every Argo Events manifest in a YAML text; errors of all documents are reported together.

    Documents of other kinds (ConfigMap, Secret, WorkflowTemplate, ...) are skipped with
    one note each.
    """
    try:
        docs = [d for d in load_yaml(text) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise SpecError([("", f"invalid YAML: {where}{' '.join(problem.split())}")], source) from None
    except RecursionError:  # a construct the depth count does not see; never a traceback
        raise SpecError([("", f"invalid YAML: nested deeper than {MAX_MANIFEST_DEPTH} levels")], source) from None
    if not docs:
        raise SpecError([("", "no manifest in file")], source)
    out, errors, found = [], [], []
    for i, doc in enumerate(docs):
        label = source if len(docs) == 1 else f"{source or '<text>'}#{i}"
        skipped = skip_reason(doc)
        if skipped:
            found.append(Note(label, "", skipped, "note"))
            continue
        try:
            out.append(parse_manifest(doc, label, expect, notes=found, strict=strict))
        except SpecError as err:
            errors.extend((label, path, msg) for path, msg in err.errors)
    _report(notes, found)
    if errors:
        first = errors[0][0]
        raise SpecError([(p, m) if lbl == first else (f"{lbl}: {p}", m) for lbl, p, m in errors], first)
    return out


def load_file(path: str | Path, expect: str | None = None, *, notes: list[Note] | None = None,
              strict: bool = False) -> list[Any]:
    """Every manifest in a file; refuses big, binary and non-UTF-8 files with one line."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as err:
        raise SpecError([("", f"cannot read: {err.strerror}")], str(path)) from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise SpecError([("", f"larger than {MAX_MANIFEST_BYTES} bytes (Kubernetes' object limit); "
                              "not a manifest")], str(path))
    if b"\0" in data:
        raise SpecError([("", "binary file (contains NUL bytes); not a manifest")], str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError([("", f"not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})")],
                        str(path)) from None
    return load_text(text, str(path), expect, notes=notes, strict=strict)


def load_one(path: str | Path, expect: str, *, notes: list[Note] | None = None) -> Any:
    """The single manifest of ``kind: expect`` in a file (other documents are skipped)."""
    items = [m for m in load_file(path, None, notes=notes) if getattr(m, "kind", None) == expect]
    if len(items) != 1:
        raise SpecError([("kind", f"expected exactly one {expect} in the file, found {len(items)}")], str(path))
    return items[0]
