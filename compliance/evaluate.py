"""From a pack's raw/ folder to `results.json` (format: tests/unit/evidence_sample.py).

Only what was collected counts: each subject's artifacts come from raw/<subject>/ and
raw/collection.json (what produced each file, its exit status, when). Nothing here reaches a host.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from compliance import catalogs
from compliance.checks import CHECKS, FAIL, MANUAL, NA, PASS, Facts, Outcome, evaluate

SCHEMA = "airlock-evidence/1"
NOT_COLLECTED = {
    "cloud": "no cloud account was collected (airlock evidence build --aws-region ... collects one)",
    "pulumi": "no Pulumi stack state was collected (--pulumi-export FILE or --pulumi-stack NAME)",
    "dr": "no host and no disaster-recovery drill report was collected (--inventory, --drill-report)",
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_collection(pack: Path) -> dict:
    return json.loads((pack / "raw" / "collection.json").read_text())


def subject_facts(pack: Path, collection: dict) -> list[Facts]:
    subjects = []
    for name, meta in sorted(collection["subjects"].items()):
        artifacts = {}
        for entry in collection["artifacts"]:
            if entry["subject"] != name:
                continue
            path = pack / entry["path"]
            content = path.read_text(errors="replace") if path.is_file() else None
            if content is not None:
                artifacts[Path(entry["path"]).name] = {**entry, "content": content}
        subjects.append(Facts(name, meta["kind"], artifacts, {**collection["context"], **meta["context"]}))
    kinds = {f.kind for f in subjects}
    if "host" in kinds and "dr" not in kinds:  # hosts collected before drills were: judged without a report
        subjects.append(Facts("dr", "dr", {}, dict(collection["context"])))
    return subjects


def control_status(statuses: list[str]) -> str:
    if not statuses:
        return MANUAL
    if FAIL in statuses:
        return FAIL
    return PASS if PASS in statuses else NA


def run_checks(subjects: list[Facts]) -> list[Outcome]:
    outcomes = []
    for facts in subjects:
        outcomes += [evaluate(c, facts) for c in CHECKS.values() if c.scope == facts.kind]
    for scope, reason in NOT_COLLECTED.items():
        if not any(f.kind == scope for f in subjects):
            outcomes += [Outcome(c.id, scope, NA, reason) for c in CHECKS.values() if c.scope == scope]
    return outcomes


def frameworks(outcomes: list[Outcome]) -> list[dict]:
    by_check: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_check.setdefault(outcome.check, []).append(outcome)
    rendered = []
    for catalog in catalogs.load_all():
        controls = []
        for control in catalog["controls"]:
            entries = [o for check_id in control["checks"] for o in by_check.get(check_id, [])]
            controls.append(
                {
                    "id": control["id"],
                    "title": control["title"],
                    "status": control_status([o.status for o in entries]),
                    "checks": [{"id": o.check, "subject": o.subject, "status": o.status} for o in entries],
                    "manual": control.get("manual"),
                }
            )
        summary = {s: sum(c["status"] == s for c in controls) for s in (PASS, FAIL, NA, MANUAL)}
        rendered.append(
            {"id": catalog["id"], "title": catalog["title"], "summary": summary, "controls": controls}
        )
    return rendered


def inventory(subjects: list[Facts], collection: dict) -> dict:
    """What auditors ask for besides pass/fail, from the same artifacts the checks read."""
    found: dict[str, list] = {
        "models": [],
        "api_keys": [],
        "ssh_keys": [],
        "sudoers": [],
        "audit_samples": [],
    }

    def read(facts: Facts, name: str, parse):
        try:
            return parse(facts.text(name)) or []
        except Exception:
            return []

    for facts in (f for f in subjects if f.kind == "host"):
        host = facts.subject
        manifest = read(facts, "model_manifest.yaml", yaml.safe_load)
        keep = ("name", "version", "kind", "checksum", "approved_by", "import_date", "restricted_to")
        found["models"] += [
            {**{k: str(m.get(k, "")) for k in keep}, "host": host} for m in (manifest or {}).get("models", [])
        ]
        found["api_keys"] += [
            {
                "key_id": k["key_id"],
                "tenant": k["tenant"],
                "permissions": k["permissions"],
                "status": k["status"],
                "expires": k.get("expires_at") or "never",
                "host": host,
            }
            for k in read(facts, "apikeys.json", json.loads)
        ]
        found["ssh_keys"] += [
            {"host": host, "user": k["user"], "fingerprint": k["fingerprint"], "comment": k["comment"]}
            for k in read(facts, "authorized_keys.json", json.loads)
        ]
        found["sudoers"] += [
            {"host": host, "line": s["line"]} for s in read(facts, "sudoers.json", json.loads) if "line" in s
        ]
        found["audit_samples"] += [
            {"host": host, "category": Path(s["file"]).stem, "record": s["record"]}
            for s in read(facts, "audit_samples.json", json.loads)
        ]
    found["topology"] = topology(subjects, collection)
    return found


def topology(subjects: list[Facts], collection: dict) -> dict:
    policy = collection["context"]["egress_policy"]
    hosts = []
    for facts in (f for f in subjects if f.kind == "host"):
        ports = sorted({facts.context["ssh_port"], facts.context["service_port"]})
        hosts.append({"name": facts.subject, "address": facts.context["address"], "listening": ports})
    cloud = None
    aws = next((f for f in subjects if f.kind == "cloud"), None)
    if aws is not None:
        state = aws.json("aws.json")["facts"]
        vpc = (state.get("vpcs") or [{}])[0]
        cloud = {
            "vpc": {"id": vpc.get("id", "?"), "cidr": ", ".join(vpc.get("cidr_blocks", []))},
            "subnets": [
                {
                    "id": s["id"],
                    "cidr": s.get("cidr", s.get("cidr_block", "")),
                    "zone": s["availability_zone"],
                }
                for s in state.get("subnets", [])
            ],
            "endpoints": [
                {"id": e["id"], "service": e["service"].rsplit(".", 1)[-1], "type": e["type"]}
                for e in state.get("vpc_endpoints", [])
            ],
            "internet_gateways": [  # as the diagram draws them: id and attachments, attached ones only
                {"id": g["id"], "attachments": g["attachments"]}
                for g in state.get("internet_gateways", [])
                if g.get("attachments")
            ],
        }
    return {
        "hosts": hosts,
        "networks": {name: list(cidrs) for name, cidrs in sorted(policy["networks"].items())},
        "inbound": [
            {
                "name": "management-ssh",
                "from": policy["management_ssh"]["from"],
                "proto": "tcp",
                "ports": [policy["management_ssh"]["port"]],
            },
            {
                "name": "service-api",
                "from": policy["service_api"]["from"],
                "proto": "tcp",
                "ports": [policy["service_api"]["port"]],
            },
        ],
        "outbound": [
            {"name": r["name"], "to": r["to"], "proto": r["proto"], "ports": r["ports"]}
            for r in policy["allow"]
        ],
        "cloud": cloud,
    }


def build_results(pack: Path, generated_at: str) -> dict:
    collection = load_collection(pack)
    subjects = subject_facts(pack, collection)
    outcomes = run_checks(subjects)
    artifacts = [
        {
            "path": e["path"],
            "sha256": sha256_file(pack / e["path"]),
            "source": e["source"],
            "subject": e["subject"],
            "collected_at": e["collected_at"],
        }
        for e in sorted(collection["artifacts"], key=lambda e: e["path"])
        if (pack / e["path"]).is_file()
    ]
    return {
        "schema": SCHEMA,
        "system": collection["system"],
        "generated_at": generated_at,
        "collector_versions": collection["collector_versions"],
        "artifacts": artifacts,
        "checks": [
            {
                "id": o.check,
                "title": CHECKS[o.check].title,
                "subject": o.subject,
                "status": o.status,
                "reason": o.reason,
                "evidence": [f"raw/{o.subject}/{name}" for name in o.evidence],
            }
            for o in sorted(outcomes, key=lambda o: (o.check, o.subject))
        ],
        "frameworks": frameworks(outcomes),
        "inventory": inventory(subjects, collection),
    }
