"""The evidence pack: render results from raw/, then checksum and sign everything (Zarf-style).

Layout of evidence/<UTC timestamp>/: index.html, results.json, assessment-plan.json,
assessment-results.json, poam.json, diagram.svg, inventory.json, procedures/*.md, raw/**,
checksums.txt (`<sha256>  <path>` for every other file), manifest.json (system, versions, time,
aggregate checksum of checksums.txt) and manifest.sig (Ed25519 over manifest.json's bytes, base64).
The pack is written to a hidden sibling folder and renamed into place: no half-written pack.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from airlock.errors import AirlockError
from airlock.keys import Signer, Verifier
from compliance import DRILL_MAX_AGE_DAYS
from compliance.evaluate import build_results, sha256_file
from compliance.render import diagram, html, oscal, procedures

SIGNED = ("checksums.txt", "manifest.json", "manifest.sig")


class PackError(AirlockError):
    pass


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _raw_json(pack: Path, subject: str, name: str) -> dict | None:
    """A raw artifact as JSON for the runbooks, or None: the checks judge it, the runbook only quotes it."""
    try:
        data = json.loads((pack / "raw" / subject / name).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _backup_facts(status: dict | None) -> dict | None:
    if not status or status.get("version") != 1:
        return None
    return {
        "classes": [
            {
                "name": name,
                **{k: c.get(k) for k in ("interval_seconds", "retention", "repository", "last_success")},
            }
            for name, c in sorted((status.get("classes") or {}).items())
            if isinstance(c, dict)
        ],
        "repositories": [
            {"name": name, "location": r.get("location"), "encryption": r.get("encryption")}
            for name, r in sorted((status.get("repositories") or {}).items())
            if isinstance(r, dict)
        ],
    }


def _drill_facts(report: dict | None, results: dict) -> dict | None:
    check = next((c for c in results["checks"] if c["id"] == "dr_drill_recent"), None)
    if not report or check is None or report.get("schema") != "airlock.dr-drill/1":
        return None
    rpo = report.get("rpo") or {}
    return {
        **{k: report.get(k) for k in ("drill_id", "host", "finished_at", "result")},
        **{k: report.get(k) for k in ("rto_seconds", "rto_target_seconds", "rpo_target_seconds")},
        "rpo_audit_seconds": rpo.get("audit_seconds"),
        "rpo_outputs_seconds": rpo.get("outputs_seconds"),
        "status": check["status"],
        "reason": check["reason"],
    }


def procedure_facts(results: dict, pack: Path) -> dict:
    collection = json.loads((pack / "raw" / "collection.json").read_text())
    hosts = []
    for name, subject in sorted(collection["subjects"].items()):
        if subject["kind"] != "host":
            continue
        paths = subject["context"]["paths"]
        conf, state = paths["config_dir"], paths["state_dir"]
        hosts.append(
            {
                "name": name,
                "address": subject["context"]["address"],
                "port": subject["context"]["service_port"],
                "service_unit": paths["service_unit"],
                "config": f"{conf}/airlock.toml",
                "audit_root": paths["audit_root"],
                "registry_root": paths["registry_root"],
                "apikeys": f"{state}/apikeys.json",
                "outputs": f"{state}/outputs",
                "output_keys": f"{state}/kek",
                "prompt_keys": f"{state}/prompt-kek",
                "signing_key": paths["signing_key_dir"],
                "tls_dir": f"{conf}/tls",
                "airlock": paths["airlock"],
                "bundle_dir": paths["bundle_dir"],
                "backup_status": paths.get("backup_status") or f"{state}/backup/status.json",
                "backup": _backup_facts(_raw_json(pack, name, "backup_status.json")),
            }
        )
    return {
        "system": results["system"]["name"],
        "inventory": results["system"]["inventory"] or "-",
        "hosts": hosts,
        "drill": _drill_facts(_raw_json(pack, "dr", "drill_report.json"), results),
        "drill_max_age_days": collection["context"].get("drill_max_age_days", DRILL_MAX_AGE_DAYS),
    }


def render(pack: Path, generated_at: str) -> dict:
    """Everything but the signature files, from pack/raw; returns the results."""
    results = build_results(pack, generated_at)
    _write_json(pack / "results.json", results)
    _write_json(pack / "inventory.json", results["inventory"])
    for name, document in (
        ("assessment-plan.json", oscal.assessment_plan(results)),
        ("assessment-results.json", oscal.assessment_results(results)),
        ("poam.json", oscal.poam(results)),
    ):
        problems = oscal.validate(document)
        if problems:  # an invalid OSCAL file is a bug here, never something to hand an auditor
            raise PackError(f"{name} is not valid OSCAL 1.2.1: " + "; ".join(problems[:5]))
        _write_json(pack / name, document)
    svg = diagram.render_svg(results["inventory"]["topology"])
    (pack / "diagram.svg").write_bytes(svg)
    (pack / "index.html").write_text(html.render_index(results, svg.decode()))
    (pack / "procedures").mkdir(exist_ok=True)
    if any(
        s["kind"] == "host"
        for s in json.loads((pack / "raw" / "collection.json").read_text())["subjects"].values()
    ):
        for name, text in procedures.render_procedures(results, procedure_facts(results, pack)).items():
            (pack / "procedures" / name).write_text(text)
    return results


def files(pack: Path) -> list[str]:
    return sorted(str(p.relative_to(pack)) for p in pack.rglob("*") if p.is_file() or p.is_symlink())


def seal(pack: Path, results: dict, signer: Signer) -> None:
    listed = [f for f in files(pack) if f not in SIGNED]
    lines = "".join(f"{sha256_file(pack / f)}  {f}\n" for f in listed)
    (pack / "checksums.txt").write_text(lines)
    manifest = {
        "schema": "airlock-evidence-pack/1",
        "system": results["system"],
        "generated_at": results["generated_at"],
        "collector_versions": results["collector_versions"],
        "files": len(listed),
        "checksums_sha256": hashlib.sha256(lines.encode()).hexdigest(),
        "signer": signer.fingerprint,
        "summary": {f["id"]: f["summary"] for f in results["frameworks"]},
    }
    _write_json(pack / "manifest.json", manifest)
    (pack / "manifest.sig").write_text(
        base64.b64encode(signer.sign((pack / "manifest.json").read_bytes())).decode() + "\n"
    )


def build(
    out: Path, fill_raw: Callable[[Path], None], signer: Signer, generated_at: str
) -> tuple[Path, dict]:
    """fill_raw writes raw/ into the staging folder; the finished pack is renamed to `out`."""
    if out.exists():
        raise PackError(f"{out} already exists: evidence packs are never overwritten; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        fill_raw(staging)
        results = render(staging, generated_at)
        seal(staging, results, signer)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out, results


def verify(pack: Path, verifier: Verifier) -> list[str]:
    """Every problem with a pack: bad signature, altered, missing or extra files. Empty = intact."""
    for name in SIGNED:
        if not (pack / name).is_file():
            return [f"{name} is missing: not a complete evidence pack"]
    manifest_bytes = (pack / "manifest.json").read_bytes()
    try:
        signature = base64.b64decode((pack / "manifest.sig").read_text().strip(), validate=True)
    except ValueError:
        return ["manifest.sig is not base64"]
    if not verifier.verify(signature, manifest_bytes):
        return [
            f"manifest.sig does not verify with {verifier.path} ({verifier.fingerprint}): "
            "altered manifest or a different signer"
        ]
    problems = []
    manifest = json.loads(manifest_bytes)
    listing = (pack / "checksums.txt").read_bytes()
    if hashlib.sha256(listing).hexdigest() != manifest["checksums_sha256"]:
        problems.append("checksums.txt does not match the signed manifest: altered")
    expected = {}
    for line in listing.decode(errors="replace").splitlines():
        digest, _, path = line.partition("  ")
        expected[path] = digest
    present = set(files(pack)) - set(SIGNED)
    for path in sorted(expected):
        if path not in present:
            problems.append(f"missing: {path}")
        elif (pack / path).is_symlink() or sha256_file(pack / path) != expected[path]:
            problems.append(f"altered: {path}")
    problems += [f"extra (not in checksums.txt): {path}" for path in sorted(present - set(expected))]
    return problems


def diff(old: Path, new: Path) -> list[dict]:
    """Controls whose status changed between two packs (drift), framework by framework."""

    def statuses(pack: Path) -> dict[tuple[str, str], str]:
        results = json.loads((pack / "results.json").read_text())
        return {(f["id"], c["id"]): c["status"] for f in results["frameworks"] for c in f["controls"]}

    before, after = statuses(old), statuses(new)
    return [
        {
            "framework": fw,
            "control": control,
            "old": before.get((fw, control), "absent"),
            "new": after.get((fw, control), "absent"),
        }
        for fw, control in sorted(before.keys() | after.keys())
        if before.get((fw, control)) != after.get((fw, control))
    ]
