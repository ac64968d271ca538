"""Seeded random cases for the Go oracle, one generator per library.

Every generator takes a ``random.Random`` and returns ``(docs, cases)``: ``docs`` is a pool
of raw JSON texts shared by the cases (each case names its document by index, which keeps
the golden files small), ``cases`` a list of dicts in the oracle's input shape, minus
``doc``. The same seed gives the same cases, so the golden files only change when this
file does.
"""

from __future__ import annotations

import json
import random
from typing import Any

# ------------------------------------------------------------------ documents

NUMBERS = [
    "0", "-0", "1", "-1", "21", "21.0", "2.50", "1e3", "1E3", "1e+3", "1.5e-7", "-1.5e300", "5e-324",
    "1e21", "1e20", "123456789012345678", "9007199254740993", "12345678901234567890",
    "123456789012345678901234567890", "0.1", "0.30000000000000004", "-2.5", "100", "1.0", "3.14159",
    "1e-7", "0.000001", "0.0001", "-0.0", "10", "7", "3", "255", "1.5", "99.99", "2", "4", "65",
]
STRINGS = [
    "hello", "", "Hello World", "alpha-beta o'neil", "ÄÖü straße", "日本語", "emoji 😀", "tab\tnew\nline",
    'quote"back\\slash', "<a&b>", "true", "false", "10", "10.0", "1e3", " spaced ", "order-created",
    "a.b", "null", "é", "x y\tz", "ǆemo", "ﬁne", "İstanbul", "hello_world", "camelCase", "ALL CAPS",
    "o'neil", "mcdonald's 2nd", "a-b_c d", "1st place", "  lead", "trail  ", "abc123", "x", "ab",
    "a,b,c", "k=v;k2=v2", "line1\nline2", "aGVsbG8=", "dGVzdA==", "not base64!", "UPPER lower",
    "ĳssel", "σς Σ", "\u00a0nbsp", "tab\there", "héllo wörld", "don't-stop", "a/b/c", "snake_case_word",
]
KEYS = ["a", "b", "c", "name", "n", "list", "obj", "x.y", "with space", "ünï", "0", "1", "a-b", "flag",
        "value", "items", "tags", "count", "msg", "id"]


def _num(rng: random.Random) -> str:
    return rng.choice(NUMBERS)


def _str(rng: random.Random) -> str:
    return json.dumps(rng.choice(STRINGS), ensure_ascii=rng.random() < 0.3)


def _value(rng: random.Random, depth: int) -> str:
    r = rng.random()
    if depth < 3 and r < 0.18:
        return _object(rng, depth + 1)
    if depth < 3 and r < 0.32:
        return "[" + ",".join(_value(rng, depth + 1) for _ in range(rng.randint(0, 4))) + "]"
    if r < 0.60:
        return _num(rng)
    if r < 0.88:
        return _str(rng)
    if r < 0.96:
        return rng.choice(["true", "false"])
    return "null"


def _object(rng: random.Random, depth: int = 0, keys: int | None = None) -> str:
    n = keys if keys is not None else rng.randint(1, 5)
    chosen = rng.sample(KEYS, n)
    return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_value(rng, depth)}" for k in chosen) + "}"


def _typed_doc(rng: random.Random) -> str:
    """A document with one member of every kind under fixed names, for expressions and templates."""
    items = [f'{{"name":{_str(rng)},"n":{_num(rng)}}}' for _ in range(rng.randint(0, 3))]
    members = {
        "a": _num(rng), "b": _num(rng), "c": _num(rng), "s": _str(rng), "t": _str(rng),
        "flag": rng.choice(["true", "false"]), "none": "null",
        "list": "[" + ",".join(_value(rng, 3) for _ in range(rng.randint(0, 4))) + "]",
        "nums": "[" + ",".join(_num(rng) for _ in range(rng.randint(0, 4))) + "]",
        "strs": "[" + ",".join(_str(rng) for _ in range(rng.randint(0, 4))) + "]",
        "items": "[" + ",".join(items) + "]",
        "obj": _object(rng, 2),
        "x.y": _num(rng),
        "body": f'{{"name":{_str(rng)},"count":{_num(rng)},"msg":{_str(rng)}}}',
    }
    return "{" + ",".join(f'"{k}":{v}' for k, v in members.items()) + "}"


