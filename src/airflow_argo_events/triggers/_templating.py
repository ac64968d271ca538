"""Jinja in operator fields that also carry Argo's Go templates.

Argo manifests use Go templates (``{{ .Input.body.id }}``, ``{{ b64dec .Input }}``) in
filters, transforms and trigger parameters; Airflow renders templated fields with Jinja,
which would reject or mangle them. Operators mixing in ``GoTemplateSafe`` render only strings
that hold Jinja and leave Go templates (and plain strings) exactly as written, so
``render_template_as_native_obj`` never turns an Argo value such as ``"1"`` into an int.
"""

from __future__ import annotations

import re
from typing import Any

_BLOCK = re.compile(r"\{\{(.*?)\}\}", re.S)
# A Go template action refers to the data with a leading dot (".Input", "." alone) or a
# variable ("$x"); Jinja's dots always follow a name ("params.x").
_GO_ACTION = re.compile(r"^-?\s*[.$]|[\s(]\.[A-Za-z_]|[\s(]\$\w")
_JINJA_MARK = re.compile(r"\{\{|\{%|\{#")


def is_go_template(text: str) -> bool:
    """Whether ``text`` holds an Argo (Go) template action.

    >>> is_go_template("{{ .Input.body.id }}"), is_go_template("{{ params.cond }}")
    (True, False)
    """
    return any(_GO_ACTION.search(block) for block in _BLOCK.findall(text))


def has_jinja(value: Any) -> bool:
    """Whether any string inside ``value`` would be rendered by Jinja (not a Go template)."""
    if isinstance(value, str):
        return bool(_JINJA_MARK.search(value)) and not is_go_template(value)
    if isinstance(value, dict):
        return any(has_jinja(v) for v in value.values())
    if isinstance(value, (list, tuple, set)):
        return any(has_jinja(v) for v in value)
    return getattr(value, "resolve", None) is not None  # an XComArg / other lazy value


class GoTemplateSafe:
    """Mixin for operators: Jinja renders only strings with Jinja in them (see the module doc)."""

    def render_template(self, content: Any, context: Any, jinja_env: Any = None, seen_oids: Any = None) -> Any:
        if isinstance(content, str) and not has_jinja(content):
            return content
        return super().render_template(content, context, jinja_env, seen_oids)  # type: ignore[misc]
