"""The pack's OSCAL 1.2.1 documents: assessment plan, assessment results and POA&M, from results.json.

Plain dicts in, plain dicts out. Nothing here reads the clock or the environment: every timestamp comes
from the results and every UUID is a uuid5 of stable strings, so the same results always give the same
JSON (packs are compared byte for byte across builds).
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from datetime import datetime
from pathlib import Path

import jsonschema
import pydantic
import regex

OSCAL_VERSION = "1.2.1"
# Fixed forever: changing it changes every UUID of every pack.
NAMESPACE = uuid.UUID("5d0c7a52-3f0e-4f8e-9a51-6b2f3c1d8e47")
# Namespace of the props Airlock defines (OSCAL reserves un-namespaced names for NIST's own).
NS = "urn:airlock:oscal"
# The assessment results import the plan from the same folder of the pack.
PLAN_FILE = "assessment-plan.json"
SCHEMAS = Path(__file__).resolve().parent.parent / "oscal_schemas"
SCHEMA_FILES = {
    "assessment-plan": "oscal_assessment-plan_schema.json",
    "assessment-results": "oscal_assessment-results_schema.json",
    "plan-of-action-and-milestones": "oscal_poam_schema.json",
}


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(parts)))


def _prop(name: str, value: str) -> dict:
    return {"name": name, "ns": NS, "value": value}


def control_token(framework: str, control: str) -> str:
    """An OSCAL token (NCName) for a framework's control: "hipaa", "164.312(e)(1)" -> "hipaa-164.312_e_1"."""
    token = re.sub(r"[^a-z0-9._-]+", "_", f"{framework}-{control}".lower()).strip("_")
    return token if re.match(r"[a-z_]", token) else "_" + token


def _run(results: dict) -> tuple[str, str]:
    """What identifies this assessment run: UUIDs of per-run objects are derived from it."""
    return results["system"]["name"], results["generated_at"]


def _metadata(results: dict, title: str) -> dict:
    return {
        "title": title,
        "last-modified": results["generated_at"],
        "version": results["generated_at"],
        "oscal-version": OSCAL_VERSION,
        "props": [_prop("generator", f"airlock {results['collector_versions']['airlock']}")],
    }


def _system_resource(results: dict) -> dict:
    """Stands in for the SSP, which does not exist: what the system is and where it was described."""
    system = results["system"]
    cloud = system.get("cloud")
    lines = [f"Inventory: `{system['inventory']}`.", f"Hosts: {', '.join(system['hosts']) or 'none'}."]
    if cloud:
        lines.append(f"Cloud: {cloud['provider']} account {cloud['account']}, region {cloud['region']}.")
    return {
        "uuid": _uuid("system", system["name"]),
        "title": f"System {system['name']} (no OSCAL SSP exists)",
        "description": "\n\n".join(lines),
    }


def _subjects(results: dict) -> dict[str, dict]:
    """Inventory items by subject name: the hosts, the cloud account and whatever else a check ran on."""
    system = results["system"]
    cloud = system.get("cloud")
    names = [*system["hosts"], *(["cloud"] if cloud else []), *(c["subject"] for c in results["checks"])]
    items = {}
    for name in dict.fromkeys(names):
        if name == "cloud":
            description = (
                f"{cloud['provider']} account {cloud['account']} in {cloud['region']}"
                if cloud
                else "Cloud account (not collected)"
            )
        elif name in system["hosts"]:
            description = f"Host {name} of inventory {system['inventory']}"
        elif name == "dr":
            description = "Restore drills (`airlock dr drill` reports, read on the controller)"
        else:
            description = f"Subject {name}"
        items[name] = {
            "uuid": _uuid("subject", system["name"], name),
            "description": description,
            "props": [{"name": "asset-id", "value": name}],
        }
    return items


def _subject_ref(results: dict, name: str) -> dict:
    return {"subject-uuid": _subjects(results)[name]["uuid"], "type": "inventory-item", "title": name}


