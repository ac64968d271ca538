"""Our engine's answer for each golden case, compared with Go's.

``compare_file(path)`` runs every case of one golden file through the Python engine the
way the sensor does (same entry points: ``compile_path`` + the gjson conversions,
``ExprFilterProgram``, ``GoTemplate``, ``LuaSandbox``, ``Transform``, ``set_path``,
``go_regex``) and sorts each case into: agrees, differs on purpose (a reason listed in
``DELIBERATE``, also in docs/compatibility.md), or differs unexplained (a bug).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_argo_events.core.events import Event
from airflow_argo_events.core.limits import loads_strict
from airflow_argo_events.core.sensor.expr import ExprError, ExprFilterProgram
from airflow_argo_events.core.sensor.gotemplate import GoTemplate, TemplateError
from airflow_argo_events.core.sensor.lua import LuaError, LuaSandbox
from airflow_argo_events.core.sensor.params import set_path
from airflow_argo_events.core.sensor.paths import (
    MISSING,
    compile_path,
    gjson_bool,
    gjson_float,
    gjson_string,
    gjson_type,
    go_sprint,
    to_json_text,
)
from airflow_argo_events.core.sensor.regex import RegexError, go_regex, matches
from airflow_argo_events.core.sensor.transform import Transform, TransformError
from airflow_argo_events.core.spec.sensor import EventDependencyTransformer

DELIBERATE: dict[str, str] = {
    "compact-json": "dataKey on an object or array gives compact JSON of the parsed value, not the event's "
                    "original bytes (whitespace and number spellings such as 1e3 inside objects differ)",
    "integer-text": "an integer beyond 64 bits, or the integer -0, is parsed into a float or 0 by the JSON "
                    "decoder, so its original spelling is gone",
    "float-last-digit": "`**` with a fractional exponent uses the C library's exp and log, which can "
                        "differ from Go's in the last bit",
    "lua-number-concat": "Lua's `..` turns a number into text the C way (`%.14g`: 1.2345678901235e+17), "
                         "gopher-lua the Go way (123456789012345680); `tostring` and the rest match Go",
    "jq-integer-literals": "gojq computes with integer literals beyond 2^53 exactly (Go ints and big ints); "
                           "libjq, which runs our jq, computes with float64 (`9007199254740993 + 0` is "
                           "9007199254740992)",
    "jq-exponent-text": "string interpolation and `@text`/`@json` of an event number at or beyond 1e21 or "
                        "below 1e-6 write `1E+21` (libjq keeps the number's text, in its own form); gojq writes "
                        "`1e+21`; `tostring` and `tojson` match Go",
    "gojq-0.12.11-uri": "the oracle's gojq (Debian's 0.12.11) writes a space as `+` in `@uri`; Argo's gojq "
                        "0.12.19 writes `%20`, as we do",
    "oracle-stub": "sprig's `camelcase` needs a newer xstrings than Debian ships, so the oracle cannot run "
                   "it; the engine does not support it either (a parse error naming the function)",
    "go-panics": "Go panics (Argo's sensor would crash); we report an error for that event",
}


@dataclass
class Report:
    library: str
    total: int = 0
    agree: int = 0
    nondeterministic: int = 0
    deliberate: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    unexplained: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.library}: {self.agree}/{self.total} agree"]
        if self.nondeterministic:
            parts.append(f"{self.nondeterministic} not compared (Go's answer varies between runs)")
        for reason, ids in sorted(self.deliberate.items()):
            parts.append(f"{len(ids)} differ on purpose ({reason})")
        if self.unexplained:
            parts.append(f"{len(self.unexplained)} UNEXPLAINED, e.g. {self.unexplained[0][0]}: {self.unexplained[0][1]}")
        return "; ".join(parts)


class Differs(Exception):
    """A case where we differ; ``reason`` names a DELIBERATE entry, or is empty for a bug."""

    def __init__(self, detail: str, reason: str = "") -> None:
        super().__init__(detail)
        self.reason = reason


def _same_float(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _integer_text_lost(raw: str) -> bool:
    digits = raw.lstrip("-")
    return raw == "-0" or (digits.isdigit() and abs(int(raw)) >= 2**63)


# ------------------------------------------------------------------ gjson


def _as_decoded(raw: str) -> Any:
    """Go's JSON text as our decoder (orjson) reads it: integers beyond 64 bits become floats."""
    return json.loads(raw, parse_int=lambda t: int(t) if -2**63 <= int(t) < 2**64 else float(t))


