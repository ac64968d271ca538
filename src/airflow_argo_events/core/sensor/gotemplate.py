"""Go ``text/template`` with the sprig functions Argo users write, for dataTemplate/contextTemplate.

Supported: ``{{ pipeline }}`` with ``|``, fields (``.Input.body.name``), ``$``, string /
raw-string / number / bool literals, parenthesised pipelines, ``{{- -}}`` trimming,
``if``/``else if``/``else``, ``with``, ``range`` (over lists and maps) and ``end``.
Functions: Go's builtins (``eq ne lt le gt ge and or not len index print printf
println urlquery``) and sprig's ``upper lower title untitle trim trimAll trimPrefix
trimSuffix trunc substr replace repeat nospace contains hasPrefix hasSuffix quote squote
cat indent nindent split splitList join toString b64enc b64dec toJson toRawJson
toPrettyJson fromJson sha1sum sha256sum default empty coalesce ternary add sub mul div
mod max min int int64 float64 atoi list first last dict get hasKey keys``. Anything else
is a parse error naming the function. Templates are compiled once.

>>> GoTemplate("{{ .Input.name | upper }}!").render({"Input": {"name": "argo"}})
'ARGO!'
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

NO_VALUE = "<no value>"

MAX_TEMPLATE_OUTPUT = 1 << 20
"""Bytes a render may produce, and the largest string any function may return (1 MiB, the
bus's message limit): ``repeat 2000000000 "x"`` fails at once instead of allocating 2 GB."""

MAX_TEMPLATE_STEPS = 200_000
"""Actions, function calls and range iterations per render (about 0.2 s). Eight nested
``range`` over 10 items would be 10^8; real templates take tens to thousands."""

MAX_TEMPLATE_NESTING = 64
"""Deepest nesting of blocks (if/with/range) and parentheses accepted at parse time; deeper
would recurse past Python's limit while rendering."""


class TemplateError(ValueError):
    """The template does not parse, or failed while rendering."""


class _NoValue:
    """Go's zero value for a missing map key; prints as <no value>."""

    def __repr__(self) -> str:
        return NO_VALUE


NOVALUE = _NoValue()

# ---------------------------------------------------------------- formatting


def go_format(v: Any) -> str:
    """``fmt.Sprint`` of a JSON-decoded Go value (numbers are float64 in Go)."""
    if v is None or v is NOVALUE:
        return NO_VALUE
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, list):
        return "[" + " ".join(go_format(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_format(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def _go_float(f: float) -> str:
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f.is_integer() and abs(f) < 1e21:
        return str(int(f))
    text = repr(f)
    if "e" in text:
        mant, exp = text.split("e")
        sign = "-" if exp.startswith("-") else "+"
        exp = exp.lstrip("+-").rjust(2, "0")
        return f"{mant}e{sign}{exp}"
    return text


def truthy(v: Any) -> bool:
    if v is None or v is NOVALUE:
        return False
    if isinstance(v, (bool, int, float, str, list, dict, bytes)):
        return bool(v)
    return True


# ---------------------------------------------------------------- functions


def _num(v: Any) -> float | int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return v
    try:
        return int(str(v))
    except ValueError:
        try:
            return float(str(v))
        except ValueError:
            return 0


def _to_int(v: Any) -> int:
    n = _num(v)
    return int(n) if isinstance(n, (int, float)) and math.isfinite(n) else 0


def _cmp(a: Any, b: Any) -> tuple[Any, Any]:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a, b
    if type(a) is not type(b):
        raise TemplateError(f"incompatible types for comparison: {type(a).__name__} and {type(b).__name__}")
    return a, b


def _index(v: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(v, dict):
            v = v.get(k, NOVALUE)
        elif isinstance(v, (list, str)):
            i = _to_int(k)
            if not 0 <= i < len(v):
                raise TemplateError(f"index out of range: {i}")
            v = v[i]
        else:
            raise TemplateError(f"can't index item of type {type(v).__name__}")
    return v


def _printf(fmt: str, *args: Any) -> str:
    it = iter(args)

    def repl(m: re.Match[str]) -> str:
        flags, verb = m.group(1), m.group(2)
        if verb == "%":
            return "%"
        if any(int(n) > MAX_TEMPLATE_OUTPUT for n in re.findall(r"\d+", flags)):
            raise TemplateError(f"printf: width or precision in %{flags}{verb} exceeds {MAX_TEMPLATE_OUTPUT}")
        try:
            a = next(it)
        except StopIteration:
            return f"%!{verb}(MISSING)"
        if verb in "vs":
            return ("%" + flags + "s") % go_format(a)
        if verb == "q":
            return json.dumps(go_format(a), ensure_ascii=False)
        if verb == "d":
            return ("%" + flags + "d") % _to_int(a)
        if verb in "feEgG":
            return ("%" + flags + verb) % float(_num(a))
        if verb in "xX":
            return ("%" + flags + verb) % _to_int(a) if isinstance(a, (int, float)) else (
                go_format(a).encode().hex() if verb == "x" else go_format(a).encode().hex().upper())
        if verb == "t":
            return "true" if truthy(a) else "false"
        return go_format(a)

    return re.sub(r"%([-+# 0-9.]*)([a-zA-Z%])", repl, fmt)


def _title(s: Any) -> str:
    return re.sub(r"(^|[\s])(\w)", lambda m: m.group(1) + m.group(2).upper(), go_format(s))


def _b64dec(s: Any) -> str:
    try:
        return base64.b64decode(go_format(s), validate=False).decode("utf-8", "replace")
    except (ValueError, TypeError) as err:
        raise TemplateError(f"b64dec: {err}") from err


def _default(d: Any, *given: Any) -> Any:
    v = given[0] if given else None
    return v if truthy(v) else d


def _split(sep: Any, s: Any) -> dict[str, str]:
    return {f"_{i}": part for i, part in enumerate(go_format(s).split(go_format(sep)))}


def _dict(*kv: Any) -> dict[str, Any]:
    return {go_format(kv[i]): (kv[i + 1] if i + 1 < len(kv) else "") for i in range(0, len(kv), 2)}


def _indent(n: Any, s: Any) -> str:
    width, text = max(0, _to_int(n)), go_format(s)
    _check_size("indent", width * (text.count("\n") + 1) + len(text))
    pad = " " * width
    return pad + text.replace("\n", "\n" + pad)


def _repeat(n: Any, s: Any) -> str:
    count, text = max(0, _to_int(n)), go_format(s)
    _check_size("repeat", count * len(text))
    return text * count


def _replace(old: Any, new: Any, s: Any) -> str:
    o, w, text = go_format(old), go_format(new), go_format(s)
    hits = text.count(o) if o else len(text) + 1
    _check_size("replace", len(text) + hits * max(0, len(w) - len(o)))
    return text.replace(o, w)


def _check_size(name: str, size: int) -> None:
    if size > MAX_TEMPLATE_OUTPUT:
        raise TemplateError(f"{name}: result of {size} bytes exceeds the {MAX_TEMPLATE_OUTPUT}-byte limit")


def _json_or_str(v: Any) -> Any:
    return None if v is NOVALUE else v


FUNCS: dict[str, Callable[..., Any]] = {
    # Go builtins
    "eq": lambda a, *bs: any(_cmp(a, b)[0] == _cmp(a, b)[1] for b in bs),
    "ne": lambda a, b: _cmp(a, b)[0] != _cmp(a, b)[1],
    "lt": lambda a, b: _cmp(a, b)[0] < _cmp(a, b)[1],
    "le": lambda a, b: _cmp(a, b)[0] <= _cmp(a, b)[1],
    "gt": lambda a, b: _cmp(a, b)[0] > _cmp(a, b)[1],
    "ge": lambda a, b: _cmp(a, b)[0] >= _cmp(a, b)[1],
    "not": lambda a: not truthy(a),
    "len": lambda a: len(a) if isinstance(a, (str, list, dict)) else 0,
    "index": _index,
    "print": lambda *a: "".join(go_format(x) for x in a),
    "println": lambda *a: " ".join(go_format(x) for x in a) + "\n",
    "printf": lambda f, *a: _printf(go_format(f), *a),
    "urlquery": lambda *a: quote_plus("".join(go_format(x) for x in a)),
    # sprig: strings
    "upper": lambda s: go_format(s).upper(),
    "lower": lambda s: go_format(s).lower(),
    "title": _title,
    "untitle": lambda s: re.sub(r"(^|\s)(\w)", lambda m: m.group(1) + m.group(2).lower(), go_format(s)),
    "trim": lambda s: go_format(s).strip(),
    "trimAll": lambda c, s: go_format(s).strip(go_format(c)),
    "trimPrefix": lambda p, s: go_format(s).removeprefix(go_format(p)),
    "trimSuffix": lambda p, s: go_format(s).removesuffix(go_format(p)),
    "trunc": lambda n, s: go_format(s)[: _to_int(n)] if _to_int(n) >= 0 else go_format(s)[_to_int(n):],
    "substr": lambda a, b, s: go_format(s)[_to_int(a): _to_int(b)],
    "replace": _replace,
    "repeat": _repeat,
    "nospace": lambda s: re.sub(r"\s", "", go_format(s)),
    "contains": lambda sub, s: go_format(sub) in go_format(s),
    "hasPrefix": lambda p, s: go_format(s).startswith(go_format(p)),
    "hasSuffix": lambda p, s: go_format(s).endswith(go_format(p)),
    "quote": lambda *a: " ".join(json.dumps(go_format(x), ensure_ascii=False) for x in a),
    "squote": lambda *a: " ".join(f"'{go_format(x)}'" for x in a),
    "cat": lambda *a: " ".join(go_format(x) for x in a if x is not None),
    "indent": _indent,
    "nindent": lambda n, s: "\n" + _indent(n, s),
    "split": _split,
    "splitList": lambda sep, s: go_format(s).split(go_format(sep)),
    "join": lambda sep, lst: go_format(sep).join(go_format(x) for x in (lst if isinstance(lst, list) else [lst])),
    "toString": go_format,
    # sprig: encoding
    "b64enc": lambda s: base64.b64encode(go_format(s).encode()).decode(),
    "b64dec": _b64dec,
    "toJson": lambda v: json.dumps(_json_or_str(v), separators=(",", ":")),
    "toRawJson": lambda v: json.dumps(_json_or_str(v), separators=(",", ":"), ensure_ascii=False),
    "toPrettyJson": lambda v: json.dumps(_json_or_str(v), indent=2),
    "fromJson": lambda s: json.loads(go_format(s)),
    "sha1sum": lambda s: hashlib.sha1(go_format(s).encode()).hexdigest(),
    "sha256sum": lambda s: hashlib.sha256(go_format(s).encode()).hexdigest(),
    # sprig: defaults and flow
    "default": _default,
    "empty": lambda v: not truthy(v),
    "coalesce": lambda *a: next((x for x in a if truthy(x)), None),
    "ternary": lambda a, b, cond: a if truthy(cond) else b,
    # sprig: math
    "add": lambda *a: sum(_to_int(x) for x in a),
    "sub": lambda a, b: _to_int(a) - _to_int(b),
    "mul": lambda *a: math.prod(_to_int(x) for x in a),
    "div": lambda a, b: int(_to_int(a) / _to_int(b)) if _to_int(b) else _raise("div: division by zero"),
    "mod": lambda a, b: math.fmod(_to_int(a), _to_int(b)) if _to_int(b) else _raise("mod: division by zero"),
    "max": lambda *a: max(_to_int(x) for x in a),
    "min": lambda *a: min(_to_int(x) for x in a),
    "int": _to_int,
    "int64": _to_int,
    "float64": lambda v: float(_num(v)),
    "atoi": _to_int,
    # sprig: lists and dicts
    "list": lambda *a: list(a),
    "first": lambda lst: lst[0] if lst else None,
    "last": lambda lst: lst[-1] if lst else None,
    "dict": _dict,
    "get": lambda d, k: d.get(go_format(k), "") if isinstance(d, dict) else "",
    "hasKey": lambda d, k: isinstance(d, dict) and go_format(k) in d,
    "keys": lambda *ds: [k for d in ds if isinstance(d, dict) for k in d],
}


def _raise(msg: str) -> Any:
    raise TemplateError(msg)


# ---------------------------------------------------------------- lexing and parsing

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOK = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<field>(?:\$[A-Za-z0-9_]*)?(?:\.[A-Za-z0-9_]+)+|\.|\$[A-Za-z0-9_]*)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[|()])
    )""",
    re.X,
)


@dataclass
class _Field:
    root: str  # "." or "$"
    names: tuple[str, ...]


@dataclass
class _Lit:
    value: Any


@dataclass
class _Call:
    name: str
    args: list[Any]


@dataclass
class _Pipe:
    cmds: list[list[Any]]  # each command: operands; a leading _Call-name is a function


@dataclass
class _Block:
    kind: str  # if | with | range
    pipe: _Pipe
    body: list[Any] = field(default_factory=list)
    orelse: list[Any] = field(default_factory=list)


def _lex_action(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOK.match(text, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"unexpected {text[pos:pos + 10]!r} in action")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _parse_pipe(tokens: list[tuple[str, str]], i: int = 0, close: bool = False,
                depth: int = 0) -> tuple[_Pipe, int]:
    if depth > MAX_TEMPLATE_NESTING:
        raise TemplateError(f"parentheses nested deeper than {MAX_TEMPLATE_NESTING}")
    cmds: list[list[Any]] = [[]]
    while i < len(tokens):
        kind, val = tokens[i]
        if kind == "punct" and val == ")":
            if not close:
                raise TemplateError("unexpected )")
            return _Pipe(cmds), i + 1
        if kind == "punct" and val == "|":
            if not cmds[-1]:
                raise TemplateError("missing command before |")
            cmds.append([])
            i += 1
            continue
        if kind == "punct" and val == "(":
            sub, i = _parse_pipe(tokens, i + 1, close=True, depth=depth + 1)
            cmds[-1].append(sub)
            continue
        if kind == "str":
            cmds[-1].append(_Lit(json.loads(val)))
        elif kind == "raw":
            cmds[-1].append(_Lit(val[1:-1]))
        elif kind == "num":
            cmds[-1].append(_Lit(float(val) if any(c in val for c in ".eE") else int(val)))
        elif kind == "field":
            root = "$" if val.startswith("$") else "."
            rest = val.lstrip("$").lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
            names = tuple(n for n in rest.split(".") if n)
            cmds[-1].append(_Field(root, names))
        elif kind == "ident":
            if val in ("true", "false"):
                cmds[-1].append(_Lit(val == "true"))
            elif val == "nil":
                cmds[-1].append(_Lit(None))
            elif val in FUNCS:
                cmds[-1].append(_Call(val, []))
            else:
                raise TemplateError(f'function "{val}" not defined')
        i += 1
    if close:
        raise TemplateError("missing )")
    if not cmds[-1]:
        raise TemplateError("empty command")
    return _Pipe(cmds), i


def _parse(text: str) -> list[Any]:
    root: list[Any] = []
    stack: list[tuple[_Block | None, list[Any]]] = [(None, root)]
    pos, trim_next = 0, False
    for m in _ACTION.finditer(text):
        chunk = text[pos:m.start()]
        if trim_next:
            chunk = chunk.lstrip()
        if m.group(1):
            chunk = chunk.rstrip()
        if chunk:
            stack[-1][1].append(chunk)
        trim_next = bool(m.group(3))
        pos = m.end()
        body = m.group(2).strip()
        if body.startswith("/*"):
            continue
        tokens = _lex_action(body)
        if not tokens:
            raise TemplateError("empty action")
        head = tokens[0][1] if tokens[0][0] == "ident" else None
        if head in ("if", "with", "range"):
            pipe, _ = _parse_pipe(tokens[1:])
            block = _Block(head, pipe)
            stack[-1][1].append(block)
            stack.append((block, block.body))
            if len(stack) > MAX_TEMPLATE_NESTING:
                raise TemplateError(f"blocks nested deeper than {MAX_TEMPLATE_NESTING}")
        elif head == "else":
            block = stack[-1][0]
            if block is None:
                raise TemplateError("unexpected {{else}}")
            if len(tokens) > 1 and tokens[1] == ("ident", "if"):
                pipe, _ = _parse_pipe(tokens[2:])
                inner = _Block("if", pipe)
                block.orelse.append(inner)
                stack[-1] = (inner, inner.body)
            else:
                stack[-1] = (block, block.orelse)
        elif head == "end":
            if len(stack) == 1:
                raise TemplateError("unexpected {{end}}")
            stack.pop()
        else:
            pipe, _ = _parse_pipe(tokens)
            stack[-1][1].append(pipe)
    if len(stack) != 1:
        raise TemplateError("unexpected EOF: missing {{end}}")
    rest = text[pos:]
    if trim_next:
        rest = rest.lstrip()
    if rest:
        root.append(rest)
    return root


# ---------------------------------------------------------------- evaluation


def _lookup(value: Any, names: tuple[str, ...]) -> Any:
    for n in names:
        if isinstance(value, dict):
            value = value.get(n, NOVALUE)
        elif value is None or value is NOVALUE:
            raise TemplateError(f"nil pointer evaluating .{n}")
        else:
            raise TemplateError(f"can't evaluate field {n} in type {type(value).__name__}")
    return value


class _Output:
    """The rendered text so far, refusing to grow past ``MAX_TEMPLATE_OUTPUT``."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def add(self, text: str) -> None:
        self.size += len(text)
        if self.size > MAX_TEMPLATE_OUTPUT:
            raise TemplateError(f"template output exceeds {MAX_TEMPLATE_OUTPUT} bytes")
        self.parts.append(text)


class GoTemplate:
    """A compiled template; ``render(data)`` runs it with ``.`` = data."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._nodes = _parse(text)
        self._steps = MAX_TEMPLATE_STEPS

    def render(self, data: Any) -> str:
        """Render with ``.`` = data; bounded by ``MAX_TEMPLATE_STEPS`` and ``MAX_TEMPLATE_OUTPUT``."""
        out = _Output()
        self._steps = MAX_TEMPLATE_STEPS
        try:
            self._run(self._nodes, data, data, out)
        except TemplateError:
            raise
        except (TypeError, ValueError, ZeroDivisionError, IndexError, KeyError, AttributeError,
                OverflowError, RecursionError) as err:
            raise TemplateError(f"{type(err).__name__}: {err}") from err
        return "".join(out.parts)

    def _step(self) -> None:
        self._steps -= 1
        if self._steps < 0:
            raise TemplateError(f"template exceeded {MAX_TEMPLATE_STEPS} steps")

    def _run(self, nodes: list[Any], dot: Any, root: Any, out: _Output) -> None:
        for node in nodes:
            self._step()
            if isinstance(node, str):
                out.add(node)
            elif isinstance(node, _Pipe):
                out.add(go_format(self._pipe(node, dot, root)))
            else:
                self._block(node, dot, root, out)

    def _block(self, b: _Block, dot: Any, root: Any, out: _Output) -> None:
        value = self._pipe(b.pipe, dot, root)
        if b.kind == "range":
            items = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else []
            if items:
                for item in ([value[k] for k in sorted(value)] if isinstance(value, dict) else items):
                    self._run(b.body, item, root, out)
            else:
                self._run(b.orelse, dot, root, out)
            return
        if truthy(value):
            self._run(b.body, value if b.kind == "with" else dot, root, out)
        else:
            self._run(b.orelse, dot, root, out)

    def _operand(self, op: Any, dot: Any, root: Any) -> Any:
        if isinstance(op, _Lit):
            return op.value
        if isinstance(op, _Field):
            return _lookup(root if op.root == "$" else dot, op.names)
        if isinstance(op, _Pipe):
            return self._pipe(op, dot, root)
        if isinstance(op, _Call):
            return FUNCS[op.name]()
        raise TemplateError(f"bad operand {op!r}")

    def _pipe(self, pipe: _Pipe, dot: Any, root: Any) -> Any:
        result: Any = NOVALUE
        for n, cmd in enumerate(pipe.cmds):
            head = cmd[0]
            if isinstance(head, _Call):
                args = [self._operand(a, dot, root) for a in cmd[1:]]
                if n > 0:
                    args.append(result)
                self._step()
                try:
                    result = FUNCS[head.name](*args)
                except TemplateError:
                    raise
                except TypeError as err:
                    raise TemplateError(f"wrong number of args for {head.name}: {err}") from err
                if isinstance(result, (str, bytes)) and len(result) > MAX_TEMPLATE_OUTPUT:
                    _check_size(head.name, len(result))
            else:
                if len(cmd) > 1 or n > 0:
                    raise TemplateError("can't give argument to non-function")
                result = self._operand(head, dot, root)
        return result
