"""Argo's expression filters (govaluate syntax) evaluated safely with simpleeval.

govaluate expressions are translated token by token into a Python expression once:
``&&``/``||``/``!`` become ``and``/``or``/``not``, ``=~``/``!~`` (regex match) become
``is``/``is not`` with those operators rebound to regex search, ``[name with spaces]``
becomes a plain name, and ``true``/``false``/``nil`` become Python constants. simpleeval
then evaluates the parsed tree with only the bound field values as names: no attribute
access, no calls, no imports. Numbers compare as numbers, as govaluate's float64 do.

>>> ExprFilterProgram('a == "x" && b >= 10').evaluate({"a": "x", "b": 12})
True
"""

from __future__ import annotations

import ast
import operator as op
import re
from typing import Any

import simpleeval

from airflow_argo_events.core.sensor.regex import RegexError, go_regex, matches

MAX_EXPR_LENGTH = 4096
"""Longer expressions are refused at load; real filter expressions are a line or two."""

MAX_EXPR_DEPTH = 64
"""Deepest syntax tree accepted (``!!!a`` is 4 deep, ``a+b+c`` 3). Evaluation recurses once per
level, so 1,300 ``!`` or 2,000 ``-`` would hit Python's recursion limit on the first event;
refusing them at load names the field instead. Real expressions nest well under 20."""

_TOKENS = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<num>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<esc>\[[^\]]+\])
      | (?P<op>=~|!~|==|!=|>=|<=|&&|\|\||\*\*|\?\?|[-+*/%<>!()&|^~,?:])
      | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.X,
)


class ExprError(ValueError):
    """The expression is invalid, or failed for this event."""


def _regex(pattern: str) -> Any:
    # govaluate compiles with Go's regexp (RE2): linear time, so a hostile value cannot stall the filter.
    try:
        return go_regex(pattern)
    except RegexError as err:
        raise ExprError(str(err)) from None


def _match(value: Any, pattern: Any) -> bool:
    if not isinstance(value, str) or not isinstance(pattern, str):
        raise ExprError("=~ and !~ need string operands")
    return matches(_regex(pattern), value)


def _safe_name(name: str) -> str:
    return "_f_" + re.sub(r"[^A-Za-z0-9_]", lambda m: f"_{ord(m.group()):x}_", name)


def translate(expr: str) -> tuple[str, dict[str, str]]:
    """Python source for a govaluate expression, and the map of original to safe names."""
    if len(expr) > MAX_EXPR_LENGTH:
        raise ExprError(f"expression longer than {MAX_EXPR_LENGTH} characters")
    out: list[str] = []
    names: dict[str, str] = {}
    pos, text = 0, expr.strip()
    while pos < len(text):
        m = _TOKENS.match(text, pos)
        if not m or m.end() == pos:
            raise ExprError(f"unexpected {text[pos:pos + 10]!r} at position {pos}")
        pos = m.end()
        kind = m.lastgroup
        tok = m.group(kind or "")
        if kind == "str":
            out.append(repr(ast.literal_eval(tok)) if tok.startswith("'") else tok)
        elif kind == "num":
            out.append(tok)
        elif kind in ("esc", "ident"):
            name = tok[1:-1] if kind == "esc" else tok
            if kind == "ident" and name in ("true", "false", "nil"):
                out.append({"true": "True", "false": "False", "nil": "None"}[name])
            elif kind == "ident" and name == "in":
                out.append(" in ")
            else:
                names[name] = names.get(name) or _safe_name(name)
                out.append(names[name])
        else:
            out.append({
                "&&": " and ", "||": " or ", "!": " not ", "=~": " is ", "!~": " is not ",
                "?": None, ":": None, "??": None,
            }.get(tok, tok) or _unsupported(tok))
    return "".join(out), names


def _unsupported(tok: str) -> str:
    raise ExprError(f"operator {tok!r} is not supported in expression filters")


_OPERATORS = dict(simpleeval.DEFAULT_OPERATORS)
_OPERATORS.update({ast.Is: _match, ast.IsNot: lambda a, b: not _match(a, b), ast.Not: op.not_})


def _check_tree(tree: ast.AST) -> None:
    """Bound nesting, and compile every literal ``=~`` pattern now so a bad one is a load error."""
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_EXPR_DEPTH:
            raise ExprError(f"expression nested deeper than {MAX_EXPR_DEPTH} levels")
        if isinstance(node, ast.Compare):
            for cmp_op, right in zip(node.ops, node.comparators, strict=True):
                if isinstance(cmp_op, (ast.Is, ast.IsNot)) and isinstance(right, ast.Constant) \
                        and isinstance(right.value, str):
                    _regex(right.value)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


class ExprFilterProgram:
    """One compiled expression; ``evaluate(values)`` with the names its ``fields`` bind."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        source, self._names = translate(expr)
        try:
            self._tree = simpleeval.SimpleEval.parse(source)
        except SyntaxError as err:
            raise ExprError(f"invalid expression {expr!r}: {err.msg}") from None
        except (RecursionError, MemoryError):  # the parser's own nesting limits
            raise ExprError(f"expression nested deeper than {MAX_EXPR_DEPTH} levels") from None
        _check_tree(self._tree)
        # One evaluator per program: only its names change between events.
        self._evaluator = simpleeval.SimpleEval(operators=_OPERATORS, functions={}, names={})

    @property
    def names(self) -> list[str]:
        """The names the expression reads, as written."""
        return list(self._names)

    def evaluate(self, values: dict[str, Any]) -> Any:
        bound = {}
        for name, safe in self._names.items():
            if name not in values:
                raise ExprError(f"no parameter '{name}' found")
            bound[safe] = values[name]
        self._evaluator.names = bound
        try:
            return self._evaluator.eval(self.expr, previously_parsed=self._tree)
        except ExprError:
            raise
        except (simpleeval.InvalidExpression, TypeError, ValueError, ZeroDivisionError, OverflowError) as err:
            raise ExprError(f"{type(err).__name__}: {err}") from err
