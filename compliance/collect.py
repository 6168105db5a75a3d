"""Collection: fill a pack's raw/ folder from the live system and describe it in raw/collection.json.

Hosts: playbooks/evidence.yml over the inventory's own SSH connection (Ansible runs the hosts in
parallel, `--forks`), then a TLS probe from this controller to each host's API. Cloud: the read-only
AWS collector. Disaster recovery: the newest `airlock dr drill` report (subject "dr"). Every file
written records what produced it; secrets are never collected.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import yaml

from airlock import __version__
from airlock.errors import AirlockError
from airlock.policy.egress import EgressPolicy, load_policy
from compliance import DRILL_MAX_AGE_DAYS, GOVCLOUD
from compliance.collectors import pulumi_state, tls
from compliance.collectors.host_probe import VERSION as HOST_PROBE_VERSION

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOK = ROOT / "playbooks" / "evidence.yml"


class CollectionError(AirlockError):
    pass


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def policy_context(policy: EgressPolicy) -> dict:
    return {
        "sha256": policy.sha256,
        "networks": {k: list(v) for k, v in policy.networks.items()},
        "management_ssh": {"port": policy.management_ssh.port, "from": list(policy.management_ssh.sources)},
        "service_api": {"port": policy.service_api.port, "from": list(policy.service_api.sources)},
        "allow": [{**asdict(r), "to": list(r.to), "ports": list(r.ports)} for r in policy.allow],
    }


class Collection:
    """raw/ and its index, written as artifacts arrive."""

    def __init__(self, pack: Path, system: dict, context: dict):
        self.pack, self.raw = pack, pack / "raw"
        self.raw.mkdir(parents=True)
        self.index: dict = {
            "system": system,
            "collector_versions": {"airlock": __version__, "host": HOST_PROBE_VERSION, "tls": tls.VERSION},
            "context": context,
            "subjects": {},
            "artifacts": [],
        }

    def add(
        self, subject: str, name: str, content: str | bytes, source: str, collected_at: str, **meta
    ) -> None:
        path = self.raw / subject / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        self.index["artifacts"].append(
            {
                "path": str(path.relative_to(self.pack)),
                "subject": subject,
                "source": source,
                "collected_at": collected_at,
                "rc": int(meta.get("rc", 0)),
                "stderr": meta.get("stderr", ""),
            }
        )

    def finish(self) -> None:
        self.index["artifacts"].sort(key=lambda a: a["path"])
        (self.raw / "collection.json").write_text(json.dumps(self.index, indent=2, sort_keys=True) + "\n")


def run_playbook(inventory: Path, raw_hosts: Path, limit: str | None, forks: int) -> None:
    ansible = Path(sys.executable).with_name("ansible-playbook")
    argv = [
        str(ansible if ansible.exists() else "ansible-playbook"),
        "-i",
        str(inventory),
        str(PLAYBOOK),
        "-e",
        f"evidence_raw_dir={raw_hosts}",
        "--forks",
        str(forks),
    ]
    if limit:
        argv += ["--limit", limit]
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_STDOUT_CALLBACK": "default"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise CollectionError(
            f"playbooks/evidence.yml failed (exit {done.returncode}); its last lines:\n{tail}"
        )


def add_host(collection: Collection, report: Path, target: dict) -> None:
    host = target["host"]
    probe = json.loads(report.read_text())
    for name, artifact in sorted(probe["artifacts"].items()):
        collection.add(
            host,
            name,
            artifact["content"],
            f"ssh {host}: {artifact['source']}",
            artifact["collected_at"],
            rc=artifact["rc"],
            stderr=artifact["stderr"],
        )
    started = utcnow()
    result = tls.probe(target["address"], int(target["port"]), target["server_name"], Path(target["ca_cert"]))
    collection.add(
        host,
        "tls_probe.json",
        json.dumps(result, indent=2, sort_keys=True) + "\n",
        f"controller: TLS handshakes to {target['address']}:{target['port']}",
        started,
    )
    if target.get("us_persons"):
        attestation = yaml.safe_load(Path(target["us_persons"]).read_text())
        collection.add(
            host,
            "attestation.json",
            json.dumps(attestation, indent=2, sort_keys=True, default=str) + "\n",
            f"controller: read {target['us_persons']} (the inventory's US-person attestation)",
            started,
        )
    collection.index["subjects"][host] = {
        "kind": "host",
        "context": {
            "address": target["address"],
            "service_port": int(target["port"]),
            "ssh_port": collection.index["context"]["egress_policy"]["management_ssh"]["port"],
            "paths": target["paths"],
        },
    }


def collect_hosts(collection: Collection, inventory: Path, limit: str | None, forks: int) -> None:
    with tempfile.TemporaryDirectory(prefix="airlock-evidence-") as tmp:
        run_playbook(inventory, Path(tmp), limit, forks)
        targets = sorted(Path(tmp).glob("*.target.json"))
        if not targets:
            raise CollectionError(f"{inventory}: no host in group gpu_hosts answered the evidence playbook")
        loaded = [json.loads(t.read_text()) for t in targets]
        with ThreadPoolExecutor(max_workers=max(1, forks)) as pool:  # TLS probes in parallel too
            list(pool.map(lambda t: add_host(collection, Path(tmp) / f"{t['host']}.json", t), loaded))


def collect_aws(
    collection: Collection,
    region: str,
    endpoint_url: str | None,
    vpc_id: str | None,
    internal_cidrs: list[str],
) -> None:
    from compliance.collectors import aws

    started = utcnow()
    result = aws.collect(
        region=region, endpoint_url=endpoint_url, vpc_id=vpc_id, internal_cidrs=internal_cidrs
    )
    collection.add(
        "cloud",
        "aws.json",
        json.dumps(result, indent=2, sort_keys=True, default=str) + "\n",
        f"aws api (read-only, compliance.collectors.aws) region {region}"
        + (f" vpc {vpc_id}" if vpc_id else ""),
        started,
    )
    collection.index["subjects"]["cloud"] = {"kind": "cloud", "context": {}}
    collection.index["system"]["cloud"] = {
        "provider": "aws",
        "account": result["account"],  # the account the read-only calls ran as (sts get-caller-identity)
        "region": region,
        "vpc": vpc_id,
    }
    collection.index["collector_versions"]["aws"] = aws.VERSION if hasattr(aws, "VERSION") else "1"


def collect_pulumi(collection: Collection, export_file: Path | None, stack: str | None) -> None:
    started = utcnow()
    text = export_file.read_text() if export_file else pulumi_state.export(stack or "", ROOT / "pulumi")
    source = f"controller: read {export_file}" if export_file else f"pulumi stack export --stack {stack}"
    try:
        found = pulumi_state.findings(json.loads(text))
    except json.JSONDecodeError as exc:
        raise CollectionError(f"{export_file or 'pulumi stack export'} is not JSON: {exc}") from exc
    # The export as it was (secrets stay encrypted: `pulumi stack export` without --show-secrets).
    collection.add("pulumi", "stack_export.json", text, source, started)
    findings = json.dumps(found, indent=2, sort_keys=True) + "\n"
    collection.add("pulumi", "stack_findings.json", findings, "compliance.collectors.pulumi_state", started)
    collection.index["subjects"]["pulumi"] = {"kind": "pulumi", "context": {}}
    collection.index["collector_versions"]["pulumi"] = pulumi_state.VERSION


def newest_drill_report(path: Path) -> tuple[Path | None, str]:
    """A report.json as given, or the newest `*/report.json` of a drills/ folder by its finished_at.

    Returns the report (None: the folder holds none) and how it was chosen. A report whose
    finished_at cannot be read ranks by when the file was written: a broken report newer than every
    readable one is the one copied (its check fails), rather than an older passing drill standing in.
    """
    if path.is_file():
        return path, f"controller: read {path}"
    if not path.is_dir():
        raise CollectionError(f"--drill-report {path}: no such file or folder")
    # Not .<id>.partial/: a drill still writing its report (airlock dr drill renames it when done).
    found = sorted(p for p in path.glob("*/report.json") if not p.parent.name.startswith("."))
    if not found:
        return None, ""

    def finished(report: Path) -> tuple[float, str]:
        try:
            when = datetime.fromisoformat(json.loads(report.read_text())["finished_at"])
            return when.timestamp(), str(report)
        except (ValueError, KeyError, TypeError, AttributeError):  # not JSON, no or no valid time
            return report.stat().st_mtime, str(report)

    chosen = max(found, key=finished)
    return chosen, f"controller: read {chosen} (newest of {len(found)} under {path} by finished_at)"


def collect_drill(collection: Collection, drill_report: Path | None) -> None:
    """The restore drill's report, copied as it is: the check judges it, the checksums cover it."""
    collection.index["subjects"]["dr"] = {"kind": "dr", "context": {}}
    if drill_report is None:
        return
    started = utcnow()
    chosen, source = newest_drill_report(drill_report)
    if chosen is None:
        collection.index["subjects"]["dr"]["context"]["drill_report_searched"] = str(drill_report)
        return
    collection.add("dr", "drill_report.json", chosen.read_bytes(), source, started)


