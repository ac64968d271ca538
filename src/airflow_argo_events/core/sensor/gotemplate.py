"""Go ``text/template`` with sprig's functions, for dataTemplate/contextTemplate.

Supported: ``{{ pipeline }}`` with ``|``, fields (``.Input.body.name``), variables
(``$x :=``, ``$x =``, ``range $i, $v :=``, ``$`` for the data), string / raw-string /
number / bool literals, parenthesised pipelines, ``{{- -}}`` trimming,
``if``/``else if``/``else``, ``with``, ``range`` (over lists and maps) and ``end``.
Functions: Go's builtins (``eq ne lt le gt ge and or not len index print printf
println urlquery``) and sprig 3.3.0's, except date/time, semver, crypto, network and a few
string ones (the list is in docs/reference/filters.md; ``FUNCS`` holds them). Anything else
is a parse error naming the function. ``env``/``expandenv`` see an empty environment.
Templates are compiled once.

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
from airflow_argo_events.core.sensor.paths import go_value as _as_go

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


def _go_sprint(args: tuple[Any, ...]) -> str:
    """``fmt.Sprint``: a space between two operands when neither is a string; a nil or a
    missing key given as an argument prints ``<nil>``."""
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(_sprint(a))
    return "".join(out)


_LATIN1_SPACES = frozenset(b"\t\n\v\f\r \x85\xa0")


def _nospace(s: str) -> str:
    """sprig's nospace (goutils DeleteWhiteSpace) works byte by byte: each byte becomes the
    rune of that number (so text beyond ASCII comes out as Latin-1 mojibake, as in Argo), and
    the bytes that are spaces as such runes are dropped. With nothing to drop, the string
    comes back unchanged."""
    raw = s.encode("utf-8", "surrogatepass")
    kept = [b for b in raw if b not in _LATIN1_SPACES]
    if len(kept) == len(raw):
        return s
    return "".join(map(chr, kept))


def _go_float(f: float) -> str:
    return format_float_v(f)


def truthy(v: Any) -> bool:
    if v is None or v is NOVALUE:
        return False
    if isinstance(v, (bool, int, float, str, list, dict, bytes)):
        return bool(v)
    return True


# ---------------------------------------------------------------- functions


_I64 = 1 << 63


class Int64(int):
    """A Go ``int64`` (what sprig's math returns): an int, named ``int64`` in fmt's messages."""


def _int64(n: int) -> Int64:
    """Go's int64 arithmetic wraps around."""
    return Int64(((n + _I64) % (1 << 64)) - _I64)


_GO_INT = re.compile(r"[+-]?(?:0[xX](?:_?[0-9a-fA-F])+|0[bB](?:_?[01])+|0[oO](?:_?[0-7])+|0(?:_?[0-7])+|"
                     r"[1-9](?:_?[0-9])*|0)")
_GO_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|"
                       r"[nN][aA][nN])")


def _parse_int(text: str) -> int | None:
    """``strconv.ParseInt(s, 0, 64)``: Go's integer literal syntax (``0x1f``, ``010`` is 8, ``1_000``)."""
    if not _GO_INT.fullmatch(text):
        return None
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-").replace("_", "")
    if len(body) > 1 and body[0] == "0" and body[1] in "01234567":
        n = int(body, 8)
    else:
        n = int(body, 0)
    n *= sign
    return n if -_I64 <= n < _I64 else None


def _trim_zero_decimal(s: str) -> str:
    """cast's trimZeroDecimal: ``10.00`` -> ``10`` (``10.`` stays)."""
    found_zero = False
    for i in range(len(s), 0, -1):
        c = s[i - 1]
        if c == "." and found_zero:
            return s[:i - 1]
        if c == "0":
            found_zero = True
        elif c != ".":
            return s
    return s


def _to_float(v: Any) -> float:
    """sprig's ``float64`` (cast.ToFloat64): numbers and bools convert, a string must parse
    whole as Go's ParseFloat reads it (no spaces), anything else is 0."""
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and _GO_FLOAT.fullmatch(v):
        f = float(v)
        return 0.0 if math.isinf(f) and "n" not in v.lower() else f  # out of range: an error, so 0
    return 0.0


def _to_int(v: Any) -> int:
    """sprig's toInt64 (cast.ToInt64): floats truncate, strings parse as Go integer literals
    (after trimming a ``.000`` tail), anything else is 0."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        # Go's int64(float64) on amd64: NaN and out-of-range values give math.MinInt64.
        return int(v) if math.isfinite(v) and -(2.0**63) <= v < 2.0**63 else -(1 << 63)
    if isinstance(v, str):
        n = _parse_int(_trim_zero_decimal(v))
        return 0 if n is None else n
    return 0


def _atoi(v: str) -> int:
    """sprig's atoi (strconv.Atoi, error dropped): base 10 only, clamped to int64, else 0."""
    if not re.fullmatch(r"[+-]?[0-9]+", v):
        return 0
    return max(-_I64, min(_I64 - 1, int(v)))


def _mod(a: Any, b: Any) -> Int64:
    x, y = _to_int(a), _to_int(b)
    if not y:
        raise TemplateError("error calling mod: runtime error: integer divide by zero")
    r = abs(x) % abs(y)
    return _int64(-r if x < 0 else r)  # Go's % takes the dividend's sign