def _docs(rng: random.Random, n: int, typed: bool = False) -> list[str]:
    out = [_typed_doc(rng) if typed else _object(rng, 0, rng.randint(3, 6)) for _ in range(n)]
    if not typed:
        out += ['{"a":1,"b":{"c":[1,2,{"d":"x"}]},"list":[{"name":"x","n":1},{"name":"y","n":2}]}',
                '{"n":21.0,"m":1e3,"z":-0,"big":12345678901234567890,"f":2.50,"neg":-0.0}',
                '{ "sp" : { "x" : 1 , "y" : [ 1 , 2 ] } , "e" : "\\u00e9\\ud83d\\ude00" }']
    return out


# ------------------------------------------------------------------ gjson


def _paths_of(value: Any, prefix: str = "") -> list[str]:
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            esc = "".join("\\" + c if c in ".*?\\|#@" else c for c in k)
            p = f"{prefix}.{esc}" if prefix else esc
            out.append(p)
            out += _paths_of(v, p)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            p = f"{prefix}.{i}" if prefix else str(i)
            out.append(p)
            out += _paths_of(v, p)
    return out


def gjson_cases(rng: random.Random, count: int) -> tuple[list[str], list[dict[str, Any]]]:
    docs = _docs(rng, 60)
    cases = []
    for i in range(count):
        d = rng.randrange(len(docs))
        parsed = json.loads(docs[d])
        paths = _paths_of(parsed) or ["a"]
        base = rng.choice(paths)
        r = rng.random()
        if r < 0.45:
            path = base
        elif r < 0.52:
            path = base + ".missing"
        elif r < 0.58:
            path = base + ".#"
        elif r < 0.64:
            path = base + ".#." + rng.choice(["name", "n", "a", "0"])
        elif r < 0.70:
            path = base[: max(1, len(base) // 2)] + rng.choice(["*", "?"])
        elif r < 0.75:
            path = base + rng.choice([".#(n>1)", ".#(n>1)#", '.#(name=="x")', '.#(name%"a*")', ".#(n==1).name",
                                      ".#(n<2)#.name", ".#(!=nope)", '.#(name!="y")#'])
        elif r < 0.82:
            path = rng.choice([base + "|@reverse", "@reverse", "@this", base + ".@keys", "@keys", "@values",
                               base + "|@flatten", "@valid", base + "|@ugly", base + "|@join", "@this." + base,
                               base + "|@tostr", base + "|@fromstr", base + "|@this"])
        elif r < 0.87:
            other = rng.choice(paths)
            path = rng.choice([f"{{{base},{other}}}", f"[{base},{other}]", f"{{x:{base}}}"])
        elif r < 0.91:
            path = rng.choice(["!true", "!false", "!null", "!1e3", "!21.0", '!"lit"'])
        elif r < 0.95:
            path = base.replace(".", rng.choice(["|", "."]), 1)
        else:
            path = rng.choice(KEYS) + "." + rng.choice(["0", "-1", "#", "00", "1e0"])
        cases.append({"id": f"g{i}", "doc": d, "path": path})
    return docs, cases


# ------------------------------------------------------------------ govaluate

_FIELDS = [("a", "a"), ("b", "b"), ("c", "c"), ("s", "s"), ("t", "t"), ("flag", "flag"), ("none", "none"),
           ("list", "list"), ("obj", "obj"), ("name", "body.name"), ("count", "body.count"), ("xy", "x\\.y"),
           ("first", "items.0.name"), ("nums", "nums")]
_NUMBER_LITS = ["1", "2", "0", "10", "2.5", ".5", "5.", "0x1F", "100", "3", "21", "1000", "0.1", "7", "255"]
_STRING_LITS = ["'abc'", '"x"', "'hello'", "''", '"10"', "'true'", "'2024-01-02'", "'2014-01-02 14:12'",
                "'2024-01-02T10:00:00Z'", "'a\\'b'", '"Hello World"', "'order-created'", "'ab'", "'é'",
                "'3:04PM'", '"2006-01-02T15:04:05.123Z"', "'not-a-date'", "'10.0'"]
_PATTERNS = ["'^a'", '"^h.*o$"', "'[0-9]+'", "'(?i)HELLO'", "'x|y'", "'^$'", "'\\\\d'", "'^order-'", "'.'",
             "'a{2,}'", "'[[:alpha:]]'", "'\\\\p{L}+'", "'('", "'b$'"]
_BINARY = ["+", "-", "*", "/", "%", "**", "&", "|", "^", "<<", ">>", "==", "!=", "<", "<=", ">", ">=",
           "&&", "||", "??"]
_FIELD_NAMES = [f for f, _ in _FIELDS]


def _operand(rng: random.Random, depth: int) -> str:
    r = rng.random()
    if depth < 3 and r < 0.12:
        return "(" + _expr(rng, depth + 1) + ")"
    if r < 0.45:
        return rng.choice(_FIELD_NAMES)
    if r < 0.62:
        return rng.choice(_NUMBER_LITS)
    if r < 0.78:
        return rng.choice(_STRING_LITS)
    if r < 0.86:
        return rng.choice(["true", "false"])
    if r < 0.92:
        return rng.choice(["-", "!", "~"]) + rng.choice(["", " "]) + _operand(rng, depth + 1)
    return "[" + rng.choice(["a", "x.y", "with space", "name"]) + "]"


def _expr(rng: random.Random, depth: int = 0) -> str:
    r = rng.random()
    left = _operand(rng, depth)
    if r < 0.12:
        return left
    if r < 0.22:
        return f"{left} {rng.choice(['=~', '!~'])} {rng.choice(_PATTERNS + ['s', 't'])}"
    if r < 0.30:
        items = ", ".join(rng.choice(_NUMBER_LITS + _STRING_LITS + ["true"] + _FIELD_NAMES)
                          for _ in range(rng.randint(1, 3)))
        return f"{left} {rng.choice(['in', 'IN'])} ({items})"
    if r < 0.38:
        return f"{left} ? {_operand(rng, depth + 1)} : {_operand(rng, depth + 1)}"
    if r < 0.44 and depth < 3:
        return f"{left} {rng.choice(_BINARY)} {_expr(rng, depth + 1)} {rng.choice(_BINARY)} {_operand(rng, depth)}"
    sep = " " if rng.random() < 0.92 else ""
    out = f"{left}{sep}{rng.choice(_BINARY)}{sep}{_operand(rng, depth)}"
    if depth < 2 and rng.random() < 0.5:
        out += f" {rng.choice(_BINARY)} {_operand(rng, depth + 1)}"
    return out


_REGRESSIONS = [
    's =~ "^h" == true', 's =~ "^h" == false', "a == b == true", "a < b == true", "!flag == false",
    "a + b * c", "a - b - c", "a / b / c", "a ** 2 ** 3", "-a ** 2", "a > 1 && b > 1 || c > 1",
    "a > 1 || b > 1 && c > 1", "s + a", "a + s", "s + flag", "s + none", "a + b + s", "s + a + b",
    "flag ? a : b", "none ?? a", "none ?? none ?? s", "false && s", "true || s", "a in (1, 2, 21)",
    "s in ('hello', 'x')", "a == '21'", "a == 21", "s > 'a'", "s < 1", "1 && true", "!a", "-s",
    "name == 'x' && count >= 10", "a & 3", "a | 4", "7 ^ a", "~a", "a << 2", "a >> 1", "a % 0", "a / 0",
    "-1 ** 0.5", "0x1F + a", "[x.y] + 1", "[a] * 2", "xy > 1", "first =~ '^x'", "a ? b : c",
    "(a > 1) ? 'big' : 'small'", "nums == nums", "obj == obj", "list == list", "none == none", "none != a",
    "a==1", "a&&!flag", "a==-1", "a == -1", "!!flag", "! flag", "2 + 3 * 4 - 1", "(2 + 3) * 4",
    "10 - 4 - 3", "2 ** 3 ** 2", "100 / 10 / 5", "1 + 2 == 3", "1 < 2 == true", "'a' + 'b' == 'ab'",
    "1.5.3", "a +", "(a", "a)", "", "nope == 1", "a.B", "s =~ '('", "s =~ t", "'2024-01-02' > 0",
    "'2024-01-02' == 1704153600", "'3:04PM' < 0", "s ?? 'x'", "flag ? 'y' : 'n' == 'y'",
]


def govaluate_cases(rng: random.Random, count: int) -> tuple[list[str], list[dict[str, Any]]]:
    docs = _docs(rng, 50, typed=True)
    cases = []
    exprs = _REGRESSIONS + [_expr(rng) for _ in range(count - len(_REGRESSIONS))]
    for i, expr in enumerate(exprs):
        names = sorted({n for n in _FIELD_NAMES if n in expr.replace("[", " ").replace("]", " ").split()} or {"a"})
        fields = [[n, p] for n, p in _FIELDS if n in names]
        if "[x.y]" in expr:
            fields.append(["x.y", "x\\.y"])
        if "[a]" in expr and ["a", "a"] not in fields:
            fields.append(["a", "a"])
        cases.append({"id": f"e{i}", "doc": rng.randrange(len(docs)), "fields": fields, "expr": expr})
    return docs, cases


# ------------------------------------------------------------------ templates

_STRING_FUNCS = ["upper", "lower", "title", "untitle", "trim", "nospace", "quote", "squote", "toString",
                 "b64enc", "b64dec", "sha1sum", "sha256sum", "toJson", "toRawJson", "toPrettyJson", "len",
                 "print", "println", "urlquery", "empty", "first", "last", "int", "int64", "float64",
                 "atoi", "keys", "fromJson"]
_ARG_FUNCS = [('trimAll "{c}"', 1), ('trimPrefix "{c}"', 1), ('trimSuffix "{c}"', 1), ("trunc {n}", 1),
              ("substr {n} {m}", 1), ('replace "{c}" "{d}"', 1), ("repeat {n}", 1), ('contains "{c}"', 1),
              ('hasPrefix "{c}"', 1), ('hasSuffix "{c}"', 1), ("indent {n}", 1), ("nindent {n}", 1),
              ('split "{c}"', 1), ('splitList "{c}"', 1), ('join "{c}"', 1), ('default "{d}"', 1),
              ('printf "%v-{c}"', 1), ('printf "%s"', 1), ('printf "%d"', 1), ('printf "%.2f"', 1),
              ('printf "%q"', 1), ("add {n}", 1), ("sub {n}", 1), ("mul {n}", 1), ("div {n}", 1),
              ("mod {n}", 1), ("max {n}", 1), ("min {n}", 1), ('cat "{c}"', 1), ('eq "{c}"', 1),
              ("ne {n}", 1), ("lt {n}", 1), ('ternary "y" "n"', 1), ('coalesce ""', 1), ("index", 0)]
_FIELD_EXPRS = [".Input.a", ".Input.b", ".Input.s", ".Input.t", ".Input.flag", ".Input.none", ".Input.list",
                ".Input.nums", ".Input.strs", ".Input.obj", ".Input.body.name", ".Input.body.count",
                ".Input.body.msg", ".Input.missing", ".Input.items", ".Input.body", "."]
_LITS = ['"x"', '"Hello World"', "3", "2.5", "true", '"a-b c"', "`raw\\n`", '"o\'neil"', "-1", "0"]


_RANGE_OVER = [".Input.list", ".Input.nums", ".Input.strs", ".Input.items", ".Input.obj", ".Input.s", ".Input.none"]


def _call(rng: random.Random) -> str:
    fmt, _ = rng.choice(_ARG_FUNCS)
    return fmt.format(c=rng.choice(["a", "-", " ", "l", "o", ",", "ab", ""]), d=rng.choice(["X", "", "--"]),
                      n=rng.choice(["0", "1", "2", "3", "5", "-1", "10"]), m=rng.choice(["2", "4", "-1", "100"]))


def _pipeline(rng: random.Random) -> str:
    head = rng.choice(_FIELD_EXPRS + _LITS if rng.random() < 0.3 else _FIELD_EXPRS)
    r = rng.random()
    if r < 0.35:
        stages = [rng.choice(_STRING_FUNCS) if rng.random() < 0.6 else _call(rng) for _ in range(rng.randint(1, 3))]
        return " | ".join([head] + stages)
    if r < 0.55:
        return f"{rng.choice(_STRING_FUNCS)} {head}"
    if r < 0.75:
        return f"{_call(rng)} {head}"
    if r < 0.85:
        return f"{rng.choice(_STRING_FUNCS)} ({_call(rng)} {head})"
    return head


def _template(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        lt = rng.choice(["{{", "{{- ", "{{ "])
        rt = rng.choice(["}}", " -}}", " }}"])
        if r < 0.55:
            parts.append(f"{lt}{_pipeline(rng)}{rt}")
        elif r < 0.70:
            parts.append(f"{lt}if {_pipeline(rng)}{rt}Y{{{{ else }}}}N{{{{ end }}}}")
        elif r < 0.80:
            parts.append(f"{lt}with {rng.choice(_FIELD_EXPRS)}{rt}[{{{{ . }}}}]{{{{ end }}}}")
        elif r < 0.90:
            over = rng.choice(_RANGE_OVER)
            item = rng.choice([".", ". | toString", "print .", ".name"])
            parts.append(f"{lt}range {over}{rt}<{{{{ {item} }}}}>{{{{ else }}}}empty{{{{ end }}}}")
        else:
            parts.append(rng.choice([" text ", "\n", "a-b ", "  "]))
    return "".join(parts)


_TEMPLATE_REGRESSIONS = [
    "{{ .Input.s | title }}", '{{ title "alpha-beta o\'neil" }}', '{{ title "hello_world 1st x.y" }}',
    '{{ title "ǆemo" }}', '{{ upper "straße" }}', '{{ lower "İstanbul" }}', "{{ .Input.a }}", "{{ .Input.nums }}",
    "{{ .Input.obj }}", "{{ toJson .Input.obj }}", "{{ toJson .Input }}", "{{ .Input.a | toString }}",
    "{{ .Input.none }}", "{{ .Input.missing }}", "{{ .Input.missing | lower }}", "{{ upper .Input.a }}",
    '{{ printf "%v" .Input.a }}', '{{ printf "%d" 3 }}', "{{ add 1 2 }}", "{{ add .Input.a 1 }}",
    "{{ div 7 2 }}", "{{ 1.5 }}", "{{ 1e3 }}", "{{ 100000000000000000000000.0 }}", "{{ -0.0 }}",
    '{{ b64dec "aGVsbG8=" }}', '{{ b64enc "hello" }}', '{{ untitle "Hello World" }}', '{{ nospace " a b\tc" }}',
    '{{ trim "  x  " }}', '{{ quote "a\\"b" }}', '{{ squote "x" }}', '{{ toJson "<a&b>" }}', '{{ toRawJson "<a&b>" }}',
    "{{ toPrettyJson .Input.obj }}", "{{- .Input.s -}}", "  {{- .Input.s }}  ", "{{ .Input.s -}}  x",
    "{{ if eq .Input.s \"hello\" }}yes{{ else }}no{{ end }}", "{{ range .Input.nums }}{{ . }},{{ end }}",
    "{{ range $i, $v := .Input.strs }}{{ $i }}={{ $v }};{{ end }}", "{{ with .Input.body }}{{ .name }}{{ end }}",
    "{{ $x := .Input.s }}{{ $x }}", "{{ len .Input.s }}", "{{ index .Input.nums 0 }}", "{{ .Input.body.name | upper | quote }}",  # noqa: E501
    "{{/* comment */}}x", "{{ eq .Input.a 21.0 }}", "{{ eq .Input.a 21 }}", "{{ gt .Input.a 1 }}",
    "{{ default \"d\" .Input.missing }}", "{{ empty .Input.none }}", "{{ coalesce .Input.none .Input.s }}",
    "{{ ternary \"y\" \"n\" .Input.flag }}", "{{ .Input.flag | ternary \"y\" \"n\" }}", "{{ splitList \",\" \"a,b,c\" }}",
    "{{ split \",\" \"a,b\" }}", '{{ join "-" .Input.strs }}', "{{ keys .Input.obj | sortAlpha }}", "{{ repeat 3 \"ab\" }}",
    "{{ trunc 2 \"abcdef\" }}", "{{ trunc -2 \"abcdef\" }}", "{{ substr 1 3 \"abcdef\" }}", "{{ int \"12\" }}", "{{ atoi \"x\" }}",  # noqa: E501
    "{{ float64 \"1.5\" }}", "{{ mod 7 3 }}", "{{ max 1 5 3 }}", "{{ min 4 2 }}", "{{ mul 2 3 4 }}", "{{ sub 10 3 }}",
    "{{ sha256sum \"x\" }}", "{{ sha1sum \"x\" }}", "{{ urlquery \"a b&c\" }}", "{{ print 1 2 \"x\" }}", "{{ println \"a\" }}",  # noqa: E501
    "{{ indent 2 \"a\\nb\" }}", "{{ nindent 2 \"a\" }}", "{{ contains \"ll\" \"hello\" }}", "{{ hasPrefix \"he\" \"hello\" }}",  # noqa: E501
    "{{ replace \"l\" \"L\" \"hello\" }}", "{{ cat \"a\" 1 .Input.none \"b\" }}", "{{ fromJson \"{\\\"a\\\":1}\" }}",
    "{{ dict \"a\" 1 \"b\" \"x\" }}", "{{ list 1 \"a\" 2.5 }}", "{{ first .Input.strs }}", "{{ last .Input.nums }}",
    "{{ get .Input.obj \"a\" }}", "{{ hasKey .Input.obj \"a\" }}", "{{ and .Input.flag .Input.s }}", "{{ or .Input.none .Input.s }}",  # noqa: E501
    "{{ not .Input.flag }}", "{{ .Input.a | printf \"%.2f\" }}", "{{ printf \"%q\" .Input.s }}", "{{ printf \"%x\" \"hi\" }}",  # noqa: E501
    "{{ printf \"%5s|%-5s|\" \"a\" \"b\" }}", "{{ printf \"%t\" true }}", "{{ printf \"%v\" .Input.nums }}",
    "{{ printf \"%d\" .Input.a }}", "{{ printf \"%s\" .Input.a }}", "{{ printf \"%v %v\" 1 }}", "{{ .Input.x.y }}",
    "{{ index .Input \"x.y\" }}", "{{ .Input.body.count | int }}", "{{ .Input.body.count | float64 }}",
    "{{ .Input.a | int64 }}", "{{ toString .Input.flag }}", "{{ toString .Input.nums }}", "{{ .Input.s | b64enc | b64dec }}",
    "{{ camelcase \"x\" }}", "{{ nope }}", "{{ .Input.s | }}", "{{ if }}{{ end }}", "{{ end }}", "{{ range .Input.a }}{{ end }}",  # noqa: E501
]


def template_cases(rng: random.Random, count: int) -> tuple[list[str], list[dict[str, Any]]]:
    docs = _docs(rng, 40, typed=True)
    tpls = _TEMPLATE_REGRESSIONS + [_template(rng) for _ in range(count - len(_TEMPLATE_REGRESSIONS))]
    cases = []
    for i, tpl in enumerate(tpls):
        case: dict[str, Any] = {"id": f"t{i}", "tpl": tpl, "doc": rng.randrange(len(docs)), "mode": "param"}
        if rng.random() < 0.2:
            path = rng.choice(["a", "s", "t", "flag", "none", "obj", "nums", "body.name", "x\\.y"])
            case.update(mode="filter", path=path,
                        tpl=tpl.replace(".Input.s", ".Input").replace(".Input.a", ".Input"))
        cases.append(case)
    return docs, cases


# ------------------------------------------------------------------ regexp

_RX_ATOMS = ["a", "b", ".", "\\d", "\\w", "\\s", "\\b", "[a-c]", "[^x]", "\\p{L}", "\\pL", "\\p{Greek}", "[[:alpha:]]",
             "[[:digit:]]", "é", "日", "\\.", "\\x41", "\\x{263a}", "\\Qa.b\\E", "(?i:A)", "^", "$", "\\A", "\\z",
             "(a|b)", "(?:ab)", "(?P<n>a)", "\\1", "(?=a)", "(?!a)", "(?<=a)", "\\Z", "a++", "[", "(", "\\C",
             "\\e", "\\h", "\\R", "[a-", "x{2,3}", "x{,3}", "x{1001}", "\\Ba", "(?s).", "(?m)^b", "(?U)a+",
             "[\\d-z]", "\\-", "&&", "[a&&b]", "\\/", "\\'", '"', "\\n", "\\t", "\\v", "\\f", "\\a", "\\0", "\\8"]
_RX_SUFFIX = ["", "", "", "*", "+", "?", "*?", "{2}", "{1,}", "+?"]
_SUBJECTS = STRINGS + ["aaa", "abc", "ABC", "a.b", "ab ab", "x\ny", "☺", "ééé", "123", "", "Ωmega", "aab", "bba"]


def regexp_cases(rng: random.Random, count: int) -> tuple[list[str], list[dict[str, Any]]]:
    cases = []
    for i in range(count):
        pattern = "".join(rng.choice(_RX_ATOMS) + rng.choice(_RX_SUFFIX) for _ in range(rng.randint(1, 4)))
        if rng.random() < 0.1:
            pattern = rng.choice(["^order-", "hello", "(?i)hello", "^$", "[0-9]+", "^(a+)+$", "\\bworld\\b", "ll"])
        cases.append({"id": f"r{i}", "pattern": pattern, "subject": rng.choice(_SUBJECTS)})
    return [], cases


# ------------------------------------------------------------------ sjson

def sjson_cases(rng: random.Random, count: int) -> tuple[list[str], list[dict[str, Any]]]:
    docs = _docs(rng, 30) + ["{}", "[]", '{"a":[]}', '{"a":[1,2]}', "null", '{"a":{"b":1}}']
    cases = []
    for i in range(count):
        d = rng.randrange(len(docs))
        parsed = json.loads(docs[d])
        existing = _paths_of(parsed)
        base = rng.choice(existing) if existing and rng.random() < 0.6 else rng.choice(KEYS).replace(".", "\\.")
        r = rng.random()
        path = base
        if r < 0.2:
            path = base + "." + rng.choice(["new", "0", "-1", "5", ":0", "x\\.y"])
        elif r < 0.3:
            path = rng.choice(["a.0", "a.-1", "a.3", "list.1.name", "metadata.labels.owner", "spec.args.0"])
        raw = rng.random() < 0.4
        value = rng.choice(NUMBERS + ['{"k":1}', "[1,2]", "true", "null", '"q"']) if raw else rng.choice(STRINGS)
        cases.append({"id": f"j{i}", "doc": d, "path": path, "value": value, "raw": raw})
    return docs, cases


# ------------------------------------------------------------------ lua

_LUA_FILTERS = [
    "return event.a > 1", "return event.a == 21", "return event.s == 'hello'", "return event.flag",
    "return event.flag == true", "return event.none == nil", "return #event.strs > 1", "return event.a / 4 > 1",
    "return string.upper(event.s) == 'HELLO'", "return tostring(event.a) == '21'", "return event.a % 2 == 1",
    "return event.body.count >= 10", "return string.len(event.s) == 5", "return event.missing.x == 1",
    "return event.list[1] ~= nil", "return #event.list", "return 1", "return 'true'", "return true, false",
    "if event.a > 1 then return true end return false", "return event.a .. '' == '21'",
    "return math.floor(event.a) == event.a", "return string.find(event.s, 'l') ~= nil",
    "return string.format('%d', event.a) == '21'", "return event.items[1].name ~= nil", "return nil",
    "error('boom')", "return event.a + event.s", "return (event.a or 0) > 0", "return type(event.a) == 'number'",
    "return type(event.none)", "return tostring(10/4) == '2.5'", "return tostring(10/2) == '5'",
    "return 7 // 2 == 3", "return event.s:upper() == 'HELLO'", "return math.max(event.a, 5) == 5",
    "local n = 0 for _ in pairs(event) do n = n + 1 end return n > 5", "return #event.nums == #event.nums",
    "return string.format('%.1f', event.a) == '21.0'", "return tostring(event.a)", "return event",
]
_LUA_TRANSFORMS = [
    "event.x = event.a * 2 return event", "event.s = string.upper(event.s) return event",
    "return {a = event.a, s = event.s}", "return {1, 2, 3}", "return {}", "event.none = 1 return event",
    "event.len = string.len(event.s) return event", "event.half = event.a / 2 return event",
    "event.str = tostring(event.a) return event", "event.cat = event.s .. event.a return event",
    "event.n = #event.strs return event", "event.t = {x = {y = 1}} return event", "return event.body",
    "return event.a", "return 'x'", "event.list = nil return event", "event.mixed = {1, 2, x = 3} return event",
    "event.holes = {1, nil, 3} return event", "event.f = 0.1 + 0.2 return event", "event.big = 2^53 + 1 return event",
    "event.int = math.floor(7.9) return event", "event.fmt = string.format('%5.2f', event.a) return event",
    "event.neg = -0.0 return event", "event.inf = 1/0 return event", "event.key = {[1.5] = 'x'} return event",
    "event.sub = string.sub(event.s, 2, 3) return event", "event.rep = string.rep('ab', 3) return event",
    "event.g = string.gsub(event.s, 'l', 'L') return event", "event.b = event.flag and 'y' or 'n' return event",
    "event.nested = event.obj return event", "event.items = event.items return event",
]


def lua_cases(rng: random.Random, count: int) -> tuple[list[str], list[dict[str, Any]]]:
    docs = _docs(rng, 40, typed=True)
    cases = []
    fixed = [(s, "filter") for s in _LUA_FILTERS] + [(s, "transform") for s in _LUA_TRANSFORMS]
    for i in range(count):
        script, mode = fixed[i] if i < len(fixed) else (
            rng.choice(_LUA_FILTERS), "filter") if rng.random() < 0.5 else (rng.choice(_LUA_TRANSFORMS), "transform")
        cases.append({"id": f"l{i}", "script": script, "doc": rng.randrange(len(docs)), "mode": mode})
    return docs, cases


# ------------------------------------------------------------------ jq

_JQ = [
    ".", ".x = .a * 2", "{a: .a, s: .s}", ".s |= ascii_upcase", ".body", ".a", "[.a]", "empty", "error(\"x\")",
    ".n = (.nums | length)", ".sum = (.nums | add)", ".keys = (.obj | keys)", ".m = (.a / 3)", ".big = 12345678901234567890",
    ".f = 1e3", ".e = 21.0", ".z = -0", ".neg = (0 - .a)", "del(.list)", ".s2 = (.s | tostring)", ".as = (.a | tostring)",
    ".j = (.obj | tojson)", ".t = (.s | test(\"^h\"))", ".sp = (.s | split(\" \"))", "with_entries(.value |= tostring)",
    ".first = .items[0]", ".items |= map(.n)", ".r = (.nums | reverse)", "to_entries | from_entries", ".x = null",
    ".u = (.s | utf8bytelength)", ".l = (.s | length)", ".fl = (.a | floor)", ".sq = (.a | sqrt)", ".p = pow(2; 10)",
    ".st = (.a | tostring | tonumber)", ".d = (.a // 5)", ".c = ([.nums[] | select(. > 1)] | length)", ".ab = (.a | fabs)",
    "{(.s): 1}", ".o = {b: 2, a: 1}", ".fmt = (.a | @text)", ".b64 = (.s | @base64)", ".uri = (.s | @uri)",
    ".q = (.nums | sort)", ".g = (.items | group_by(.name) | length)", ".mx = (.nums | max)", ".idx = (.s | index(\"l\"))",
    ".ltr = (.s | ltrimstr(\"he\"))", ".asc = (.s | explode | implode)", ".x = (1 / 3)", ".y = (10 % 3)", ".w = (.a % 0)",
    ".bad = (.s + 1)", ".tn = (.s | tonumber)", ".inf = infinite", ".nan = nan", ".lim = [limit(2; .nums[])]",
    "if .flag then .r = 1 else .r = 2 end", ".x = (.a | . * 1.5)", ".big2 = (9007199254740993 + 0)",
]


def jq_cases(rng: random.Random, count: int) -> tuple[list[str], list[dict[str, Any]]]:
    docs = _docs(rng, 40, typed=True) + ["[1,2]", '"str"']
    cases = []
    for i in range(count):
        program = _JQ[i] if i < len(_JQ) else rng.choice(_JQ)
        cases.append({"id": f"q{i}", "program": program, "doc": rng.randrange(len(docs))})
    return docs, cases


GENERATORS = {
    "gjson": (gjson_cases, 3000),
    "govaluate": (govaluate_cases, 4000),
    "template": (template_cases, 3000),
    "regexp": (regexp_cases, 2000),
    "sjson": (sjson_cases, 1500),
    "lua": (lua_cases, 1000),
    "jq": (jq_cases, 1000),
}
