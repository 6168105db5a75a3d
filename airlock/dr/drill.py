"""`airlock dr drill`: restore the newest backup onto a fresh host and measure it.

The clock starts when the drill declares the host lost (failure_at). Then: the host is replaced by a
fresh one (in the lab, `airlock lab rebuild`), the transfer bundle is published to it again, site.yml
runs in restore mode, and an image is generated through the API with a key that existed before the
failure: RTO is failure_at to that first successful generation. RPO is the age, at failure_at, of the
newest audit record and the newest output the restore brought back. Then the drill reads back outputs
made before the failure (the service decrypts them with the restored keys), verifies the models and
the audit chain across the restore boundary, and writes report.json and report.md. A phase that
fails stops the drill; the report says which and why, and the drill fails.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from airlock.dr.ansible import Ansible
from airlock.errors import AirlockError

SCHEMA = "airlock.dr-drill/1"
PNG = b"\x89PNG\r\n\x1a\n"
AIRLOCK = "/opt/airlock/venv/bin/airlock"
RESTORE_REPORT = "/var/lib/airlock/backup/restore.json"
AUDIT_ROOT = "/var/log/airlock/audit"
AUDIT_TRUST = "/etc/airlock/keys/signing.pub"  # the seals' key (role audit_store)
REGISTRY = "/srv/model_registry"
REGISTRY_TRUST = "/etc/airlock/trust/registry.pub"  # the registry signer's key (role model_registry)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class Drill:
    ansible: Ansible
    host: str
    api_key: str
    ca: Path
    url: str
    rebuild: Callable[[], None] | None  # None: the operator already put a fresh host in place
    rto_target_seconds: int = 4 * 3600
    rpo_target_seconds: int = 24 * 3600
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    phases: list[dict] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)

    # ------------------------------------------------------------------ plumbing

    def phase(self, name: str, action: Callable[[], str]) -> bool:
        started = self.clock()
        began = time.monotonic()
        try:
            detail, ok = action(), True
        except (AirlockError, OSError) as exc:
            detail, ok = str(exc), False
        self.phases.append(
            {
                "name": name,
                "started_at": stamp(started),
                "seconds": round(time.monotonic() - began, 1),
                "ok": ok,
                "detail": detail,
            }
        )
        return ok

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append({"name": name, "ok": ok, "detail": detail})
        if not ok:
            raise AirlockError(f"{name}: {detail}")

    def request(self, method: str, path: str, body: dict | None = None) -> bytes:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 - the CLI accepts only an https:// URL
            self.url + path,
            data=data,
            method=method,
            headers={"X-API-KEY": self.api_key, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, context=context, timeout=600) as resp:  # noqa: S310 - https only
                return resp.read()
        except urllib.error.HTTPError as exc:
            raise AirlockError(
                f"{method} {path}: HTTP {exc.code} {exc.read()[:300].decode(errors='replace')}"
            ) from None
        except (urllib.error.URLError, TimeoutError, ssl.SSLError) as exc:
            raise AirlockError(f"{method} {path}: {exc}") from None

    def playbook(self, name: str, *args: str) -> str:
        result = self.ansible.playbook(name, *args)
        if result.returncode != 0:
            failed = [line for line in result.stdout.splitlines() if line.startswith(("fatal:", "failed:"))]
            raise AirlockError(f"{name} failed: {(failed or [result.stdout[-600:]])[-1][:800]}")
        recap = [line for line in result.stdout.splitlines() if line.startswith(self.host + " ")]
        return recap[-1].split(":", 1)[1].strip() if recap else "ok"

    def on_host(self, *argv: str, become_user: str | None = None) -> str:
        rc, out = self.ansible.command(self.host, list(argv), become_user)
        if rc != 0:
            raise AirlockError(f"`{' '.join(argv)}` on {self.host} failed ({rc}): {out.strip()[-400:]}")
        return out

    # ------------------------------------------------------------------ the drill

    def run(self) -> dict:
        started = self.clock()
        restored: dict = {}
        first_generation: datetime | None = None
        key_id = None

        def rebuild() -> str:
            if self.rebuild is None:
                return "the operator provided a fresh host"
            self.rebuild()
            return "host destroyed and rebuilt from a fresh root filesystem"

        def restore() -> str:
            recap = self.playbook("site.yml", "--limit", self.host, "-e", "backup_client_restore=true")
            restored.update(json.loads(self.on_host("cat", RESTORE_REPORT)))
            return f"site.yml in restore mode: {recap}"

        def generate() -> str:
            nonlocal first_generation, key_id
            key_id = json.loads(self.request("GET", "/v1/me"))["key_id"]
            answer = json.loads(
                self.request(
                    "POST",
                    "/v1/generation/text-to-image",
                    {
                        "prompt": "disaster recovery drill",
                        "performance_selection": "Lightning",
                        "image_seed": 7,
                        "aspect_ratios_selection": "1024*1024",
                        "require_base64": True,
                    },
                )
            )
            image = base64.b64decode(answer[0]["base64"])
            self.check("pre_existing_api_key", True, f"key {key_id} (made before the failure) accepted")
            self.check("generation", image.startswith(PNG), f"{len(image)} byte PNG")
            first_generation = self.clock()
            return f"first image after {(first_generation - started).total_seconds():.0f}s"

        def verify() -> str:
            self.outputs_decrypt(started)
            self.on_host(AIRLOCK, "models", "verify", "--root", REGISTRY, "--trust", REGISTRY_TRUST)
            self.check("models_verified", True, "every model file matches the signed manifest")
            report = json.loads(
                self.on_host(
                    AIRLOCK, "audit", "verify", "--root", AUDIT_ROOT, "--trust", AUDIT_TRUST, "--json"
                )
            )
            findings = report.get("findings", [])
            self.check(
                "audit_chain",
                not findings,
                "chain, seals and signatures verify across the restore boundary"
                if not findings
                else f"{len(findings)} finding(s): {findings[0]}",
            )
            return "outputs, models and the audit chain verified"

        steps = [
            ("rebuild", rebuild),
            (
                "bundle",
                lambda: (
                    "bundle_import.yml: "
                    + self.playbook("bundle_import.yml", "--limit", f"localhost,{self.host}")
                ),
            ),
            ("restore", restore),
            ("first_generation", generate),
            ("verify", verify),
        ]
        for name, action in steps:
            if not self.phase(name, action):
                break
        return self.report(started, first_generation, restored, key_id)

    def outputs_decrypt(self, failure_at: datetime) -> None:
        """Read back (through the service, so with the restored keys) outputs made before the failure."""
        lines = self.on_host("sh", "-c", f"cat {AUDIT_ROOT}/*/generations.jsonl 2>/dev/null || true")
        refs = []
        for line in lines.splitlines():
            record = json.loads(line)
            ref = record.get("output_ref") or ""
            if ref.startswith("outputs:") and parse_time(record["ts"]) < failure_at:
                tenant, rest = ref[len("outputs:") :].split("/", 1)
                job, span = rest.rsplit("-", 1)
                refs += [(tenant, job, i) for i in range(int(span.split("..")[-1]) + 1)]
        me = json.loads(self.request("GET", "/v1/me"))
        mine = [r for r in refs if r[0] == me["tenant"]][-3:]
        if not mine:
            self.check(
                "outputs_decrypt",
                False,
                f"no output of tenant {me['tenant']} from before the failure was restored",
            )
        for _, job, index in mine:
            data = self.request("GET", f"/v1/outputs/{job}/{index}")
            if not data.startswith(PNG):
                self.check("outputs_decrypt", False, f"{job}-{index}: {len(data)} bytes, not a PNG")
        self.check(
            "outputs_decrypt", True, f"{len(mine)} output(s) from before the failure decrypted and served"
        )

    def report(self, started: datetime, first_generation: datetime | None, restored: dict, key_id) -> dict:
        rto = (first_generation - started).total_seconds() if first_generation else None
        audit_at = parse_time(restored.get("newest_audit_record_at"))
        output_at = parse_time(restored.get("newest_output_at"))
        ok = all(p["ok"] for p in self.phases) and len(self.phases) == 5 and all(c["ok"] for c in self.checks)
        return {
            "schema": SCHEMA,
            "drill_id": f"{started.strftime('%Y-%m-%dT%H%M%SZ')}-{self.host}",
            "host": self.host,
            "inventory": str(self.ansible.inventory),
            "started_at": stamp(started),
            "finished_at": stamp(self.clock()),
            "first_generation_at": stamp(first_generation) if first_generation else None,
            "rto_seconds": round(rto, 1) if rto is not None else None,
            "rto_target_seconds": self.rto_target_seconds,
            "rpo": {
                "audit_seconds": round((started - audit_at).total_seconds(), 1) if audit_at else None,
                "outputs_seconds": round((started - output_at).total_seconds(), 1) if output_at else None,
                "newest_audit_record_at": restored.get("newest_audit_record_at"),
                "newest_output_at": restored.get("newest_output_at"),
            },
            "rpo_target_seconds": self.rpo_target_seconds,
            "restored": restored.get("restored", []),
            "phases": self.phases,
            "checks": self.checks,
            "result": "pass" if ok else "fail",
            "api_key_id": key_id,
        }


def render_markdown(report: dict) -> str:
    def secs(value) -> str:
        return "not measured" if value is None else f"{value:.0f} s ({value / 60:.1f} min)"

    def when(value) -> str:
        return value or "none"

    lines = [
        f"# Disaster-recovery drill {report['drill_id']}: {report['result'].upper()}",
        "",
        f"Host `{report['host']}` (inventory `{report['inventory']}`), "
        f"declared lost at {report['started_at']}.",
        "",
        f"- RTO (failure to the first successful generation): {secs(report['rto_seconds'])}; "
        f"target {secs(report['rto_target_seconds'])}",
        f"- RPO, audit log (newest restored record {when(report['rpo']['newest_audit_record_at'])}): "
        f"{secs(report['rpo']['audit_seconds'])}; target {secs(report['rpo_target_seconds'])}",
        f"- RPO, outputs (newest restored output {when(report['rpo']['newest_output_at'])}): "
        f"{secs(report['rpo']['outputs_seconds'])}",
        f"- API key used: `{when(report['api_key_id'])}` (made before the failure)",
        "",
        "| Phase | Started | Seconds | OK | Detail |",
        "|---|---|---|---|---|",
        *[
            f"| {p['name']} | {p['started_at']} | {p['seconds']} | {'yes' if p['ok'] else 'NO'} "
            f"| {p['detail']} |"
            for p in report["phases"]
        ],
        "",
        "| Check | OK | Detail |",
        "|---|---|---|",
        *[f"| {c['name']} | {'yes' if c['ok'] else 'NO'} | {c['detail']} |" for c in report["checks"]],
        "",
        "Restored archives: "
        + (", ".join(f"{r['class']} `{r['archive']}`" for r in report["restored"]) or "none"),
        "",
    ]
    return "\n".join(lines)


def write(report: dict, drills_dir: Path) -> Path:
    """drills/<drill_id>/report.json and report.md, written to a hidden folder and renamed: never half."""
    target = drills_dir / report["drill_id"]
    if target.exists():
        raise AirlockError(f"{target} already exists: drill reports are never overwritten")
    staging = drills_dir / f".{report['drill_id']}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (staging / "report.md").write_text(render_markdown(report))
    staging.rename(target)
    return target