def _reviewed_controls(results: dict) -> dict:
    selections = []
    for framework in results["frameworks"]:
        if not framework["controls"]:
            continue
        tokens = [(control_token(framework["id"], c["id"]), c["id"]) for c in framework["controls"]]
        selections.append(
            {
                "description": framework["title"],
                "props": [_prop("framework", framework["id"])],
                "include-controls": [{"control-id": token} for token, _ in tokens],
                # select-control-by-id has no props: the framework's own ids are kept here.
                "remarks": "\n".join(f"- `{token}`: {original}" for token, original in tokens),
            }
        )
    return {
        "description": "Every control of every framework the pack reports on.",
        "control-selections": selections,
    }


def _artifacts(results: dict) -> dict[str, dict]:
    return {a["path"]: a for a in results["artifacts"]}


def _resource_uuid(results: dict, path: str) -> str:
    return _uuid("artifact", *_run(results), path)


def _resources(results: dict, paths: list[str]) -> list[dict]:
    artifacts = _artifacts(results)
    return [
        {
            "uuid": _resource_uuid(results, path),
            "title": path,
            "description": f"From {artifacts[path]['subject']} at {artifacts[path]['collected_at']}.",
            "props": [_prop("source", artifacts[path]["source"])],
            "rlinks": [
                {"href": path, "hashes": [{"algorithm": "SHA-256", "value": artifacts[path]["sha256"]}]}
            ],
        }
        for path in paths
    ]


def _latest(timestamps: list[str]) -> str:
    # Compared as instants, not strings: offsets may differ.
    return max(timestamps, key=datetime.fromisoformat)


def _observation_uuid(results: dict, check: dict) -> str:
    return _uuid("observation", *_run(results), check["id"], check["subject"])


def _observation(results: dict, check: dict) -> dict:
    artifacts = _artifacts(results)
    missing = [path for path in check["evidence"] if path not in artifacts]
    if missing:
        raise ValueError(f"check {check['id']} on {check['subject']} cites unknown artifacts: {missing}")
    observation = {
        "uuid": _observation_uuid(results, check),
        "title": f"{check['id']} on {check['subject']}",
        "description": f"{check['title']}: {check['status']}. {check['reason']}",
        "props": [_prop("check-id", check["id"]), _prop("status", check["status"])],
        "methods": ["TEST"],
        "types": ["finding"],
        "subjects": [_subject_ref(results, check["subject"])],
        # The observation is complete once its last artifact was collected.
        "collected": _latest(
            [artifacts[p]["collected_at"] for p in check["evidence"]] or [results["generated_at"]]
        ),
    }
    if check["evidence"]:
        observation["relevant-evidence"] = [
            {"href": f"#{_resource_uuid(results, path)}", "description": f"{path}: {check['reason']}"}
            for path in check["evidence"]
        ]
    return observation


def _check_index(results: dict) -> dict[tuple[str, str], dict]:
    return {(c["id"], c["subject"]): c for c in results["checks"]}


# OSCAL's state is only satisfied | not-satisfied. A manual or not-applicable control was not shown to
# be satisfied by any evidence in the pack, so it is not-satisfied with the schema's reason "other" (its
# other values are "pass" and "fail", which would misstate it); the remarks and the status prop say why.
STATES = {
    "pass": ("satisfied", "pass"),
    "fail": ("not-satisfied", "fail"),
    "manual": ("not-satisfied", "other"),
    "not_applicable": ("not-satisfied", "other"),
}


def _finding(results: dict, framework: dict, control: dict) -> dict:
    checks = _check_index(results)
    used = [checks[(c["id"], c["subject"])] for c in control["checks"]]
    state, reason = STATES[control["status"]]
    status = {"state": state, "reason": reason}
    if control["status"] == "manual":
        status["remarks"] = f"manual: {control['manual']}"
    elif control["status"] == "not_applicable":
        status["remarks"] = "not applicable: " + ("; ".join(c["reason"] for c in used) or "no check applied")
    finding = {
        "uuid": _uuid("finding", *_run(results), framework["id"], control["id"]),
        "title": f"{framework['id']} {control['id']}: {control['title']}",
        "description": "\n".join(f"- {c['id']} on {c['subject']}: {c['status']}. {c['reason']}" for c in used)
        or "No automated check covers this control.",
        "target": {
            "type": "objective-id",
            "target-id": control_token(framework["id"], control["id"]),
            "props": [
                _prop("framework", framework["id"]),
                _prop("control-id", control["id"]),
                _prop("status", control["status"]),
            ],
            "status": status,
        },
    }
    if used:
        finding["related-observations"] = [{"observation-uuid": _observation_uuid(results, c)} for c in used]
    if control["manual"] and control["status"] != "manual":
        finding["remarks"] = f"manual: {control['manual']}"
    return finding


