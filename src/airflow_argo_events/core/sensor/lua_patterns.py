"""Lua string patterns on RE2, for subjects too long to trust Lua's backtracking matcher with.

Lua's ``string.find/match/gmatch/gsub`` run in C, where no instruction hook can stop
them, and backtrack: ``s:match("^%s*(.-)%s*$")`` is quadratic, patterns with more
``*``/``-`` items are worse. The sandbox keeps Lua's own matcher when the worst case is
small (``LUA_PATTERN_BUDGET``) and otherwise runs the pattern here: translated to an
RE2 program over bytes (Latin-1 mode: one byte, one character, as in Lua), which is
linear in the subject. Lua patterns have no alternation and quantify single characters
only, so RE2's leftmost-first ("Perl") semantics give the same match and captures as
Lua's backtracking. ``%b``, ``%f`` and back-references (``%1``) have no RE2 form: such
patterns stay on Lua's matcher while cheap and are refused beyond.

The functions follow Lua 5.1's ``lstrlib.c``, the Lua Argo's gopher-lua implements (init
positions clamped to the subject, an empty match allowed right after a match, ``gsub``
replacement rules, no ``%g`` class).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import re2

MAX_CAPTURES = 32
"""Lua's LUA_MAXCAPTURES."""

_CLASSES = {
    ord("a"): "alpha", ord("c"): "cntrl", ord("d"): "digit", ord("l"): "lower",
    ord("p"): "punct", ord("s"): "space", ord("u"): "upper", ord("w"): "alnum", ord("x"): "xdigit",
}
_ESC = ord("%")


class Untranslatable(Exception):
    """The pattern uses %b, %f, back-references, or is malformed (Lua reports those itself)."""


def _lit(c: int) -> str:
    return f"\\x{c:02x}"


def _class(c: int, in_set: bool) -> str:
    """``%x`` as an RE2 class (ASCII, as C's ctype in the C locale)."""
    name = _CLASSES.get(c | 0x20)
    if name is None:  # %. %] %% ...: the character itself
        if c | 0x20 in (ord("b"), ord("f")) or ord("0") <= c <= ord("9"):
            raise Untranslatable
        return _lit(c)
    neg = "^" if c < ord("a") else ""
    body = f"[:{neg}{name}:]"
    return body if in_set else f"[{body}]"


def _set(p: bytes, i: int) -> tuple[str, int]:
    """A ``[...]`` set starting at ``p[i] == '['``; returns (RE2 class, index after ']')."""
    end = len(p)
    i += 1
    neg = ""
    if i < end and p[i] == ord("^"):
        neg, i = "^", i + 1
    parts: list[str] = []
    first = True
    while True:
        if i >= end:
            raise Untranslatable  # malformed pattern (missing ']')
        c = p[i]
        if c == ord("]") and not first:
            return f"[{neg}{''.join(parts)}]", i + 1
        first = False
        if c == _ESC:
            if i + 1 >= end:
                raise Untranslatable
            parts.append(_class(p[i + 1], True))
            i += 2
        elif i + 2 < end and p[i + 1] == ord("-") and p[i + 2] != ord("]"):
            lo, hi = c, p[i + 2]
            if lo <= hi:
                parts.append(f"{_lit(lo)}-{_lit(hi)}")
            i += 3
        else:
            parts.append(_lit(c))
            i += 1


@lru_cache(maxsize=512)
def translate(pattern: bytes, anchor_allowed: bool = True) -> tuple[Any, bool, tuple[bool, ...]]:
    """(compiled RE2, anchored, per-capture "is a position capture")."""
    p, end, i = pattern, len(pattern), 0
    anchored = anchor_allowed and end > 0 and p[0] == ord("^")
    if anchored:
        i = 1
    out: list[str] = []
    captures: list[bool] = []
    open_: list[int] = []
    while i < end:
        c = p[i]
        if c == ord("("):
            if i + 1 < end and p[i + 1] == ord(")"):
                out.append("()")
                captures.append(True)
                i += 2
            else:
                out.append("(")
                captures.append(False)
                open_.append(len(captures) - 1)
                i += 1
            if len(captures) > MAX_CAPTURES:
                raise Untranslatable
            continue
        if c == ord(")"):
            if not open_:
                raise Untranslatable
            open_.pop()
            out.append(")")
            i += 1
            continue
        if c == ord("$") and i + 1 == end:
            out.append(r"\z")
            i += 1
            continue
        if c == _ESC:
            if i + 1 >= end:
                raise Untranslatable
            item, i = _class(p[i + 1], False), i + 2
        elif c == ord("["):
            item, i = _set(p, i)
        elif c == ord("."):
            item, i = r"[\x00-\xff]", i + 1
        else:
            item, i = _lit(c), i + 1
        if i < end and p[i] in b"*+-?":
            item += {ord("*"): "*", ord("+"): "+", ord("-"): "*?", ord("?"): "?"}[p[i]]
            i += 1
        out.append(item)
    if open_:
        raise Untranslatable
    opts = re2.Options()
    opts.encoding = re2.Options.Encoding.LATIN1
    opts.log_errors = False
    try:
        rx = re2.compile("".join(out).encode("latin-1"), opts)
    except re2.error:
        raise Untranslatable from None
    return rx, anchored, tuple(captures)


