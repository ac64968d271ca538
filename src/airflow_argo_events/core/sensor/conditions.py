"""Trigger conditions: boolean expressions over dependency names.

``(dep01 || dep02) && dep03``. As in Argo, ``-`` and ``_`` in names are interchangeable
(``dep-a`` and ``dep_a`` name the same dependency) and ``and``/``or``/``not`` work as
well as ``&&``/``||``/``!``. Expressions are parsed once into a small tree, compiled into closures;
never ``eval``.

>>> c = Condition.parse("(dep01 || dep02) && dep03")
>>> c.names, c.evaluate({"dep02": True, "dep03": True}), c.requires_and
(('dep01', 'dep02', 'dep03'), True, True)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_TOKEN = re.compile(r"\s*(?:(\(|\)|&&|\|\||!|&|\|)|([A-Za-z_][A-Za-z0-9_\-.]*))")


class ConditionError(ValueError):
    """The condition text is not a valid expression."""


@dataclass(frozen=True, slots=True)
class Name:
    name: str


@dataclass(frozen=True, slots=True)
class Not:
    arg: Node


@dataclass(frozen=True, slots=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Or:
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Const:
    value: bool


Node = Name | Not | And | Or | Const


def canonical(name: str) -> str:
    """Argo rewrites ``-`` to ``_`` before compiling; names compare after that."""
    return name.replace("-", "_")


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ConditionError(f"unexpected {text[pos:].strip()[:20]!r} at position {pos}")
        op, ident = m.group(1), m.group(2)
        if op == "&" or op == "|":
            raise ConditionError(f"use {op * 2} instead of {op} at position {m.start(1)}")
        if ident in ("and", "or", "not"):
            op = {"and": "&&", "or": "||", "not": "!"}[ident]
            ident = None
        out.append(op or f"${ident}")
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.t = tokens
        self.i = 0

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise ConditionError("unexpected end of expression")
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.or_()
        if self.peek() is not None:
            raise ConditionError(f"unexpected {self.peek().lstrip('$')!r}")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.peek() == "||":
            self.take()
            node = Or(node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.unary()
        while self.peek() == "&&":
            self.take()
            node = And(node, self.unary())
        return node

    def unary(self) -> Node:
        tok = self.take()
        if tok == "!":
            return Not(self.unary())
        if tok == "(":
            node = self.or_()
            if self.take() != ")":
                raise ConditionError("missing )")
            return node
        if tok.startswith("$"):
            ident = tok[1:]
            if ident in ("true", "false"):
                return Const(ident == "true")
            return Name(canonical(ident))
        raise ConditionError(f"unexpected {tok!r}")


def _compile(node: Node) -> Callable[[dict[str, bool]], bool]:
    """The tree as nested closures, built once: evaluating walks no tree and tests no types."""
    if type(node) is Name:
        name = node.name
        return lambda env: env.get(name, False)
    if type(node) is And:
        left, right = _compile(node.left), _compile(node.right)
        return lambda env: left(env) and right(env)
    if type(node) is Or:
        left, right = _compile(node.left), _compile(node.right)
        return lambda env: left(env) or right(env)
    if type(node) is Not:
        arg = _compile(node.arg)
        return lambda env: not arg(env)
    value = node.value  # type: ignore[union-attr]
    return lambda env: value


def _names(node: Node, out: list[str]) -> None:
    if isinstance(node, Name):
        if node.name not in out:
            out.append(node.name)
    elif isinstance(node, (And, Or)):
        _names(node.left, out)
        _names(node.right, out)
    elif isinstance(node, Not):
        _names(node.arg, out)


@dataclass(frozen=True)
class Condition:
    """A parsed condition; ``names`` are canonical (``_`` for ``-``) in order of first appearance."""

    text: str
    tree: Node
    names: tuple[str, ...]
    requires_and: bool
    """Argo: ``strings.Contains(expression, "&")`` selects the stateful path."""

    @classmethod
    def parse(cls, text: str) -> Condition:
        if not text.strip():
            raise ConditionError("empty expression")
        tree = _Parser(_tokens(text)).parse()
        names: list[str] = []
        _names(tree, names)
        return cls(text, tree, tuple(names), "&" in text or bool(re.search(r"\band\b", text)))

    @classmethod
    def all_of(cls, names: list[str]) -> Condition:
        """Argo's default with no ``conditions``: every dependency, joined with ``&&``."""
        return cls.parse(" && ".join(names))

    def __post_init__(self) -> None:
        object.__setattr__(self, "_run", _compile(self.tree))

    def evaluate(self, env: dict[str, bool]) -> bool:
        """``env`` maps canonical names to whether the dependency is satisfied."""
        return self._run(env)  # type: ignore[attr-defined, no-any-return]
