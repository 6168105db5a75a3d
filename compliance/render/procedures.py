"""The pack's procedures: incident response and disaster recovery runbooks, filled with the deployment's
real unit names, paths and inventory so an on-call engineer can run them as written.

`facts`: {"system": ..., "inventory": ..., "hosts": [{"name", "address", "service_unit", "config",
"audit_root", "registry_root", "apikeys", "outputs", "output_keys", "prompt_keys", "signing_key",
"tls_dir", "bundle_dir", "airlock" (the CLI's path on the host), "port"}, ...]}. Optional: per host
"backup_status" (default: next to the API key store), "backup" (what its backup status recorded:
{"classes": [...], "repositories": [{"name", "location", "encryption"}]}); "drill" (the latest
restore drill: id, host, finished_at, result, rto/rpo measured and targets, the check's status and
reason) and "drill_max_age_days".
"""

from __future__ import annotations

import posixpath

import jinja2

from compliance import DRILL_MAX_AGE_DAYS

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


def duration(seconds) -> str:
    """312.4 -> "312 s (5.2 min)"; None (a drill that measured nothing) -> "not measured"."""
    if seconds is None:
        return "not measured"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds:.0f} s ({seconds / 60:.1f} min)"
    if seconds < 172800:
        return f"{seconds:.0f} s ({seconds / 3600:.1f} h)"
    return f"{seconds:.0f} s ({seconds / 86400:.1f} days)"


def interval(seconds) -> str:
    """A schedule: 3600 -> "1 h", 86400 -> "1 day", anything else as a duration."""
    if isinstance(seconds, int | float) and seconds > 0:
        for unit, size in (("day", 86400), ("h", 3600)):
            if seconds % size == 0:
                count = int(seconds // size)
                return f"{count} {unit}" + ("s" if unit == "day" and count > 1 else "")
    return duration(seconds)


_ENV.filters["duration"] = duration
_ENV.filters["interval"] = interval


def render_procedures(results: dict, facts: dict) -> dict[str, str]:
    """The runbooks by file name (under the pack's procedures/), rendered from the deployment's facts."""
    hosts = []
    for given in sorted(facts["hosts"], key=lambda h: h["name"]):
        host = {
            "backup": None,
            "backup_status": posixpath.join(posixpath.dirname(given["apikeys"]), "backup", "status.json"),
            **given,
        }
        # Repository locations by name as the host recorded them; placeholders where nothing was.
        recorded = {r["name"]: r["location"] for r in (host["backup"] or {}).get("repositories", [])}
        host["repository"] = {"data": "DATA_REPOSITORY", "keys": "KEYS_REPOSITORY", **recorded}
        hosts.append(host)
    context = {
        "system": facts["system"],
        "inventory": facts["inventory"],
        "hosts": hosts,
        "generated_at": results["generated_at"],
        "drill": facts.get("drill"),
        "drill_max_age_days": facts.get("drill_max_age_days", DRILL_MAX_AGE_DAYS),
    }
    return {name: _ENV.get_template(template).render(context) for name, template in TEMPLATES.items()}
