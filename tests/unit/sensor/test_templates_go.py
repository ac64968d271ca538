"""Go text/template and sprig as Argo runs them (issue 12): variables, fmt's rules, sprig's
own quirks, and the rest of sprig 3.3.0's FuncMap. Each case was checked against Go (the
oracle's golden corpus, tests/golden/template.jsonl) or against sprig's source."""

from __future__ import annotations

import pytest

from airflow_argo_events.core.sensor.gotemplate import GoTemplate, TemplateError

DATA = {"s": "Hello World", "strs": ["b", "a", "b"], "obj": {"x": 1, "y": {"z": 2}}, "none": None,
        "p": "/a/b/../c.txt", "n": 21.0, "msg": " 10"}


def render(tpl: str) -> str:
    return GoTemplate(tpl).render({"Input": DATA})


@pytest.mark.parametrize("tpl, out", [
    ("{{ range $i, $v := .Input.strs }}{{ $i }}={{ $v }};{{ end }}", "0=b;1=a;2=b;"),
    ("{{ range $k, $v := .Input.obj }}{{ $k }}:{{ $v }} {{ end }}", "x:1 y:map[z:2] "),
    ("{{ range $v := .Input.strs }}{{ $v }}{{ end }}", "bab"),
    ("{{ $x := .Input.obj }}{{ $x.y.z }}", "2"),
    ("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", "2"),                  # a declaration prints nothing
    ("{{ with $y := .Input.s }}{{ $y }}/{{ . }}{{ end }}", "Hello World/Hello World"),
    ("{{ if $z := .Input.none }}y{{ else }}{{ $z }}{{ end }}", "<no value>"),
    ("{{ range .Input.strs }}{{ $.Input.n }}{{ end }}", "212121"),
    ("{{ .Input.s | }}", "Hello World"),                          # Go accepts a trailing pipe
], ids=lambda v: v[:40])
def test_variables(tpl, out):
    assert render(tpl) == out


@pytest.mark.parametrize("tpl, out", [
    ('{{ print 1 2 "x" }}', "1 2x"),                             # fmt.Sprint: spaces between non-strings
    ("{{ print .Input.missing }}", "<nil>"),                     # an argument, not the action's value
    ("{{ .Input.missing | urlquery }}", "%3Cno+value%3E"),
    ('{{ printf "%q" 3 }}', "'\\x03'"),                           # %q of an integer is a quoted rune
    ('{{ printf "%v" (list 1 .Input.none) }}', "[1 <nil>]"),
    ('{{ printf "%d" (add 1 2.5) }}', "3"),
    ('{{ printf "%f" (add 1 2) }}', "%!f(int64=3)"),             # sprig's math gives int64
    ('{{ nospace "a b\tc" }}', "abc"),                            # a raw tab in a string literal is fine
    ('{{ nospace "é b" }}', "\u00c3\u00a9b"),                     # goutils works byte by byte
    ('{{ nospace "é" }}', "é"),                                   # ... and returns the string when nothing goes
    ('{{ "\\x41\\u00e9\\101" }}', "AéA"),
    ("{{ float64 .Input.msg }}", "0"),                            # ParseFloat takes no spaces
    ('{{ atoi "1e3" }} {{ atoi "+7" }} {{ int "0x1f" }} {{ int "010" }} {{ int "10.00" }}', "0 7 31 8 10"),
    ('{{ mod -7 3 }} {{ div -7 2 }}', "-1 -3"),
    ("{{ .Input.none | keys }}", "[]"),                           # a nil pipeline value is the empty map
    ('{{ "x" | b64dec }}', "illegal base64 data at input byte 0"),
], ids=lambda v: v[:40])
def test_go_and_sprig_rules(tpl, out):
    assert render(tpl) == out


@pytest.mark.parametrize("tpl, message", [
    ("{{ first .Input.s }}", "Cannot find first on type string"),
    ("{{ last .Input.n }}", "Cannot find last on type float64"),
    ("{{ first .Input.none }}", "nil pointer"),
    ('{{ keys (split "l" "Hello") }}', r"got map\[string\]string"),
    ("{{ keys .Input.none }}", "got interface {}"),
    ('{{ fail "stop" }}', "stop"),
    ('{{ regexMatch "(" "x" }}', "regex"),
])
def test_go_errors(tpl, message):
    with pytest.raises(TemplateError, match=message):
        render(tpl)