def check_gjson(case: dict[str, Any], doc: str, go: dict[str, Any]) -> None:
    data = loads_strict(doc)
    value = compile_path(case["path"])(data)
    exists = value is not MISSING
    if exists != go["exists"]:
        raise Differs(f"exists: ours {exists} ({value!r}), go {go['exists']} ({go.get('raw')!r})")
    if not exists:
        return
    kind = gjson_type(value)
    if kind != go["type"]:
        raise Differs(f"type: ours {kind} ({value!r}), go {go['type']} ({go['raw']!r})")
    if kind == "JSON":
        if json.loads(go["raw"]) != value:
            reason = "integer-text" if _as_decoded(go["raw"]) == value else ""
            raise Differs(f"value: ours {value!r}, go {go['raw']!r}", reason)
        if to_json_text(value) != go["raw"]:
            raise Differs(f"raw: ours {to_json_text(value)!r}, go {go['raw']!r}", "compact-json")
        return
    ours = (gjson_string(value), gjson_float(value), gjson_bool(value))
    if ours[0] != go["str"] or not _same_float(ours[1], float(go["num"])) or ours[2] != go["bool"]:
        reason = "integer-text" if kind == "Number" and _integer_text_lost(go["raw"]) else ""
        if case["path"].endswith("@tostr") and ours[0] != go["str"]:
            reason = "compact-json"  # the JSON text of the parsed value, not the event's bytes
        raise Differs(f"String/Float/Bool: ours {ours!r}, go {(go['str'], go['num'], go['bool'])!r}", reason)


# ------------------------------------------------------------------ govaluate

_GO_TYPES = {bool: "bool", float: "float64", str: "string", type(None): "<nil>", list: "[]interface {}",
             dict: "map[string]interface {}"}


def _check_govaluate(case: dict[str, Any], data: Any, go: dict[str, Any]) -> None:
    values = {}
    for name, path in case["fields"]:
        value = compile_path(path)(data)
        if value is MISSING:
            if "missing" not in go:
                raise Differs(f"ours: path {path} missing, go: {go}")
            return
        values[name] = value
    if "missing" in go:
        raise Differs(f"go: path {go['missing']} missing, ours found it")
    try:
        program = ExprFilterProgram(case["expr"])
    except ExprError as err:
        if "parse_error" in go:
            return
        if "panic" in go:
            raise Differs(f"go panics ({go['panic']}); ours: parse error {err}", "go-panics") from None
        raise Differs(f"ours: parse error {err}; go: {go}") from None
    if "parse_error" in go:
        raise Differs(f"go: parse error {go['parse_error']!r}; ours parsed it")
    try:
        result = program.evaluate(values)
    except ExprError as err:
        if "error" in go:
            return
        if "panic" in go:
            raise Differs(f"go panics ({go['panic']}); ours: error {err}", "go-panics") from None
        raise Differs(f"ours: error {err}; go: {go}") from None
    if "panic" in go:
        raise Differs(f"go panics ({go['panic']}); ours gives {result!r}", "go-panics")
    if "error" in go or "parse_error" in go:
        raise Differs(f"go: error {go}; ours gives {result!r}")
    kind = _GO_TYPES.get(type(result), type(result).__name__)
    if kind != go["type"] or go_sprint(result) != go["v"]:
        close = kind == go["type"] == "float64" and result != float(go["v"]) \
            and math.isclose(result, float(go["v"]), rel_tol=1e-14)
        raise Differs(f"ours {kind} {go_sprint(result)!r}, go {go['type']} {go['v']!r}",
                      "float-last-digit" if close else "")


# ------------------------------------------------------------------ templates