def collect(
    pack: Path,
    *,
    system: str,
    inventory: Path | None,
    policy_path: Path,
    limit: str | None = None,
    forks: int = 10,
    aws_region: str | None = None,
    aws_endpoint_url: str | None = None,
    vpc_id: str | None = None,
    internal_cidrs: tuple[str, ...] = (),
    allowed_regions: tuple[str, ...] = GOVCLOUD,
    pulumi_export: Path | None = None,
    pulumi_stack: str | None = None,
    drill_report: Path | None = None,
    drill_max_age_days: int = DRILL_MAX_AGE_DAYS,
) -> None:
    if all(source is None for source in (inventory, aws_region, pulumi_export, pulumi_stack, drill_report)):
        raise CollectionError(
            "nothing to collect: pass --inventory (hosts), --aws-region (cloud), --pulumi-export "
            "(stack) or --drill-report (restore drill)"
        )
    if drill_report is not None and not drill_report.exists():  # before anything is collected
        raise CollectionError(f"--drill-report {drill_report}: no such file or folder")
    policy = load_policy(policy_path)
    context = {
        "egress_policy": policy_context(policy),
        "allowed_regions": list(allowed_regions),
        "drill_max_age_days": int(drill_max_age_days),
    }
    collection = Collection(
        pack,
        {"name": system, "inventory": str(inventory) if inventory else None, "hosts": [], "cloud": None},
        context,
    )
    collection.add(
        "controller", "egress.yml", policy.path.read_bytes(), f"controller: read {policy.path}", utcnow()
    )
    collection.index["subjects"]["controller"] = {"kind": "controller", "context": {}}
    if inventory is not None:
        collect_hosts(collection, inventory, limit, forks)
    if aws_region is not None:
        collect_aws(collection, aws_region, aws_endpoint_url, vpc_id, list(internal_cidrs))
    if pulumi_export is not None or pulumi_stack is not None:
        collect_pulumi(collection, pulumi_export, pulumi_stack)
    if inventory is not None or drill_report is not None:  # hosts need a drill; no report is a FAIL
        collect_drill(collection, drill_report)
    collection.index["system"]["hosts"] = sorted(
        n for n, s in collection.index["subjects"].items() if s["kind"] == "host"
    )
    collection.finish()


def copy_raw(source_pack: Path, pack: Path) -> None:
    """Re-evaluate collected facts offline: the same raw/ in a new pack."""
    if not (source_pack / "raw" / "collection.json").is_file():
        raise CollectionError(f"{source_pack} has no raw/collection.json: not an evidence pack or raw folder")
    shutil.copytree(source_pack / "raw", pack / "raw")
