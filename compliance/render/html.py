"""The pack's `index.html`: one self-contained page an auditor can read on screen or on paper.

No external assets (inline CSS, the diagram's SVG inlined, no scripts), every value from the results
escaped by jinja2's autoescape, and nothing time- or environment-dependent: the same results always
render to the same bytes.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from urllib.parse import quote

import jinja2
from markupsafe import Markup

STATUS_LABELS = {"pass": "PASS", "fail": "FAIL", "manual": "MANUAL", "not_applicable": "NOT APPLICABLE"}
# Dropped from the inlined SVG: `dot` never writes them, and a page for auditors must not run anything.
UNSAFE_SVG_TAGS = {"script", "foreignObject", "iframe", "object", "embed"}

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("compliance", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def _slug(*parts: str) -> str:
    """An HTML id from parts: safe in an id and in a `#fragment` without encoding."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "--".join(parts))


def check_anchor(check_id: str, subject: str) -> str:
    """The HTML id of a check's section (the control tables link to it)."""
    return "check-" + _slug(check_id, subject)


def _href(path: str) -> str:
    # Percent-encoding keeps plain pack paths as they are and turns a `scheme:` into a relative path.
    return quote(path, safe="/")


def _inline_svg(svg: str) -> Markup:
    """The SVG as inline HTML: re-serialized from a parse, so it is well-formed and carries no XML prolog,
    comments, namespace URLs (the page has no http references), scripts, event handlers or links."""
    root = ET.fromstring(svg)  # noqa: S314 - the SVG is ours (dot's output); expat fetches no external entities
    for element in list(root.iter()):
        element.tag = element.tag.rpartition("}")[2]
        for unsafe in [child for child in element if child.tag.rpartition("}")[2] in UNSAFE_SVG_TAGS]:
            element.remove(unsafe)
        attributes = {name.rpartition("}")[2]: value for name, value in element.attrib.items()}
        element.attrib = {
            name: value
            for name, value in attributes.items()
            if not name.lower().startswith("on") and name not in {"href", "src"}
        }
    return Markup(ET.tostring(root, encoding="unicode"))  # noqa: S704 - re-serialized and stripped above


def render_index(results: dict, diagram_svg: str | None) -> str:
    """The pack's index.html from its results and the diagram's SVG (None: the page says it is missing)."""
    inventory = results.get("inventory") or {}
    used_by: dict[tuple[str, str], list[str]] = {}
    for framework in results["frameworks"]:
        for control in framework["controls"]:
            for check in control["checks"]:
                used_by.setdefault((check["id"], check["subject"]), []).append(
                    f"{framework['id']} {control['id']}"
                )
    checks = [
        {
            **check,
            "anchor": check_anchor(check["id"], check["subject"]),
            "used_by": used_by.get((check["id"], check["subject"]), []),
        }
        for check in results["checks"]
    ]
    samples = [
        {**s, "pretty": json.dumps(s["record"], indent=2, sort_keys=True, ensure_ascii=False)}
        for s in inventory.get("audit_samples") or []
    ]
    return _ENV.get_template("index.html.j2").render(
        system=results["system"],
        generated_at=results["generated_at"],
        schema=results.get("schema", ""),
        collector_versions=results.get("collector_versions") or {},
        frameworks=results["frameworks"],
        checks=checks,
        artifacts=results["artifacts"],
        models=inventory.get("models") or [],
        api_keys=inventory.get("api_keys") or [],
        ssh_keys=inventory.get("ssh_keys") or [],
        sudoers=inventory.get("sudoers") or [],
        audit_samples=samples,
        diagram=_inline_svg(diagram_svg) if diagram_svg else None,
        labels=STATUS_LABELS,
        anchor=check_anchor,
        slug=_slug,
        href=_href,
    )