def _select(subjects: dict[str, dict], names) -> list[dict]:
    return [{"subject-uuid": subjects[n]["uuid"], "type": "inventory-item"} for n in names]


def assessment_plan(results: dict) -> dict:
    """The plan: what was assessed (controls, subjects) and by which automated checks."""
    name = results["system"]["name"]
    subjects = _subjects(results)
    controls_by_check: dict[str, list[str]] = {}
    for framework in results["frameworks"]:
        for control in framework["controls"]:
            for check in control["checks"]:
                tokens = controls_by_check.setdefault(check["id"], [])
                tokens.append(control_token(framework["id"], control["id"]))
    activities, associations = [], []
    for check_id, title in {c["id"]: c["title"] for c in results["checks"]}.items():
        activity = {
            "uuid": _uuid("activity", name, check_id),
            "title": title,
            "description": f"Automated check `{check_id}`: {title}.",
            "props": [_prop("check-id", check_id)],
        }
        if check_id in controls_by_check:
            selection = [{"control-id": t} for t in dict.fromkeys(controls_by_check[check_id])]
            activity["related-controls"] = {"control-selections": [{"include-controls": selection}]}
        activities.append(activity)
        ran_on = dict.fromkeys(c["subject"] for c in results["checks"] if c["id"] == check_id)
        associations.append(
            {
                "activity-uuid": activity["uuid"],
                "subjects": [{"type": "inventory-item", "include-subjects": _select(subjects, ran_on)}],
            }
        )
    plan = {
        "uuid": _uuid("assessment-plan", *_run(results)),
        "metadata": _metadata(results, f"Assessment plan for {name}"),
        "import-ssp": {"href": f"#{_system_resource(results)['uuid']}"},
        "local-definitions": {"inventory-items": list(subjects.values())},
        "reviewed-controls": _reviewed_controls(results),
        "assessment-subjects": [{"type": "inventory-item", "include-subjects": _select(subjects, subjects)}],
        "back-matter": {"resources": [_system_resource(results)]},
    }
    if activities:
        plan["local-definitions"]["activities"] = activities
        plan["tasks"] = [
            {
                "uuid": _uuid("task", name),
                "type": "action",
                "title": "Automated evidence collection and checks",
                "description": "Airlock's collectors gather the raw evidence; each activity is one check.",
                "associated-activities": associations,
            }
        ]
    return {"assessment-plan": plan}


def assessment_results(results: dict) -> dict:
    """One result: an observation per check run, a finding per control, the artifacts in back-matter."""
    name = results["system"]["name"]
    collected = [a["collected_at"] for a in results["artifacts"]]
    result = {
        "uuid": _uuid("result", *_run(results)),
        "title": f"Automated assessment of {name}",
        "description": f"Evidence collected from {name} and evaluated by Airlock's automated checks.",
        "start": min(collected, key=datetime.fromisoformat) if collected else results["generated_at"],
        "end": results["generated_at"],
        "local-definitions": {"inventory-items": list(_subjects(results).values())},
        "reviewed-controls": _reviewed_controls(results),
    }
    if results["checks"]:
        result["observations"] = [_observation(results, c) for c in results["checks"]]
    findings = [_finding(results, f, c) for f in results["frameworks"] for c in f["controls"]]
    if findings:
        result["findings"] = findings
    document = {
        "uuid": _uuid("assessment-results", *_run(results)),
        "metadata": _metadata(results, f"Assessment results for {name}"),
        "import-ap": {"href": PLAN_FILE},
        "results": [result],
    }
    if results["artifacts"]:
        document["back-matter"] = {"resources": _resources(results, list(_artifacts(results)))}
    return {"assessment-results": document}