def _check_template(case: dict[str, Any], data: Any, go: dict[str, Any]) -> None:
    raw_json = False
    if case["mode"] == "filter":
        value = compile_path(case["path"])(data)
        raw_json = isinstance(value, (dict, list))  # Go has the event's own bytes, we compact JSON
        value = gjson_string(value)
    else:
        value = data
    try:
        tpl = GoTemplate(case["tpl"])
    except TemplateError as err:
        if "parse_error" in go:
            return
        if "not available in the oracle build" in go.get("error", ""):
            raise Differs(f"ours: parse error {err}; go: {go}", "oracle-stub") from None
        raise Differs(f"ours: parse error {err}; go: {go}") from None
    if "parse_error" in go:
        raise Differs(f"go: parse error {go['parse_error']!r}; ours parsed it")
    try:
        out = tpl.render({"Input": value})
    except TemplateError as err:
        if "error" in go or "panic" in go:
            return
        raise Differs(f"ours: error {err}; go: {go['out']!r}") from None
    if "panic" in go:
        raise Differs(f"go panics ({go['panic']}); ours gives {out!r}", "go-panics")
    if "error" in go:
        raise Differs(f"go: error {go['error']!r}; ours gives {out!r}")
    if out != go["out"]:
        raise Differs(f"ours {out!r}, go {go['out']!r}", "compact-json" if raw_json else "")


# ------------------------------------------------------------------ regexp


def check_regexp(case: dict[str, Any], doc: str, go: dict[str, Any]) -> None:
    try:
        rx = go_regex(case["pattern"])
    except RegexError as err:
        if "error" in go:
            return
        raise Differs(f"ours: {err}; go compiles it") from None
    if "error" in go:
        raise Differs(f"go: {go['error']}; ours compiles it")
    ours = matches(rx, case["subject"])
    if ours != go["match"]:
        raise Differs(f"match: ours {ours}, go {go['match']}")


# ------------------------------------------------------------------ sjson


def check_sjson(case: dict[str, Any], doc: str, go: dict[str, Any]) -> None:
    data = loads_strict(doc)
    value = json.loads(case["value"]) if case["raw"] else case["value"]
    try:
        ours = set_path(data, case["path"], value)
    except (ValueError, TypeError, IndexError) as err:
        if "error" in go:
            return
        raise Differs(f"ours: error {err}; go: {go.get('out')!r}") from None
    if "error" in go:
        raise Differs(f"go: error {go['error']!r}; ours gives {ours!r}")
    expected = json.loads(go["out"])
    if ours != expected:
        raise Differs(f"ours {to_json_text(ours)}, go {go['out']}")


# ------------------------------------------------------------------ lua

_LUA: list[LuaSandbox] = []


_GO_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]\d+)?")


def _c_number_spelling(ours: Any, go: Any) -> bool:
    """Whether ours differs from go only in strings where Go spells a number as gopher-lua
    does and we as C Lua's ``%.14g`` (the ``..`` operator's coercion)."""
    if isinstance(ours, dict) and isinstance(go, dict):
        return ours.keys() == go.keys() and all(_c_number_spelling(ours[k], go[k]) for k in ours)
    if isinstance(ours, list) and isinstance(go, list):
        return len(ours) == len(go) and all(_c_number_spelling(a, b) for a, b in zip(ours, go, strict=True))
    if isinstance(ours, str) and isinstance(go, str) and ours != go:
        return _GO_NUMBER.sub(lambda m: f"{float(m.group()):.14g}", go) == ours
    return ours == go