def variable_items(pattern: bytes) -> int:
    """How many items can match a variable length (``*``, ``+``, ``-``, ``%b``): the exponent
    of the backtracking matcher's worst case. Counted loosely (a quantifier char inside a set
    counts too): over-counting only sends more patterns to RE2."""
    n = 0
    prev = 0
    for i, c in enumerate(pattern):
        if c in b"*+-" and i > 0 and prev != _ESC:
            n += 1
        elif c == ord("b") and prev == _ESC:
            n += 1
        prev = c if prev != _ESC else 0
    return n


# ---------------------------------------------------------------- the string functions


def _start(init: int | None, length: int) -> int:
    """Lua 5.1's ``posrelat(init, len) - 1`` clamped to ``[0, len]`` (str_find_aux), 0-based."""
    if init is None:
        return 0
    pos = init + length + 1 if init < 0 else init
    return min(max(pos - 1, 0), length)


def _captures(m: Any, src: bytes, caps: tuple[bool, ...], whole: bool) -> list[Any]:
    if not caps:
        return [src[m.start():m.end()]] if whole else []
    out: list[Any] = []
    for k, is_pos in enumerate(caps, 1):
        out.append(m.start(k) + 1 if is_pos else src[m.start(k):m.end(k)])
    return out


def find(src: bytes, pattern: bytes, init: int | None, want_span: bool) -> list[Any] | None:
    """``string.find`` (want_span) or ``string.match``; None when nothing matches."""
    pos = _start(init, len(src))
    rx, anchored, caps = translate(pattern)
    m = rx.match(src, pos) if anchored else rx.search(src, pos)
    if m is None:
        return None
    if want_span:
        return [m.start() + 1, m.end(), *_captures(m, src, caps, False)]
    return _captures(m, src, caps, True)


def gmatch(src: bytes, pattern: bytes, init: int | None) -> Callable[[], list[Any] | None]:
    """``string.gmatch``: an iterator giving each match's captures (a leading ``^`` is literal).
    After an empty match the search goes on one byte further."""
    rx, _, caps = translate(pattern, anchor_allowed=False)
    state = {"pos": _start(init, len(src))}

    def step() -> list[Any] | None:
        pos = state["pos"]
        m = rx.search(src, pos) if pos <= len(src) else None
        if m is None:
            state["pos"] = len(src) + 1
            return None
        state["pos"] = m.end() if m.end() > m.start() else m.end() + 1
        return _captures(m, src, caps, True)

    return step


def gsub(src: bytes, pattern: bytes, repl: Any, max_n: int | None,
         call: Callable[[Any, list[Any]], Any], to_bytes: Callable[[Any], bytes | None],
         max_out: int) -> tuple[bytes, int]:
    """``string.gsub``. ``call(repl, captures)`` looks up a table or calls a function;
    ``to_bytes(value)`` turns its result into bytes (None keeps the match). Raises ValueError
    with Lua's message for an invalid replacement string, MemoryError past ``max_out`` bytes
    (Lua's own gsub would hit the runtime's memory limit)."""
    rx, anchored, caps = translate(pattern)
    limit = len(src) + 1 if max_n is None else max_n
    out = bytearray()
    pos, n = 0, 0
    while n < limit and pos <= len(src):
        m = rx.match(src, pos) if anchored else rx.search(src, pos)
        if m is None:
            break
        n += 1
        out += src[pos:m.start()]
        if isinstance(repl, bytes):
            out += _expand(repl, m, src, caps)
        else:
            value = call(repl, _captures(m, src, caps, True))
            new = to_bytes(value)
            out += src[m.start():m.end()] if new is None else new
        if m.end() > m.start():
            pos = m.end()
        else:  # an empty match: copy one byte and go on after it
            out += src[m.start():m.start() + 1]
            pos = m.start() + 1
        if len(out) > max_out:
            raise MemoryError("not enough memory")
        if anchored:
            break
    out += src[pos:]
    return bytes(out), n


def _expand(repl: bytes, m: Any, src: bytes, caps: tuple[bool, ...]) -> bytes:
    """A replacement string with ``%0``-``%9`` and ``%%`` (Lua's add_s)."""
    if b"%" not in repl:
        return repl
    out = bytearray()
    i = 0
    while i < len(repl):
        c = repl[i]
        i += 1
        if c != _ESC:
            out.append(c)
            continue
        d = repl[i] if i < len(repl) else -1
        i += 1
        if d == _ESC:
            out.append(_ESC)
        elif ord("0") <= d <= ord("9"):
            k = d - ord("0")
            if k == 0 or (k == 1 and not caps):
                out += src[m.start():m.end()]
            elif k > len(caps):
                raise ValueError(f"invalid capture index %{k} in replacement string")
            elif caps[k - 1]:
                out += str(m.start(k) + 1).encode()
            else:
                out += src[m.start(k):m.end(k)]
        else:
            raise ValueError("invalid use of '%' in replacement string")
    return bytes(out)
