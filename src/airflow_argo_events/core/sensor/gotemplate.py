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

from airflow_argo_events.core.sensor.paths import format_float_f, format_float_v

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
    """What a template prints for a value: ``<no value>`` for nil or a missing key, else ``fmt.Sprint``."""
    if v is None or v is NOVALUE:
        return NO_VALUE
    return _sprint(v)


def _sprint(v: Any) -> str:
    """``fmt.Sprint`` of a JSON-decoded Go value (numbers from JSON are float64 in Go)."""
    if v is None or v is NOVALUE:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return format_float_v(v)
    if isinstance(v, list):
        return "[" + " ".join(_sprint(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_sprint(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def _go_float(f: float) -> str:
    return format_float_v(f)


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
    if isinstance(n, float):
        # Go's int64(float64) on amd64: NaN and out-of-range values give math.MinInt64.
        return int(n) if math.isfinite(n) and -(2.0**63) <= n < 2.0**63 else -(1 << 63)
    return int(n)


def _cmp(a: Any, b: Any, ordered: bool = False) -> tuple[Any, Any]:
    """Go's comparison rules: same basic kind (an int literal and a float64 are not), and
    ``lt``/``le``/``gt``/``ge`` only on numbers and strings."""
    if a is None or a is NOVALUE or b is None or b is NOVALUE or (
            ordered and (isinstance(a, (bool, list, dict)) or isinstance(b, (bool, list, dict)))):
        raise TemplateError("invalid type for comparison")
    if type(a) is not type(b):
        raise TemplateError("incompatible types for comparison")
    if isinstance(a, (list, dict)):
        raise TemplateError("invalid type for comparison")
    return a, b


def _len(v: Any) -> int:
    if isinstance(v, str):
        return len(v.encode("utf-8", "surrogatepass"))  # Go's len counts bytes
    if isinstance(v, (list, dict)):
        return len(v)
    if v is None or v is NOVALUE:
        raise TemplateError("error calling len: len of nil pointer")
    raise TemplateError(f"error calling len: len of type {_go_type(v)}")


def _list_arg(name: str, v: Any) -> list[Any]:
    if isinstance(v, list):
        return v
    if v is None or v is NOVALUE:
        raise TemplateError(f"error calling {name}: runtime error: invalid memory address or nil pointer dereference")
    raise TemplateError(f"error calling {name}: Cannot find {name} on type {_go_type(v)}")


def _map_arg(v: Any) -> bool:
    if v is None or v is NOVALUE:
        return False  # Go passes the zero map: no keys
    if not isinstance(v, dict):
        raise TemplateError(f"wrong type for value; expected map[string]interface {{}}; got {_go_type(v)}")
    return True


def _index(v: Any, *keys: Any) -> Any:
    if v is None or v is NOVALUE:
        raise TemplateError("error calling index: index of untyped nil")
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


def _nil(v: Any) -> bool:
    return v is None or v is NOVALUE


def _strslice(v: Any) -> list[str]:
    """sprig's strslice: a list without its nils, nil as nothing, anything else as one string."""
    if isinstance(v, list):
        return [_sprint(x) for x in v if not _nil(x)]
    return [] if _nil(v) else [_sprint(v)]


def _type_name(v: Any) -> str:
    return "<nil>" if v is None or v is NOVALUE else _go_type(v)


def _bad_verb(verb: str, v: Any, flags: str = "") -> str:
    """Go's ``%!verb(type=value)``, the value printed with the verb's own width and precision."""
    if v is None or v is NOVALUE:
        return f"%!{verb}(<nil>)"
    if isinstance(v, int) and not isinstance(v, bool):
        shown = ("%" + flags + "d") % v
    elif isinstance(v, str):
        shown = ("%" + flags + "s") % v
    else:
        shown = _sprint(v)
    return f"%!{verb}({_go_type(v)}={shown})"


def _fmt_one(verb: str, flags: str, a: Any) -> str:
    """One ``fmt`` verb applied to one value, with Go's ``%!verb(type=value)`` for a mismatch."""
    if isinstance(a, list):
        return "[" + " ".join(_fmt_one(verb, flags, x) for x in a) + "]"
    if isinstance(a, dict):
        return "map[" + " ".join(f"{_fmt_one(verb, flags, k)}:{_fmt_one(verb, flags, a[k])}" for k in sorted(a)) + "]"
    if verb == "v":
        return ("%" + flags + "s") % _sprint(a)
    if a is None or a is NOVALUE:
        return _bad_verb(verb, a, flags)
    if verb == "s" and isinstance(a, str):
        return ("%" + flags + "s") % a
    if verb == "q" and isinstance(a, str):
        return ("%" + flags + "s") % json.dumps(a, ensure_ascii=False)
    if verb in "dxX" and isinstance(a, int) and not isinstance(a, bool):
        return ("%" + flags + verb) % a
    if verb in "xX" and isinstance(a, str):
        h = a.encode("utf-8", "surrogatepass").hex()
        return h.upper() if verb == "X" else h
    if verb in "feEgGF" and isinstance(a, float):
        if verb in "gG" and "." not in flags:
            return ("%" + flags + "s") % format_float_v(a)
        return ("%" + flags + verb.lower() if verb == "F" else "%" + flags + verb) % a
    if verb == "t" and isinstance(a, bool):
        return ("%" + flags + "s") % ("true" if a else "false")
    return _bad_verb(verb, a, flags)


def _printf(fmt: str, *args: Any) -> str:
    used = 0

    def repl(m: re.Match[str]) -> str:
        nonlocal used
        flags, verb = m.group(1), m.group(2)
        if verb == "%":
            return "%"
        if any(int(n) > MAX_TEMPLATE_OUTPUT for n in re.findall(r"\d+", flags)):
            raise TemplateError(f"printf: width or precision in %{flags}{verb} exceeds {MAX_TEMPLATE_OUTPUT}")
        if used >= len(args):
            return f"%!{verb}(MISSING)"
        used += 1
        return _fmt_one(verb, flags, args[used - 1])

    out = re.sub(r"%([-+# 0-9.]*)([a-zA-Z%])", repl, fmt)
    if used < len(args):
        out += "%!(EXTRA " + ", ".join(f"{_type_name(a)}={_sprint(a)}" for a in args[used:]) + ")"
    return out


def _upper_rune(c: str) -> str:
    u = c.upper()
    return u if len(u) == 1 else c  # Go maps one rune to one rune: "ß" stays "ß"


def _lower_rune(c: str) -> str:
    if c == "\u0130":  # Go's unicode.ToLower("İ") is "i"; Python's adds a combining dot
        return "i"
    low = c.lower()
    return low if len(low) == 1 else c


def _upper(s: str) -> str:
    return s.upper() if s.isascii() else "".join(map(_upper_rune, s))


def _lower(s: str) -> str:
    return s.lower() if s.isascii() else "".join(map(_lower_rune, s))


def _is_separator(c: str) -> bool:
    """Go's strings.Title separator: ASCII other than letters, digits and ``_``; beyond ASCII, spaces."""
    if c <= "\x7f":
        return not (c.isalnum() or c == "_")
    if c.isalpha() or c.isdecimal():
        return False
    return c.isspace()


def _title(s: str) -> str:
    """Go's ``strings.Title``: a letter after a separator becomes title case (``o'neil`` -> ``O'Neil``)."""
    out, prev = [], " "
    for c in s:
        if _is_separator(prev):
            t = c.title()
            out.append(t if len(t) == 1 else c)
        else:
            out.append(c)
        prev = c
    return "".join(out)


def _untitle(s: str) -> str:
    """sprig's ``untitle`` (goutils Uncapitalize): the first letter of each space-separated word lowered."""
    out, prev = [], " "
    for c in s:
        out.append(_lower_rune(c) if prev.isspace() else c)
        prev = c
    return "".join(out)


def _bytes_slice(s: str, start: int | None, end: int | None) -> str:
    # sprig slices Go strings by byte; a cut inside a character leaves invalid UTF-8, which
    # Go's JSON encoding shows as U+FFFD, as does this decoding.
    text = s.encode("utf-8", "surrogatepass")[start:end].decode("utf-8", "surrogateescape")
    return re.sub("[\udc80-\udcff]", "\ufffd", text)  # one U+FFFD per invalid byte, as Go's JSON shows it


def _trunc(c: int, s: str) -> str:
    n = len(s.encode("utf-8", "surrogatepass"))
    if c < 0 and n + c > 0:
        return _bytes_slice(s, n + c, None)
    if c >= 0 and n > c:
        return _bytes_slice(s, None, c)
    return s


def _substr(start: int, end: int, s: str) -> str:
    n = len(s.encode("utf-8", "surrogatepass"))
    if start < 0:
        if end < 0 or end > n:
            raise TemplateError(f"error calling substr: runtime error: slice bounds out of range [:{end}]")
        return _bytes_slice(s, None, end)
    if end < 0 or end > n:
        if start > n:
            raise TemplateError(f"error calling substr: runtime error: slice bounds out of range [{start}:{n}]")
        return _bytes_slice(s, start, None)
    if start > end:
        raise TemplateError(f"error calling substr: runtime error: slice bounds out of range [{start}:{end}]")
    return _bytes_slice(s, start, end)


_B64 = re.compile(r"[A-Za-z0-9+/]*")


def _b64dec(s: str) -> str:
    """sprig's b64dec: the decoded text, or Go's error text (it returns the error as the value)."""
    body = s.rstrip("\r\n")
    m = _B64.match(body)
    end = m.end() if m else 0
    pad = body[end:]
    if pad not in ("", "=", "==") or (pad and (end + len(pad)) % 4) or (not pad and end % 4):
        bad = end if pad not in ("", "=", "==") else (end // 4) * 4 + min(end % 4, 2) if end % 4 else end
        return f"illegal base64 data at input byte {bad}"
    try:
        return base64.b64decode(body, validate=True).decode("utf-8", "replace")
    except ValueError as err:
        return f"illegal base64 data ({err})"


def _default(d: Any, *given: Any) -> Any:
    v = given[0] if given else None
    return v if truthy(v) else d


def _go_split(s: str, sep: str) -> list[str]:
    """Go's strings.Split: an empty separator splits into characters."""
    return list(s) if sep == "" else s.split(sep)


def _split(sep: Any, s: Any) -> dict[str, str]:
    return {f"_{i}": part for i, part in enumerate(_go_split(s, sep))}


def _from_json(s: str) -> Any:
    """sprig's fromJson: the decoded value (numbers float64), or nil when it does not parse."""
    try:
        return _as_go(json.loads(s))
    except ValueError:
        return None


def _eq(a: Any, b: Any) -> bool:
    """Go's ``eq``: nil or a missing key equals nothing (no error); other kinds must match."""
    if a is None or a is NOVALUE or b is None or b is NOVALUE:
        return (a is None or a is NOVALUE) and (b is None or b is NOVALUE)
    x, y = _cmp(a, b)
    return bool(x == y)


def _dict(*kv: Any) -> dict[str, Any]:
    return {go_format(kv[i]): (kv[i + 1] if i + 1 < len(kv) else "") for i in range(0, len(kv), 2)}


def _indent(n: Any, s: Any) -> str:
    if _to_int(n) < 0:
        raise TemplateError("error calling indent: strings: negative Repeat count")
    width, text = _to_int(n), go_format(s)
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


def _go_json_float(f: float) -> str:
    """encoding/json's float64: like JavaScript, an exponent only below 1e-6 or from 1e21."""
    if not math.isfinite(f):
        raise TemplateError(f"json: unsupported value: {format_float_v(f)}")
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        mant, exp = repr(f).split("e") if "e" in repr(f) else (repr(f), "0")
        mant = mant[:-2] if mant.endswith(".0") else mant
        e = int(exp)
        return f"{mant}e{'-' if e < 0 else '+'}{abs(e)}"
    return format_float_f(f)


_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _go_json_str(s: str, escape_html: bool) -> str:
    out = json.dumps(s, ensure_ascii=False)
    if escape_html:
        out = re.sub("[<>&\u2028\u2029]", lambda m: _HTML_ESCAPES[m.group()], out)
    else:
        out = out.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return out


def go_json(v: Any, escape_html: bool = True, indent: str = "", level: int = 0) -> str:
    """Go's ``json.Marshal`` (``MarshalIndent`` with ``indent``): sorted keys, Go's numbers,
    ``<``, ``>``, ``&`` escaped unless ``escape_html`` is false."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_json_float(v)
    if isinstance(v, str):
        return _go_json_str(v, escape_html)
    nl = "\n" + indent * (level + 1) if indent else ""
    end = "\n" + indent * level if indent else ""
    colon = ": " if indent else ":"
    if isinstance(v, (list, tuple)):
        if not v:
            return "[]"
        return "[" + ",".join(nl + go_json(x, escape_html, indent, level + 1) for x in v) + end + "]"
    if isinstance(v, dict):
        if not v:
            return "{}"
        return "{" + ",".join(nl + _go_json_str(str(k), escape_html) + colon + go_json(v[k], escape_html, indent,
                                                                                         level + 1)
                              for k in sorted(v)) + end + "}"
    return _go_json_str(str(v), escape_html)


def _json_or_str(v: Any) -> Any:
    return None if v is NOVALUE else v


FUNCS: dict[str, Callable[..., Any]] = {
    # Go builtins
    "eq": lambda a, *bs: any(_eq(a, b) for b in bs),
    "ne": lambda a, b: not _eq(a, b),
    "lt": lambda a, b: _cmp(a, b, True)[0] < b,
    "le": lambda a, b: _cmp(a, b, True)[0] <= b,
    "gt": lambda a, b: _cmp(a, b, True)[0] > b,
    "ge": lambda a, b: _cmp(a, b, True)[0] >= b,
    "not": lambda a: not truthy(a),
    "len": lambda a: _len(a),
    "index": _index,
    "print": lambda *a: "".join(go_format(x) for x in a),
    "println": lambda *a: " ".join(go_format(x) for x in a) + "\n",
    "printf": lambda f, *a: _printf(go_format(f), *a),
    "urlquery": lambda *a: quote_plus("".join(go_format(x) for x in a)),
    # sprig: strings
    "upper": _upper,
    "lower": _lower,
    "title": _title,
    "untitle": _untitle,
    "trim": lambda s: go_format(s).strip(),
    "trimAll": lambda c, s: go_format(s).strip(go_format(c)),
    "trimPrefix": lambda p, s: go_format(s).removeprefix(go_format(p)),
    "trimSuffix": lambda p, s: go_format(s).removesuffix(go_format(p)),
    "trunc": _trunc,
    "substr": _substr,
    "replace": _replace,
    "repeat": _repeat,
    "nospace": lambda s: re.sub(r"\s", "", go_format(s)),
    "contains": lambda sub, s: go_format(sub) in go_format(s),
    "hasPrefix": lambda p, s: go_format(s).startswith(go_format(p)),
    "hasSuffix": lambda p, s: go_format(s).endswith(go_format(p)),
    "quote": lambda *a: " ".join(json.dumps(_sprint(x), ensure_ascii=False) for x in a if not _nil(x)),
    "squote": lambda *a: " ".join(f"'{_sprint(x)}'" for x in a if not _nil(x)),
    "cat": lambda *a: " ".join(_sprint(x) for x in a if not _nil(x)),
    "indent": _indent,
    "nindent": lambda n, s: "\n" + _indent(n, s),
    "split": _split,
    "splitList": lambda sep, s: _go_split(s, sep),
    "join": lambda sep, lst: sep.join(_strslice(lst)),
    "toString": _sprint,
    # sprig: encoding
    "b64enc": lambda s: base64.b64encode(go_format(s).encode()).decode(),
    "b64dec": _b64dec,
    "toJson": lambda v: go_json(_json_or_str(v)),
    "toRawJson": lambda v: go_json(_json_or_str(v), escape_html=False),
    "toPrettyJson": lambda v: go_json(_json_or_str(v), indent="  "),
    "fromJson": lambda s: _from_json(s),
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
    "first": lambda lst: _list_arg("first", lst)[0] if lst else None,
    "last": lambda lst: _list_arg("last", lst)[-1] if lst else None,
    "dict": _dict,
    "get": lambda d, k: d.get(go_format(k), "") if isinstance(d, dict) else "",
    "hasKey": lambda d, k: isinstance(d, dict) and go_format(k) in d,
    "keys": lambda *ds: [k for d in ds if _map_arg(d) for k in d],
}


def _and(*args: Any) -> Any:
    for a in args:
        if not truthy(a):
            return a
    return args[-1]


def _or(*args: Any) -> Any:
    for a in args:
        if truthy(a):
            return a
    return args[-1]


FUNCS["and"] = _and
FUNCS["or"] = _or

# Go checks each argument against the function's parameter types: a float64 from JSON, a
# nil or a missing key given where sprig wants a string or an int is an error, not text.
# s: string, i: int, *: the rest is variadic interface{}; functions not listed take interface{}.
SIGNATURES: dict[str, str] = {
    "upper": "s", "lower": "s", "title": "s", "untitle": "s", "trim": "s", "nospace": "s", "b64enc": "s",
    "b64dec": "s", "sha1sum": "s", "sha256sum": "s", "atoi": "s", "fromJson": "s",
    "trimAll": "ss", "trimPrefix": "ss", "trimSuffix": "ss", "contains": "ss", "hasPrefix": "ss",
    "hasSuffix": "ss", "split": "ss", "splitList": "ss", "replace": "sss",
    "trunc": "is", "repeat": "is", "indent": "is", "nindent": "is", "substr": "iis", "join": "s.",
    "printf": "s*", "ternary": "..b",
}
_KIND_NAMES = {"s": "string", "i": "int", "b": "bool"}


def _go_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return type(v).__name__


def _check_args(name: str, args: list[Any]) -> None:
    sig = SIGNATURES.get(name)
    if sig is None:
        return
    for kind, arg in zip(sig, args, strict=False):
        if kind in ".*":
            if kind == "*":
                return
            continue
        want = _KIND_NAMES[kind]
        if arg is None or arg is NOVALUE:
            raise TemplateError(f"error calling {name}: invalid value; expected {want}")
        ok = (kind == "s" and isinstance(arg, str)) or (kind == "b" and isinstance(arg, bool)) or (
            kind == "i" and isinstance(arg, int) and not isinstance(arg, bool))
        if not ok:
            raise TemplateError(f"wrong type for value; expected {want}; got {_go_type(arg)}")


def _as_go(v: Any) -> Any:
    """Decoded JSON as Go's ``gjson Value()`` gives it to a template: every number a float64."""
    if type(v) is int:
        return float(v)
    if isinstance(v, list):
        return [_as_go(x) for x in v]
    if isinstance(v, dict):
        return {k: _as_go(x) for k, x in v.items()}
    return v


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
        data = _as_go(data)
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
            if value is not None and value is not NOVALUE and not isinstance(value, (list, dict)):
                raise TemplateError(f"range can't iterate over {_sprint(value)}")
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
                _check_args(head.name, args)
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