def _check_lua(case: dict[str, Any], data: Any, go: dict[str, Any]) -> None:
    if not _LUA:
        _LUA.append(LuaSandbox())
    box = _LUA[0]
    try:
        fn = box.compile(case["script"], case["mode"])
        result = box.passes(fn, data) if case["mode"] == "filter" else box.run(fn, data)
    except LuaError as err:
        if "error" in go or "panic" in go:
            return
        raise Differs(f"ours: error {err}; go: {go}") from None
    if case["mode"] == "filter":
        if "error" in go:
            raise Differs(f"go: error {go['error']!r}; ours gives {result!r}")
        if (result is True) != go["result"]:
            raise Differs(f"ours {result!r}, go {go['result']}")
        return
    if not isinstance(result, dict) and not isinstance(result, list):
        if "error" in go:
            return
        raise Differs(f"ours: not a table ({result!r}); go: {go}")
    if "error" in go:
        raise Differs(f"go: error {go['error']!r}; ours gives {result!r}")
    expected = json.loads(go["data"])
    if result != expected:
        reason = "lua-number-concat" if _c_number_spelling(result, expected) else ""
        raise Differs(f"ours {to_json_text(result)}, go {go['data']}", reason)


# ------------------------------------------------------------------ jq

_T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


_BIG_LITERAL = re.compile(r"\d{16,}")


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        return {k: _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    return fn(value) if isinstance(value, str) else value


def _check_jq(case: dict[str, Any], data: Any, go: dict[str, Any]) -> None:
    transform = Transform(EventDependencyTransformer(jq=case["program"]))
    try:
        out = transform.apply(Event("id", "src", "subj", "webhook", _T0, data)).data
    except TransformError as err:
        if "error" in go or "parse_error" in go or "panic" in go:
            return
        raise Differs(f"ours: error {err}; go: {go['data']}") from None
    if "data" not in go:
        raise Differs(f"go: {go}; ours gives {to_json_text(out)}")
    if out != json.loads(go["data"]):
        reason = ""
        if _BIG_LITERAL.search(case["program"]):
            reason = "jq-integer-literals"
        elif _map_strings(out, lambda t: t.replace("E+", "e+").replace("E-", "e-")) == json.loads(go["data"]):
            reason = "jq-exponent-text"
        elif "@uri" in case["program"] and out == _map_strings(json.loads(go["data"]), lambda t: t.replace("+", "%20")):
            reason = "gojq-0.12.11-uri"
        raise Differs(f"ours {to_json_text(out)}, go {go['data']}", reason)


def _decoder_aware(check: Callable[[dict[str, Any], Any, dict[str, Any]], None]
                   ) -> Callable[[dict[str, Any], str, dict[str, Any]], None]:
    """``check`` on the document as our decoder reads it; when that differs from Go, again with
    the integer -0 kept as -0.0: if that agrees, the decoder made the difference (integer-text)."""

    def run(case: dict[str, Any], doc: str, go: dict[str, Any]) -> None:
        try:
            check(case, loads_strict(doc), go)
        except Differs as diff:
            if diff.reason:
                raise
            try:
                check(case, json.loads(doc, parse_int=lambda t: -0.0 if t == "-0" else int(t)), go)
            except Differs:
                raise diff from None
            raise Differs(str(diff), "integer-text") from None

    return run


CHECKS: dict[str, Callable[[dict[str, Any], str, dict[str, Any]], None]] = {
    "gjson": check_gjson, "govaluate": _decoder_aware(_check_govaluate),
    "template": _decoder_aware(_check_template), "regexp": check_regexp, "sjson": check_sjson,
    "lua": _decoder_aware(_check_lua), "jq": _decoder_aware(_check_jq),
}


def load(path: Path) -> tuple[str, list[str], list[dict[str, Any]]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    head = json.loads(lines[0])
    return head["library"], head["docs"], [json.loads(line) for line in lines[1:]]


def compare_file(path: Path) -> Report:
    library, docs, cases = load(path)
    check = CHECKS[library]
    report = Report(library)
    for case in cases:
        if case["go"].get("nondeterministic"):
            report.nondeterministic += 1
            continue
        report.total += 1
        doc = docs[case["doc"]] if "doc" in case else ""
        try:
            check(case, doc, case["go"])
        except Differs as diff:
            if diff.reason:
                report.deliberate[diff.reason].append(case["id"])
            else:
                report.unexplained.append((case["id"], str(diff)))
            continue
        except Exception as err:  # a crash in our engine is a bug to report, not a test-run abort
            report.unexplained.append((case["id"], f"ours raised {type(err).__name__}: {err}"))
            continue
        report.agree += 1
    return report
