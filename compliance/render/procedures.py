"""The pack's procedures: incident response and disaster recovery runbooks, filled with the deployment's
real unit names, paths and inventory so an on-call engineer can run them as written.

`facts`: {"system": ..., "inventory": ..., "hosts": [{"name", "address", "service_unit", "config",
"audit_root", "registry_root", "apikeys", "outputs", "output_keys", "prompt_keys", "signing_key",
"tls_dir", "bundle_dir", "airlock" (the CLI's path on the host), "port"}, ...]}.
"""

from __future__ import annotations

import posixpath

import jinja2

TEMPLATES = {
    "incident-response.md": "incident-response.md.j2",
    "disaster-recovery.md": "disaster-recovery.md.j2",
}

# Markdown, not HTML: no autoescape. StrictUndefined: a missing fact fails here, not as a blank in a runbook.
_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("compliance", "templates"),
    autoescape=False,  # noqa: S701 - the output is Markdown for people to read, never served as HTML
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
# Host paths are POSIX whatever the controller runs.
_ENV.filters["dirname"] = posixpath.dirname
_ENV.filters["basename"] = posixpath.basename


def render_procedures(results: dict, facts: dict) -> dict[str, str]:
    """The runbooks by file name (under the pack's procedures/), rendered from the deployment's facts."""
    hosts = sorted(facts["hosts"], key=lambda h: h["name"])
    context = {
        "system": facts["system"],
        "inventory": facts["inventory"],
        "hosts": hosts,
        "generated_at": results["generated_at"],
    }
    return {name: _ENV.get_template(template).render(context) for name, template in TEMPLATES.items()}