def _div(a: Any, b: Any) -> Int64:
    x, y = _to_int(a), _to_int(b)
    if not y:
        raise TemplateError("error calling div: runtime error: integer divide by zero")
    q = abs(x) // abs(y)
    return _int64(-q if (x < 0) != (y < 0) else q)  # Go truncates toward zero


def _kind(v: Any) -> type:
    return int if isinstance(v, int) and not isinstance(v, bool) else type(v)


def _cmp(a: Any, b: Any, ordered: bool = False) -> tuple[Any, Any]:
    """Go's comparison rules: same basic kind (an int literal and a float64 are not), and
    ``lt``/``le``/``gt``/``ge`` only on numbers and strings."""
    if a is None or a is NOVALUE or b is None or b is NOVALUE or (
            ordered and (isinstance(a, (bool, list, dict)) or isinstance(b, (bool, list, dict)))):
        raise TemplateError("invalid type for comparison")
    if _kind(a) is not _kind(b):  # Go compares int and int64 (both integers), not int and float64
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


class _StrMap(dict):  # type: ignore[type-arg]
    """A Go ``map[string]string`` (sprig's split): not a ``map[string]interface{}``."""


def _map_arg(v: Any) -> bool:
    if v is NOVALUE:
        return False  # a missing key: Go passes the zero map, no keys
    if v is None:  # a JSON null is a nil interface{}: the wrong type
        raise TemplateError("wrong type for value; expected map[string]interface {}; got interface {}")
    if isinstance(v, _StrMap):
        raise TemplateError("wrong type for value; expected map[string]interface {}; got map[string]string")
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


def _fmt_one(verb: str, flags: str, a: Any, nested: bool = False) -> str:
    """One ``fmt`` verb applied to one value, with Go's ``%!verb(type=value)`` for a mismatch.
    A nil inside a list or map prints ``<nil>`` whatever the verb."""
    if nested and a is None:
        return "<nil>"
    if isinstance(a, list):
        return "[" + " ".join(_fmt_one(verb, flags, x, True) for x in a) + "]"
    if isinstance(a, dict):
        return "map[" + " ".join(f"{_fmt_one(verb, flags, k, True)}:{_fmt_one(verb, flags, a[k], True)}"
                                 for k in sorted(a)) + "]"
    if verb == "v":
        return ("%" + flags + "s") % _sprint(a)
    if a is None or a is NOVALUE:
        return _bad_verb(verb, a, flags)
    if verb == "s" and isinstance(a, str):
        return ("%" + flags + "s") % a
    if verb == "q" and isinstance(a, str):
        return ("%" + flags + "s") % json.dumps(a, ensure_ascii=False)
    if verb == "q" and isinstance(a, int) and not isinstance(a, bool):
        return ("%" + flags + "s") % _quote_rune(a)
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


_RUNE_ESCAPES = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v", 39: "\\'", 92: "\\\\"}


def _quote_rune(n: int) -> str:
    """Go's ``%q`` of an integer: ``strconv.QuoteRune`` (``'a'``, ``'\\x03'``, ``'\\u00a0'``)."""
    if not 0 <= n <= 0x10FFFF or 0xD800 <= n <= 0xDFFF:
        n = 0xFFFD
    if n in _RUNE_ESCAPES:
        return f"'{_RUNE_ESCAPES[n]}'"
    c = chr(n)
    if c.isprintable() or c == " ":
        return f"'{c}'"
    if n < 0x80:
        return f"'\\x{n:02x}'"
    return f"'\\u{n:04x}'" if n < 0x10000 else f"'\\U{n:08x}'"


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


def go_upper(s: str) -> str:
    """Go's ``strings.ToUpper``: rune by rune, one rune to one rune."""
    return s.upper() if s.isascii() else "".join(map(_upper_rune, s))