def poam(results: dict) -> dict:
    """A POA&M item per failed control, pointing at the observations of the checks that failed."""
    name = results["system"]["name"]
    checks = _check_index(results)
    items, failed = [], {}
    for framework in results["frameworks"]:
        for control in framework["controls"]:
            if control["status"] != "fail":
                continue
            bad = [checks[(c["id"], c["subject"])] for c in control["checks"] if c["status"] == "fail"]
            failed.update({(c["id"], c["subject"]): c for c in bad})
            items.append(
                {
                    "uuid": _uuid("poam-item", name, framework["id"], control["id"]),
                    "title": f"{framework['id']} {control['id']}: {control['title']}",
                    "description": "Failed checks:\n"
                    + "\n".join(f"- {c['id']} on {c['subject']}: {c['reason']}" for c in bad),
                    "props": [_prop("framework", framework["id"]), _prop("control-id", control["id"])],
                    "related-observations": [
                        {"observation-uuid": _observation_uuid(results, c)} for c in bad
                    ],
                }
            )
    if not items:
        # poam-items must have at least one entry; an explicit "nothing open" item keeps the POA&M valid
        # and says so in words rather than leaving an auditor to wonder whether the list was dropped.
        items.append(
            {
                "uuid": _uuid("poam-item", name, "none-open"),
                "title": "No open items",
                "description": f"No control failed its automated checks at {results['generated_at']}.",
            }
        )
    observations = [_observation(results, c) for c in failed.values()]
    evidence = list(dict.fromkeys(p for c in failed.values() for p in c["evidence"]))
    document = {
        "uuid": _uuid("poam", *_run(results)),
        "metadata": _metadata(results, f"Plan of action and milestones for {name}"),
        "import-ssp": {"href": f"#{_system_resource(results)['uuid']}"},
        "local-definitions": {"inventory-items": list(_subjects(results).values())},
        **({"observations": observations} if observations else {}),
        "poam-items": items,
        "back-matter": {"resources": [_system_resource(results), *_resources(results, evidence)]},
    }
    return {"plan-of-action-and-milestones": document}


def _regex_pattern(validator, pattern, instance, schema):
    # NIST's patterns use \p{L} / \p{N}, which `re` cannot compile.
    if validator.is_type(instance, "string") and not regex.search(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.cache
def _schema_validator(key: str) -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / SCHEMA_FILES[key]).read_text())
    cls = jsonschema.validators.extend(jsonschema.Draft7Validator, {"pattern": _regex_pattern})
    return cls(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


@functools.cache
def _trestle_model(key: str) -> type[pydantic.BaseModel]:
    # Imported on first use: trestle builds hundreds of pydantic models at import time.
    from trestle.oscal.assessment_plan import AssessmentPlan
    from trestle.oscal.assessment_results import AssessmentResults
    from trestle.oscal.poam import PlanOfActionAndMilestones

    return {
        "assessment-plan": AssessmentPlan,
        "assessment-results": AssessmentResults,
        "plan-of-action-and-milestones": PlanOfActionAndMilestones,
    }[key]


def validate(document: dict) -> list[str]:
    """Problems with an OSCAL document, by NIST's JSON schema and by trestle's models; [] if valid."""
    if len(document) != 1 or next(iter(document)) not in SCHEMA_FILES:
        return [f"expected one top-level key of {sorted(SCHEMA_FILES)}, got {sorted(document)}"]
    key = next(iter(document))
    problems = []
    for error in sorted(
        _schema_validator(key).iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]
    ):
        # best_match descends into anyOf branches to the error that explains the failure.
        best = jsonschema.exceptions.best_match([error])
        where = "/".join(str(p) for p in best.absolute_path)
        problems.append(f"schema: {where}: {best.message}")
    try:
        _trestle_model(key).model_validate(document[key])
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            where = "/".join(str(p) for p in (key, *error["loc"]))
            problems.append(f"trestle: {where}: {error['msg']}")
    return problems