@pytest.mark.parametrize("tpl, out", [
    ("{{ .Input.strs | sortAlpha }}", "[a b b]"),
    ("{{ .Input.strs | uniq }} {{ .Input.strs | reverse }} {{ .Input.strs | rest }} {{ .Input.strs | initial }}",
     "[b a] [b a b] [a b] [b a]"),
    ('{{ list 1 "" 2 | compact }} {{ has "a" .Input.strs }} {{ without .Input.strs "b" }}', "[1 2] true [a]"),
    ("{{ concat .Input.strs (list 1) }} {{ slice .Input.strs 1 2 }} {{ chunk 2 .Input.strs }}",
     "[b a b 1] [a] [[b a] [b]]"),
    ("{{ until 3 }} {{ untilStep 0 10 4 }} {{ add1 1 }} {{ biggest 1 5 2 }}", "[0 1 2] [0 4 8] 2 5"),
    ('{{ dig "y" "z" 0 .Input.obj }} {{ dig "q" "r" "dflt" .Input.obj }}', "2 dflt"),
    ('{{ pick .Input.obj "x" }} {{ omit .Input.obj "x" }} {{ values (dict "a" 1 "b" 2) }}',
     "map[x:1] map[y:map[z:2]] [1 2]"),
    ('{{ $d := dict "a" 1 }}{{ $_ := set $d "b" 2 }}{{ $_ := unset $d "a" }}{{ $d }}', "map[b:2]"),
    ('{{ pluck "a" (dict "a" 1) (dict "b" 2) (dict "a" 3) }}', "[1 3]"),
    ('{{ regexReplaceAll "(o)(r)?" .Input.s "[$1${2}]" }}', "Hell[o] W[or]ld"),
    ('{{ regexReplaceAllLiteral "o" .Input.s "$1" }}', "Hell$1 W$1rld"),
    ('{{ regexFindAll "[a-z]+" .Input.s -1 }} {{ regexFind "W.r" .Input.s }}', "[ello orld] Wor"),
    ('{{ regexSplit "o" .Input.s -1 }} {{ regexSplit "o" .Input.s 2 }}', "[Hell  W rld] [Hell  World]"),
    ('{{ regexQuoteMeta "a.b*c" }} {{ regexMatch "^H" .Input.s }}', "a\\.b\\*c true"),
    ("{{ base .Input.p }} {{ dir .Input.p }} {{ ext .Input.p }} {{ clean .Input.p }} {{ isAbs .Input.p }}",
     "c.txt /a .txt /a/c.txt true"),
    ('{{ abbrev 8 .Input.s }} {{ abbrevboth 5 10 "1234567890abcdefgh" }} {{ initials .Input.s }}',
     "Hello... ...6789... HW"),
    ('{{ plural "one" "many" 2 }} {{ trimall "H" "HaH" }} {{ splitn "l" 2 .Input.s }}',
     "many a map[_0:He _1:lo World]"),
    ('{{ b32enc "hi" }} {{ b32enc "hi" | b32dec }} {{ adler32sum "hi" }} {{ sha512sum "" | trunc 8 }}',
     "NBUQ==== hi 20644050 cf83e135"),
    ("{{ addf 1.1 2.2 }} {{ subf 1 0.9 }} {{ mulf 1.1 3 }} {{ divf 1 3 }} {{ maxf 1 2.5 }} {{ minf 1 2.5 }}",
     "3.3 0.1 3.3 0.3333333333333333 2.5 1"),
    ("{{ ceil 1.2 }} {{ floor 1.8 }} {{ round 3.14159 2 }} {{ round 2.5 0 }} {{ toDecimal \"777\" }}",
     "2 1 3.14 3 511"),
    ("{{ typeOf .Input.strs }} {{ typeOf (splitList \",\" \"a\") }} {{ kindOf .Input.obj }} {{ typeIs \"string\" "
     ".Input.s }} {{ kindIs \"slice\" .Input.strs }}", "[]interface {} []string map true true"),
    ('{{ deepEqual (list 1) (list 1) }} {{ deepEqual 1 1.0 }} {{ all 1 "a" }} {{ any 0 "" }}',
     "true false true false"),
    ('{{ env "HOME" }}|{{ expandenv "a$HOME-${X}b$" }}', "|a-b$"),  # no environment, by design
    ('{{ mustFirst .Input.strs }} {{ mustToJson .Input.obj }} {{ hello }}', 'b {"x":1,"y":{"z":2}} Hello!'),
], ids=lambda v: v[:40])
def test_more_of_sprig(tpl, out):
    assert render(tpl) == out


def test_random_functions_have_the_right_shape():
    out = render('{{ randAlphaNum 8 }} {{ randNumeric 4 }} {{ uuidv4 }} {{ randInt 1 2 }}').split()
    assert len(out[0]) == 8 and out[0].isalnum() and out[1].isdigit() and len(out[2]) == 36 and out[3] == "1"


@pytest.mark.parametrize("tpl", ['{{ until 100000000 }}', '{{ untilStep 0 1000000000000 1 }}', '{{ randAlpha 100000000 }}',
                                 '{{ regexReplaceAll "" (repeat 600000 "x") "yy" }}'])
def test_new_functions_are_bounded(tpl):
    with pytest.raises(TemplateError, match="exceeds"):
        render(tpl)