def go_lower(s: str) -> str:
    """Go's ``strings.ToLower``: rune by rune, one rune to one rune."""
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
        bad = end if pad not in ("", "=", "==") else (end // 4) * 4 + (min(end % 4, 2) if pad else 0) \
            if end % 4 else end
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
    return _StrMap({f"_{i}": part for i, part in enumerate(_go_split(s, sep))})


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
    "print": lambda *a: _go_sprint(a),
    "println": lambda *a: " ".join(_sprint(x) for x in a) + "\n",
    "printf": lambda f, *a: _printf(go_format(f), *a),
    "urlquery": lambda *a: quote_plus(_go_sprint(tuple(NO_VALUE if _nil(x) else x for x in a))),
    # sprig: strings
    "upper": go_upper,
    "lower": go_lower,
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
    "nospace": lambda s: _nospace(s),
    "contains": lambda sub, s: go_format(sub) in go_format(s),
    "hasPrefix": lambda p, s: go_format(s).startswith(go_format(p)),
    "hasSuffix": lambda p, s: go_format(s).endswith(go_format(p)),
    "quote": lambda *a: " ".join(json.dumps(_sprint(x), ensure_ascii=False) for x in a if not _nil(x)),
    "squote": lambda *a: " ".join(f"'{_sprint(x)}'" for x in a if not _nil(x)),
    "cat": lambda *a: " ".join(_sprint(x) for x in a if not _nil(x)),
    "indent": _indent,
    "nindent": lambda n, s: "\n" + _indent(n, s),
    "split": _split,
    "splitList": lambda sep, s: StrList(_go_split(s, sep)),
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
    "add": lambda *a: _int64(sum(_to_int(x) for x in a)),
    "sub": lambda a, b: _int64(_to_int(a) - _to_int(b)),
    "mul": lambda *a: _int64(math.prod(_to_int(x) for x in a)),
    "div": _div,
    "mod": _mod,
    "max": lambda a, *b: Int64(max(_to_int(x) for x in (a, *b))),
    "min": lambda a, *b: Int64(min(_to_int(x) for x in (a, *b))),
    "int": _to_int,
    "int64": lambda v: Int64(_to_int(v)),
    "float64": _to_float,
    "atoi": _atoi,
    # sprig: lists and dicts
    "list": lambda *a: list(a),
    "first": lambda lst: _list_arg("first", lst)[0] if _list_arg("first", lst) else None,
    "last": lambda lst: _list_arg("last", lst)[-1] if _list_arg("last", lst) else None,
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
    if isinstance(v, Int64):
        return "int64"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "[]string" if isinstance(v, StrList) else "[]interface {}"
    if isinstance(v, dict):
        return "map[string]string" if isinstance(v, _StrMap) else "map[string]interface {}"
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
      | (?P<decl>:=|=)
      | (?P<punct>[|(),])
    )""",
    re.X,
)


@dataclass
class _Field:
    root: str  # "." or a variable: "$" (the data), "$x"
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
    decl: tuple[str, ...] = ()  # {{ $x := ... }}, {{ range $i, $v := ... }}
    assign: bool = False  # {{ $x = ... }}: set an existing variable


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
            cmds[-1].append(_Lit(_go_unquote(val)))
        elif kind == "raw":
            cmds[-1].append(_Lit(val[1:-1]))
        elif kind == "num":
            cmds[-1].append(_Lit(float(val) if any(c in val for c in ".eE") else int(val)))
        elif kind == "field":
            if val.startswith("$"):
                root, _, rest = val.partition(".")
                rest = "." + rest if rest else ""
            else:
                root, rest = ".", val
            names = tuple(n for n in rest.split(".") if n)
            cmds[-1].append(_Field(root, names))
        elif kind in ("decl", "punct"):
            raise TemplateError(f"unexpected {val!r} in operand")
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
        if len(cmds) > 1:  # Go accepts a trailing "|" ({{ .x | }})
            cmds.pop()
        else:
            raise TemplateError("empty command")
    return _Pipe(cmds), i


_GO_ESCAPE = re.compile(r"\\(?:([abfnrtv\\\"])|x([0-9a-fA-F]{2})|([0-7]{3})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))", re.S)
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
                   '"': '"'}


def _go_unquote(literal: str) -> str:
    """A Go interpreted string literal (``"a\\tb"``, ``"\\x41"``, ``"\\u00e9"``; a raw tab is fine)."""
    body = literal[1:-1]
    if "\\" not in body:
        return body
    out = bytearray()
    pos = 0
    for m in _GO_ESCAPE.finditer(body):
        out += body[pos:m.start()].encode("utf-8", "surrogatepass")
        simple, hx, octal, u4, u8, bad = m.groups()
        if bad is not None:
            raise TemplateError(f"invalid syntax in string literal {literal[:40]}")
        if simple is not None:
            out += _SIMPLE_ESCAPES[simple].encode()
        elif hx is not None or octal is not None:
            out.append(int(hx, 16) if hx is not None else int(octal, 8) & 0xFF)
        else:
            code = int(u4 or u8, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise TemplateError(f"invalid syntax in string literal {literal[:40]}")
            out += chr(code).encode("utf-8")
        pos = m.end()
    out += body[pos:].encode("utf-8", "surrogatepass")
    return out.decode("utf-8", "replace")


_VAR = re.compile(r"\$[A-Za-z0-9_]*")


def _parse_decl(tokens: list[tuple[str, str]], scope: list[str], in_range: bool) -> _Pipe:
    """A pipeline with its declaration (``$x :=``, ``$x =``, ``range $i, $v :=``), checking
    that every variable it uses is declared (Go's parser refuses an undefined one)."""
    decl: list[str] = []
    i = 0
    while i < len(tokens) and tokens[i][0] == "field" and _VAR.fullmatch(tokens[i][1]):
        if i + 1 < len(tokens) and tokens[i + 1][0] == "decl":
            decl.append(tokens[i][1])
            break
        if in_range and not decl and i + 2 < len(tokens) and tokens[i + 1] == ("punct", ","):
            decl.append(tokens[i][1])
            i += 2
            continue
        decl = []
        break
    else:
        decl = []
    assign = False
    if decl:
        op = tokens[i + 1][1]
        assign = op == "="
        if assign:
            for name in decl:
                if name not in scope:
                    raise TemplateError(f'undefined variable "{name}"')
        tokens = tokens[i + 2:]
    pipe, _ = _parse_pipe(tokens)
    _check_vars(pipe, scope)
    if decl and not assign:
        scope.extend(decl)
    pipe.decl, pipe.assign = tuple(decl), assign
    return pipe


def _check_vars(pipe: _Pipe, scope: list[str]) -> None:
    for cmd in pipe.cmds:
        for op in cmd:
            if isinstance(op, _Field) and op.root != "." and op.root not in scope:
                raise TemplateError(f'undefined variable "{op.root}"')
            if isinstance(op, _Pipe):
                _check_vars(op, scope)


def _parse(text: str) -> list[Any]:
    root: list[Any] = []
    stack: list[tuple[_Block | None, list[Any]]] = [(None, root)]
    scope = ["$"]  # declared variables; a block's are dropped at its {{end}}
    marks: list[int] = []
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
            marks.append(len(scope))
            pipe = _parse_decl(tokens[1:], scope, head == "range")
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
                pipe = _parse_decl(tokens[2:], scope, False)
                inner = _Block("if", pipe)
                block.orelse.append(inner)
                stack[-1] = (inner, inner.body)
            else:
                stack[-1] = (block, block.orelse)
        elif head == "end":
            if len(stack) == 1:
                raise TemplateError("unexpected {{end}}")
            stack.pop()
            del scope[marks.pop():]
        else:
            stack[-1][1].append(_parse_decl(tokens, scope, False))
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
            self._run(self._nodes, data, [["$", data]], out)
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

    # ``vars`` is Go's variable stack: [name, value] pairs, ``$`` first; a block's variables
    # are dropped when it ends, a range body's after each iteration.
    def _run(self, nodes: list[Any], dot: Any, vars: list[list[Any]], out: _Output) -> None:
        for node in nodes:
            self._step()
            if isinstance(node, str):
                out.add(node)
            elif isinstance(node, _Pipe):
                value = self._pipe(node, dot, vars)
                if not node.decl:  # a declaration prints nothing
                    out.add(go_format(value))
            else:
                mark = len(vars)
                try:
                    self._block(node, dot, vars, out)
                finally:
                    del vars[mark:]

    def _block(self, b: _Block, dot: Any, vars: list[list[Any]], out: _Output) -> None:
        value = self._pipe(b.pipe, dot, vars)
        if b.kind == "range":
            if value is not None and value is not NOVALUE and not isinstance(value, (list, dict)):
                raise TemplateError(f"range can't iterate over {_sprint(value)}")
            if value is None or value is NOVALUE or not value:
                self._run(b.orelse, dot, vars, out)
                return
            pairs = [(k, value[k]) for k in sorted(value)] if isinstance(value, dict) else list(enumerate(value))
            mark = len(vars)
            for index, item in pairs:
                if b.pipe.decl:
                    vars[mark - 1][1] = item
                    if len(b.pipe.decl) > 1:
                        vars[mark - 2][1] = index
                self._run(b.body, item, vars, out)
                del vars[mark:]
            return
        if truthy(value):
            self._run(b.body, value if b.kind == "with" else dot, vars, out)
        else:
            self._run(b.orelse, dot, vars, out)

    def _operand(self, op: Any, dot: Any, vars: list[list[Any]]) -> Any:
        if isinstance(op, _Lit):
            return op.value
        if isinstance(op, _Field):
            if op.root == ".":
                return _lookup(dot, op.names)
            return _lookup(_var(vars, op.root), op.names)
        if isinstance(op, _Pipe):
            return self._pipe(op, dot, vars)
        if isinstance(op, _Call):
            return FUNCS[op.name]()
        raise TemplateError(f"bad operand {op!r}")

    def _pipe(self, pipe: _Pipe, dot: Any, vars: list[list[Any]]) -> Any:
        result: Any = NOVALUE
        for n, cmd in enumerate(pipe.cmds):
            head = cmd[0]
            if isinstance(head, _Call):
                args = [self._operand(a, dot, vars) for a in cmd[1:]]
                if n > 0:  # Go digs a nil interface{} down to no value: a map parameter gets the empty map
                    args.append(NOVALUE if result is None else result)
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
                result = self._operand(head, dot, vars)
        for name in pipe.decl:
            if pipe.assign:
                _var(vars, name)  # must exist
                for pair in reversed(vars):
                    if pair[0] == name:
                        pair[1] = result
                        break
            else:
                vars.append([name, result])
        return result


def _var(vars: list[list[Any]], name: str) -> Any:
    for pair in reversed(vars):
        if pair[0] == name:
            return pair[1]
    raise TemplateError(f'undefined variable "{name}"')


# ---------------------------------------------------------------- more of sprig 3.3.0
# The rest of sprig's FuncMap that is deterministic and safe here. Not provided (a parse
# error naming the function): date and time functions, semver, crypto and certificates
# (bcrypt, htpasswd, genCA, encryptAES, ...), getHostByName (network), camelcase,
# snakecase, kebabcase, swapcase, wrap, wrapWith, seq, merge, mergeOverwrite, urlParse, urlJoin.


def _list_of(name: str, v: Any) -> list[Any]:
    """sprig's list functions take any slice; anything else panics with this message."""
    if isinstance(v, list):
        return v
    if _nil(v):
        raise TemplateError(f"error calling {name}: runtime error: invalid memory address or nil pointer dereference")
    raise TemplateError(f"error calling {name}: Cannot {name} on type {_go_kind(v)}")


def _go_kind(v: Any) -> str:
    """reflect's Kind name, as sprig's messages and kindOf print it."""
    if _nil(v):
        return "invalid"
    if isinstance(v, list):
        return "slice"
    if isinstance(v, dict):
        return "map"
    return _go_type(v)


class StrList(list):  # type: ignore[type-arg]
    """A Go ``[]string`` (splitList, sortAlpha, toStrings): prints and ranges like a list."""


def _check_len(name: str, n: int) -> int:
    if n > MAX_TEMPLATE_OUTPUT:
        raise TemplateError(f"{name}: {n} items exceeds the {MAX_TEMPLATE_OUTPUT} limit")
    return n


def _until_step(start: Any, stop: Any, step: Any) -> list[int]:
    a, b, c = _to_int(start), _to_int(stop), _to_int(step)
    if (b < a and c >= 0) or (b >= a and c <= 0):
        return []
    _check_len("untilStep", abs(b - a) // abs(c))
    return list(range(a, b, c))


def _abbrev(width: int, s: str) -> str:
    if width < 4 or len(s.encode()) <= width:
        return s
    return _bytes_slice(s, None, width - 3) + "..."


def _abbrevboth(left: int, right: int, s: str) -> str:
    """goutils.AbbreviateFull (sprig returns the string unchanged on a bad width)."""
    if right < 4 or (left > 0 and right < 7):
        return s
    raw = s.encode()
    n = len(raw)
    if n <= right:
        return s
    offset = min(left, n)
    if n - offset < right - 3:
        offset = n - (right - 3)
    if offset <= 4:
        return _bytes_slice(s, None, right - 3) + "..."
    if offset + right - 3 < n:
        return "..." + _abbrev(right - 3, _bytes_slice(s, offset, None))
    return "..." + _bytes_slice(s, n - (right - 3), None)


def _initials(s: str) -> str:
    """goutils.Initials: byte by byte, the first byte after whitespace (each byte as a rune)."""
    out, gap = [], True
    for b in s.encode("utf-8", "surrogatepass"):
        if b in _LATIN1_SPACES:
            gap = True
        elif gap:
            out.append(chr(b))
            gap = False
    return "".join(out)


def _splitn(sep: str, n: int, s: str) -> dict[str, str]:
    if n == 0:
        parts: list[str] = []
    elif n < 0:
        parts = _go_split(s, sep)
    elif sep == "":
        chars = list(s)
        parts = chars[:n - 1] + (["".join(chars[n - 1:])] if len(chars) >= n else [])
    else:
        parts = s.split(sep, n - 1)
    return _StrMap({f"_{i}": p for i, p in enumerate(parts)})


def _b32dec(s: str) -> str:
    try:
        return base64.b32decode(s.encode(), casefold=False).decode("utf-8", "replace")
    except ValueError as err:
        return f"illegal base32 data ({err})"


def _dec(v: Any) -> Any:
    from decimal import Decimal

    f = _to_float(v)
    return Decimal(repr(f)) if math.isfinite(f) else Decimal(0)


def _decimal_op(name: str, first: Any, rest: tuple[Any, ...], op: Callable[[Any, Any], Any]) -> float:
    """sprig's float math (shopspring/decimal on each argument's shortest digits)."""
    acc = _dec(first)
    for x in rest:
        acc = op(acc, _dec(x))
    return float(acc)


def _divf(a: Any, *b: Any) -> float:
    from decimal import ROUND_HALF_UP, Decimal

    acc = _dec(a)
    for x in b:
        d = _dec(x)
        if not d:
            raise TemplateError("error calling divf: decimal division by 0")
        acc = (acc / d).quantize(Decimal(1).scaleb(-16), rounding=ROUND_HALF_UP)
    return float(acc)


def _round(a: Any, places: Any, *on: Any) -> float:
    round_on = _to_float(on[0]) if on else 0.5
    val, p = _to_float(a), _to_float(places)
    pow10 = 10.0 ** p
    digit = pow10 * val
    frac = math.modf(digit)[0]
    return (math.ceil(digit) if frac >= round_on else math.floor(digit)) / pow10


def _to_decimal(v: Any) -> Int64:
    text = _sprint(v)
    if not re.fullmatch(r"[+-]?[0-7]+", text):
        return Int64(0)
    n = int(text, 8)
    return Int64(n) if -_I64 <= n < _I64 else Int64(0)


def _compact(name: str, lst: Any) -> list[Any]:
    return [x for x in _list_of(name, lst) if truthy(x)]


def _uniq(lst: Any) -> list[Any]:
    out: list[Any] = []
    for x in _list_of("uniq", lst):
        if not any(_deep_equal(x, y) for y in out):
            out.append(x)
    return out


def _deep_equal(a: Any, b: Any) -> bool:
    """reflect.DeepEqual: the same Go type and the same contents (an int is not a float64)."""
    if _go_type(a) != _go_type(b) and not (_nil(a) and _nil(b)):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_deep_equal(a[k], b[k]) for k in a)
    return bool(a == b) or (_nil(a) and _nil(b))


def _slice(lst: Any, *idx: Any) -> list[Any]:
    items = _list_of("slice", lst)
    start = _to_int(idx[0]) if idx else 0
    end = _to_int(idx[1]) if len(idx) > 1 else len(items)
    if not 0 <= start <= end <= len(items):
        raise TemplateError(f"error calling slice: runtime error: slice bounds out of range [{start}:{end}]")
    return items[start:end]


def _chunk(size: Any, lst: Any) -> list[list[Any]]:
    items, n = _list_of("chunk", lst), _to_int(size)
    if n <= 0:
        raise TemplateError("error calling chunk: runtime error: integer divide by zero")
    return [items[i:i + n] for i in range(0, len(items), n)]


def _dict_arg(name: str, d: Any) -> dict[str, Any]:
    if isinstance(d, dict) and not isinstance(d, _StrMap):
        return d
    raise TemplateError(f"wrong type for value; expected map[string]interface {{}}; got {_type_name(d)}")


def _set(d: Any, key: str, value: Any) -> dict[str, Any]:
    m = _dict_arg("set", d)
    m[key] = value  # sprig changes the dict in place and returns it
    return m


def _unset(d: Any, key: str) -> dict[str, Any]:
    m = _dict_arg("unset", d)
    m.pop(key, None)
    return m


def _dig(*args: Any) -> Any:
    """sprig's dig: keys..., a default, then the dict."""
    if len(args) < 3:
        raise TemplateError("error calling dig: dig needs at least three arguments")
    *keys, default, d = args
    node = _dict_arg("dig", d)
    for i, k in enumerate(keys):
        k = _sprint(k)
        if not isinstance(node, dict) or k not in node:
            return default
        node = node[k]
        if i < len(keys) - 1 and not isinstance(node, dict):
            raise TemplateError(f"error calling dig: interface conversion: interface {{}} is {_go_type(node)}, "
                                "not map[string]interface {}")
    return node


def _deep_copy(v: Any) -> Any:
    import copy

    return copy.deepcopy(v)


def _go_path_clean(p: str) -> str:
    """Go's path.Clean: lexical, ``//a/./b/../c/`` -> ``/a/c``."""
    if p == "":
        return "."
    rooted = p.startswith("/")
    out: list[str] = []
    for part in p.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    joined = "/".join(out)
    return ("/" + joined) if rooted else (joined or ".")


def _go_path_base(p: str) -> str:
    if p == "":
        return "."
    p = p.rstrip("/")
    return "/" if p == "" else p.rsplit("/", 1)[-1]


def _go_path_dir(p: str) -> str:
    return _go_path_clean(p[:p.rfind("/") + 1])


def _go_path_ext(p: str) -> str:
    for i in range(len(p) - 1, -1, -1):
        if p[i] == "/":
            break
        if p[i] == ".":
            return p[i:]
    return ""


def _expand_env(s: str) -> str:
    """os.ExpandEnv with an empty environment: every ``$NAME``/``${NAME}`` is empty (the
    sensor's environment holds connection secrets; templates never see it)."""
    out, i, j = [], 0, 0
    specials = set("*#$@!?-0123456789")
    while j < len(s):
        if s[j] == "$" and j + 1 < len(s):
            out.append(s[i:j])
            rest = s[j + 1:]
            if rest[0] == "{":
                if len(rest) > 2 and rest[1] in specials and rest[2] == "}":
                    width = 3
                else:
                    close = rest.find("}", 1)
                    width = 1 if close < 0 else (2 if close == 1 else close + 1)
            elif rest[0] in specials:
                width = 1
            else:
                m = re.match(r"[A-Za-z0-9_]*", rest)
                width = m.end() if m else 0
                if width == 0:
                    out.append("$")  # a $ not followed by a name stays
            j += width
            i = j + 1
        j += 1
    return "".join(out) + s[i:] if out else s


def _go_regex(pattern: Any) -> Any:
    from airflow_argo_events.core.sensor.regex import RegexError, go_regex

    try:
        return go_regex(go_format(pattern))
    except RegexError as err:
        raise TemplateError(f"error calling regex function: {err}") from None


def _find_all(rx: Any, s: str, n: int) -> list[tuple[int, int, Any]]:
    """Go's allMatches: leftmost matches, no empty match right after the previous match.
    One ``finditer`` pass (RE2 encodes the subject once; a ``search`` per match would
    re-encode it each time, quadratic on a long subject)."""
    out: list[tuple[int, int, Any]] = []
    prev_end = -1
    for m in rx.finditer(s):
        if n >= 0 and len(out) >= n:
            break
        start, end = m.span()
        if end == start == prev_end:  # an empty match where the last one ended: Go steps on
            continue
        out.append((start, end, m))
        prev_end = end
    return out


def _go_expand(template: str, m: Any) -> str:
    """Go's Regexp.Expand: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``; unknown groups are empty."""
    def group(name: str) -> str:
        try:
            value = m.group(int(name)) if name.isdigit() else m.group(name)
        except (IndexError, KeyError, ValueError, TypeError):
            return ""
        return value or ""

    def repl(mm: re.Match[str]) -> str:
        if mm.group(0) == "$$":
            return "$"
        return group(mm.group(1) or mm.group(2))

    return re.sub(r"\$\$|\$\{([A-Za-z0-9_]+)\}|\$([A-Za-z0-9_]+)", repl, template)


def _regex_replace(pattern: Any, s: str, repl: str, literal: bool) -> str:
    rx = _go_regex(pattern)
    out, pos, size = [], 0, 0
    for start, end, m in _find_all(rx, s, -1):
        piece = repl if literal else _go_expand(repl, m)
        out += (s[pos:start], piece)
        size += start - pos + len(piece)
        _check_size("regexReplaceAll", size)
        pos = end
    out.append(s[pos:])
    return "".join(out)


def _regex_split(pattern: Any, s: str, n: int) -> list[str]:
    rx = _go_regex(pattern)
    if n == 0:
        return []
    if go_format(pattern) and s == "":
        return [""]
    parts: list[str] = []
    beg = end = 0
    for start, stop, _ in _find_all(rx, s, n):
        if n > 0 and len(parts) == n - 1:
            break
        end = start
        if stop != 0:
            parts.append(s[beg:end])
        beg = stop
    if end != len(s):
        parts.append(s[beg:])
    return parts


def _rand(alphabet: str, n: Any) -> str:
    import secrets

    count = _to_int(n)
    _check_size("random string", count)
    return "".join(secrets.choice(alphabet) for _ in range(max(0, count)))


def _rand_int(lo: Any, hi: Any) -> int:
    import secrets

    a, b = _to_int(lo), _to_int(hi)
    if b <= a:
        raise TemplateError("error calling randInt: invalid argument to Intn")
    return a + secrets.randbelow(b - a)


def _go_type_of(v: Any) -> str:
    return _type_name(v)


def _must_from_json(s: str) -> Any:
    try:
        return _as_go(json.loads(s))
    except ValueError as err:
        raise TemplateError(f"error calling mustFromJson: {err}") from None


def _fail(msg: Any) -> Any:
    raise TemplateError(f"error calling fail: {go_format(msg)}")


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

_MORE: dict[str, Callable[..., Any]] = {
    "hello": lambda: "Hello!",
    # strings
    "trimall": lambda c, s: s.strip(c),
    "abbrev": _abbrev,
    "abbrevboth": _abbrevboth,
    "initials": _initials,
    "plural": lambda one, many, n: one if _to_int(n) == 1 else many,
    "splitn": _splitn,
    "toStrings": lambda v: StrList(_strslice(v)),
    "sortAlpha": lambda v: StrList(sorted(_strslice(v), key=lambda t: t.encode("utf-8", "surrogatepass")))
    if isinstance(v, list) else StrList([_sprint(v)]),
    # encoding and hashes
    "sha512sum": lambda s: hashlib.sha512(s.encode()).hexdigest(),
    "adler32sum": lambda s: str(__import__("zlib").adler32(s.encode())),
    "b32enc": lambda s: base64.b32encode(s.encode()).decode(),
    "b32dec": _b32dec,
    "mustToJson": lambda v: go_json(_json_or_str(v)),
    "mustToRawJson": lambda v: go_json(_json_or_str(v), escape_html=False),
    "mustToPrettyJson": lambda v: go_json(_json_or_str(v), indent="  "),
    "mustFromJson": _must_from_json,
    # math
    "add1": lambda v: _int64(_to_int(v) + 1),
    "biggest": lambda a, *b: Int64(max(_to_int(x) for x in (a, *b))),
    "until": lambda n: _until_step(0, n, 1 if _to_int(n) >= 0 else -1),
    "untilStep": _until_step,
    "toDecimal": _to_decimal,
    "addf": lambda *a: _decimal_op("addf", 0, a, lambda x, y: x + y),
    "add1f": lambda v: _decimal_op("add1f", v, (1,), lambda x, y: x + y),
    "subf": lambda a, *b: _decimal_op("subf", a, b, lambda x, y: x - y),
    "mulf": lambda a, *b: _decimal_op("mulf", a, b, lambda x, y: x * y),
    "divf": _divf,
    "maxf": lambda a, *b: max(_to_float(x) for x in (a, *b)),
    "minf": lambda a, *b: min(_to_float(x) for x in (a, *b)),
    "ceil": lambda v: float(math.ceil(_to_float(v))) if math.isfinite(_to_float(v)) else _to_float(v),
    "floor": lambda v: float(math.floor(_to_float(v))) if math.isfinite(_to_float(v)) else _to_float(v),
    "round": _round,
    "randInt": _rand_int,
    # flow and types
    "all": lambda *a: all(truthy(x) for x in a),
    "any": lambda *a: any(truthy(x) for x in a),
    "fail": _fail,
    "typeOf": _go_type_of,
    "typeIs": lambda t, v: t == _go_type_of(v),
    "typeIsLike": lambda t, v: t in (_go_type_of(v), "*" + _go_type_of(v)),
    "kindOf": _go_kind,
    "kindIs": lambda k, v: k == _go_kind(v),
    "deepEqual": _deep_equal,
    "deepCopy": _deep_copy,
    "mustDeepCopy": _deep_copy,
    # the environment: empty (see _expand_env)
    "env": lambda name: "",
    "expandenv": _expand_env,
    # paths
    "base": _go_path_base, "osBase": _go_path_base,
    "dir": _go_path_dir, "osDir": _go_path_dir,
    "clean": _go_path_clean, "osClean": _go_path_clean,
    "ext": _go_path_ext, "osExt": _go_path_ext,
    "isAbs": lambda p: p.startswith("/"), "osIsAbs": lambda p: p.startswith("/"),
    # lists
    "tuple": lambda *a: list(a),
    "append": lambda lst, v: [*_list_of("push", lst), v],
    "push": lambda lst, v: [*_list_of("push", lst), v],
    "prepend": lambda lst, v: [v, *_list_of("prepend", lst)],
    "rest": lambda lst: _list_of("rest", lst)[1:] if _list_of("rest", lst) else None,
    "initial": lambda lst: _list_of("initial", lst)[:-1] if _list_of("initial", lst) else None,
    "reverse": lambda lst: list(reversed(_list_of("reverse", lst))),
    "uniq": _uniq,
    "without": lambda lst, *omit: [x for x in _list_of("without", lst) if not any(_deep_equal(x, o) for o in omit)],
    "has": lambda needle, lst: False if _nil(lst) else any(_deep_equal(needle, x) for x in _list_of("has", lst)),
    "compact": lambda lst: _compact("compact", lst),
    "slice": _slice,
    "concat": lambda *lsts: [x for lst in lsts for x in _list_of("concat", lst)],
    "chunk": _chunk,
    # dicts
    "set": _set,
    "unset": _unset,
    "pluck": lambda name, *ds: [d[name] for d in ds if isinstance(d, dict) and name in d],
    "pick": lambda d, *ks: {k: v for k, v in _dict_arg("pick", d).items() if k in ks},
    "omit": lambda d, *ks: {k: v for k, v in _dict_arg("omit", d).items() if k not in ks},
    "values": lambda d: [v for _, v in sorted(_dict_arg("values", d).items())],
    "dig": _dig,
    # regular expressions (RE2, as Go's regexp)
    "regexMatch": lambda p, s: _go_regex(p).search(s) is not None,
    "regexFind": lambda p, s: next((s[a:b] for a, b, _ in _find_all(_go_regex(p), s, 1)), ""),
    "regexFindAll": lambda p, s, n: [s[a:b] for a, b, _ in _find_all(_go_regex(p), s, _to_int(n))],
    "regexReplaceAll": lambda p, s, r: _regex_replace(p, s, r, False),
    "regexReplaceAllLiteral": lambda p, s, r: _regex_replace(p, s, r, True),
    "regexSplit": lambda p, s, n: _regex_split(p, s, _to_int(n)),
    "regexQuoteMeta": lambda s: re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", s),
    # random (crypto-random, as sprig's)
    "randAlphaNum": lambda n: _rand(_ALNUM, n),
    "randAlpha": lambda n: _rand(_ALNUM[:52], n),
    "randNumeric": lambda n: _rand(_ALNUM[52:], n),
    "randAscii": lambda n: _rand("".join(map(chr, range(32, 127))), n),
    "uuidv4": lambda: str(__import__("uuid").uuid4()),
}
# sprig's must* variants return an error where the plain ones panic: both are a render error here.
for _name in ("first", "last", "rest", "initial", "reverse", "uniq", "without", "has", "compact", "slice",
              "chunk", "append", "push", "prepend"):
    _MORE["must" + _name[0].upper() + _name[1:]] = _MORE.get(_name) or FUNCS[_name]
for _name in ("regexMatch", "regexFind", "regexFindAll", "regexReplaceAll", "regexReplaceAllLiteral", "regexSplit"):
    _MORE["must" + _name[0].upper() + _name[1:]] = _MORE[_name]
FUNCS.update(_MORE)
SIGNATURES.update({
    "trimall": "ss", "abbrev": "is", "abbrevboth": "iis", "initials": "s", "plural": "ssi", "splitn": "sis",
    "sha512sum": "s", "adler32sum": "s", "b32enc": "s", "b32dec": "s", "mustFromJson": "s", "typeIs": "s.",
    "typeIsLike": "s.", "kindIs": "s.", "env": "s", "expandenv": "s", "base": "s", "dir": "s", "clean": "s",
    "ext": "s", "isAbs": "s", "osBase": "s", "osDir": "s", "osClean": "s", "osExt": "s", "osIsAbs": "s",
    "pluck": "s*", "set": ".s.", "unset": ".s", "pick": ".s", "omit": ".s",
    "regexMatch": "ss", "regexFind": "ss", "regexFindAll": "ssi", "regexReplaceAll": "sss",
    "regexReplaceAllLiteral": "sss", "regexSplit": "ssi", "regexQuoteMeta": "s",
    "mustRegexMatch": "ss", "mustRegexFind": "ss", "mustRegexFindAll": "ssi", "mustRegexReplaceAll": "sss",
    "mustRegexReplaceAllLiteral": "sss", "mustRegexSplit": "ssi", "randAlphaNum": "i", "randAlpha": "i",
    "randNumeric": "i", "randAscii": "i", "until": "i", "untilStep": "iii", "randInt": "ii",
})
