"""Evidence pack speed: how long `airlock evidence build` spends per host, measured in one run.

Goal: one host with 1,000,000 audit records evidenced in under 60 s. The two costs that grow are
measured separately, then added up:

(a) Audit verification. On each host the evidence playbook runs `airlock audit verify --root R
    --trust PUB --json` (compliance/collectors/host_probe.py); for a busy host that is the long pole.
    An audit root of --records records is written with the real writer (airlock.audit.AuditLog, group
    commit: records submitted in flight, one fdatasync per batch), spread over three categories and
    two closed days, then sealed and signed (airlock.audit.integrity.seal_pending) as the daily seal
    timer would. The verify command is timed as a subprocess (interpreter start included), best of
    three with the page cache warm, and compared with a bare hashlib.sha256 over the same day files:
    verify trusts a signed seal's file hash, so it should cost little more than reading and hashing.
(b) Pack build on the controller: evaluate the checks, write results.json, OSCAL (assessment plan,
    results, POA&M) validated against the 1.2.1 schemas, index.html, the Graphviz diagram, the
    procedures, checksums and the Ed25519 signature (compliance.pack.build over an already collected
    raw/, as `airlock evidence build --from-raw` does). First the one-host raw/ in
    tests/unit/data/evidence_raw as collected, then N hosts made by copying its raw/enclave/ to
    enclave-000, enclave-001, ... and listing each in raw/collection.json (subjects and artifacts).
(c) The estimate for one host with --records records: (a)'s verify time + (b)'s one-host pack time.
    It leaves out SSH round trips, the other probes and the TLS handshakes (seconds, not minutes).

Prints times and ratios; asserts nothing about speed (only that what it built verifies).
Run with `make bench`, or smaller: .venv/bin/python bench/evidence.py --records 20000 --hosts 1,4
Works in a temporary directory under .cache/ on this disk (deleted at the end).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's packages, not only bench/
sys.path.insert(1, str(ROOT / "tests" / "unit"))

from conftest import GENERATION  # noqa: E402 - the realistic generation record the tests use

from airlock.audit import AuditLog  # noqa: E402
from airlock.audit.integrity import seal_pending  # noqa: E402
from airlock.keys import init_keys, load_signer, load_verifier  # noqa: E402
from compliance import collect, pack  # noqa: E402

RAW = ROOT / "tests" / "unit" / "data" / "evidence_raw"
HOST = "enclave"  # the host collected in RAW
IN_FLIGHT = 20_000  # records submitted before waiting on them (group commit batches them)
API_ACCESS = {
    "key_id": "ak_7f3e",
    "tenant": "healthcare_system_b",
    "method": "POST",
    "path": "/v1/generation/text-to-image",
    "status": 200,
    "client": "10.231.1.20",
    "duration_ms": 2,
    "outcome": "success",
}
SYSTEM_EVENT = {"component": "engine", "outcome": "success", "detail": "model warm"}
# category, event, fields, share of the records: most traffic is generations and their API calls
MIX = (
    ("generations", "generation.completed", GENERATION, 6),
    ("api_access", "auth.accepted", API_ACCESS, 3),
    ("system_events", "engine.ready", SYSTEM_EVENT, 1),
)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---- (a) audit verification ------------------------------------------------------------------------------


def write_audit(root: Path, count: int) -> tuple[float, int]:
    """`count` records over two closed days (the day before yesterday, yesterday), by the real writer."""
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    days = [today - timedelta(days=2), today - timedelta(days=1)]
    current = [days[0]]
    cycle = [(c, e, f) for c, e, f, share in MIX for _ in range(share)]  # 10 records, in mix order
    start = time.perf_counter()
    with AuditLog(root, clock=lambda: current[0]) as log:
        written = 0
        for index, day in enumerate(days):
            current[0] = day
            until = count // len(days) if index == 0 else count
            while written < until:
                batch = min(IN_FLIGHT, until - written)
                pending = [
                    log.submit(c, e, **f)
                    for c, e, f in (cycle[(written + i) % len(cycle)] for i in range(batch))
                ]
                for future in pending:
                    future.result()  # raises if a record was not made durable
                written += batch
    return time.perf_counter() - start, len(days)


def airlock_cli() -> list[str]:
    binary = Path(sys.executable).with_name("airlock")
    return [str(binary)] if binary.exists() else [sys.executable, "-m", "airlock.cli"]


def bench_audit(work: Path, count: int, keys: Path) -> dict:
    root = work / "audit"
    write_s, days = write_audit(root, count)
    seal_s = timed(lambda: seal_pending(root, load_signer(keys), clock=lambda: datetime.now(UTC)))
    files = sorted(root.glob("*/*.jsonl"))
    size = sum(p.stat().st_size for p in files)

    command = [*airlock_cli(), "audit", "verify", "--root", str(root), "--trust", str(keys), "--json"]
    runs, report = [], None
    for _ in range(3):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        runs.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(
                f"airlock audit verify exited {done.returncode}: {done.stdout[-1000:]}{done.stderr}"
            )
        report = json.loads(done.stdout)
    if not report["ok"] or report["records"] != count:
        raise SystemExit(f"verify reported {report['records']} records, ok={report['ok']}; wrote {count}")

    def raw_sha256() -> None:
        for path in files:
            hashlib.sha256(path.read_bytes()).digest()

    raw = min(timed(raw_sha256) for _ in range(3))
    return {
        "records": count,
        "bytes": size,
        "files": len(files),
        "days": days,
        "write_s": write_s,
        "seal_s": seal_s,
        "verify_s": min(runs),
        "raw_s": raw,
        "blocks": report["blocks"],
    }


# ---- (b) pack build --------------------------------------------------------------------------------------


def replicate(raw: Path, out: Path, hosts: int) -> Path:
    """A raw/ folder with `hosts` copies of the collected host, as enclave-000, enclave-001, ..."""
    collection = json.loads((raw / "collection.json").read_text())
    subject = collection["subjects"].pop(HOST)
    mine = [a for a in collection["artifacts"] if a["subject"] == HOST]
    artifacts = [a for a in collection["artifacts"] if a["subject"] != HOST]
    out.mkdir(parents=True)
    for entry in raw.iterdir():
        if entry.is_dir() and entry.name != HOST:
            shutil.copytree(entry, out / entry.name)
    names = [f"{HOST}-{i:03d}" for i in range(hosts)]
    for i, name in enumerate(names):
        shutil.copytree(raw / HOST, out / name)
        context = json.loads(json.dumps(subject["context"]))
        prefix, _, last = context["address"].rpartition(".")
        context["address"] = f"{prefix}.{int(last) + i}"  # one address per host in the diagram
        collection["subjects"][name] = {**subject, "context": context}
        artifacts += [
            {
                **a,
                "subject": name,
                "path": a["path"].replace(f"raw/{HOST}/", f"raw/{name}/", 1),
                "source": a["source"].replace(f"ssh {HOST}:", f"ssh {name}:", 1),
            }
            for a in mine
        ]
    collection["artifacts"] = sorted(artifacts, key=lambda a: a["path"])
    collection["system"]["hosts"] = sorted(
        n for n, s in collection["subjects"].items() if s["kind"] == "host"
    )
    (out / "collection.json").write_text(json.dumps(collection, indent=2, sort_keys=True) + "\n")
    return out


def build_pack(raw: Path, out: Path, keys: Path) -> float:
    """Seconds for compliance.pack.build over a collected raw/ (what --from-raw runs)."""
    signer, stamp = load_signer(keys), collect.utcnow()

    def fill(staging: Path) -> None:
        shutil.copytree(raw, staging / "raw")

    start = time.perf_counter()
    written, _results = pack.build(out, fill, signer, stamp)
    elapsed = time.perf_counter() - start
    problems = pack.verify(written, load_verifier(keys))
    if problems:
        raise SystemExit(f"the pack built from {raw} does not verify: {problems[:3]}")
    return elapsed


# ---- main ------------------------------------------------------------------------------------------------


def host_counts(text: str) -> list[int]:
    try:
        counts = [int(n) for n in text.split(",") if n.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--hosts takes counts like 1,4,16,64, not {text!r}") from exc
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("--hosts: each count must be 1 or more")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="audit records (default 1,000,000)")
    parser.add_argument("--hosts", type=host_counts, default=[1, 4, 16, 64], help="host counts: 1,4,16,64")
    args = parser.parse_args(argv)
    if args.records < 2:
        parser.error("--records must be at least 2 (one per day)")

    (ROOT / ".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-evidence-", dir=ROOT / ".cache") as tmp:
        work = Path(tmp)
        keys = work / "keys"
        init_keys(keys)

        a = bench_audit(work, args.records, keys)
        mb = a["bytes"] / 1e6
        print(
            f"audit root: {a['records']:,} records, {mb:.0f} MB in {a['files']} files over {a['days']} days, "
            f"written by AuditLog group commit ({IN_FLIGHT:,} in flight, every batch fdatasync'ed) in "
            f"{a['write_s']:.1f} s ({a['records'] / a['write_s']:,.0f} records/s); "
            f"sealed in {a['seal_s']:.1f} s"
        )
        print(
            f"audit verify: {a['verify_s']:.2f} s for {a['records']:,} records = "
            f"{a['records'] / a['verify_s']:,.0f} records/s ({mb / a['verify_s']:.0f} MB/s; "
            f"`airlock audit verify --json` as a subprocess, best of 3, {a['blocks']} signed blocks)"
        )
        print(
            f"verify / raw sha256: {a['verify_s'] / a['raw_s']:.2f}x the time "
            f"(raw hashlib.sha256 of the same bytes: {a['raw_s']:.2f} s, {mb / a['raw_s']:.0f} MB/s)"
        )

        one = build_pack(RAW, work / "packs" / "collected", keys)
        print(
            f"pack build, 1 host (tests/unit/data/evidence_raw as collected): {one:.2f} s "
            "(the first build in this process, as in one `airlock evidence build`: "
            "includes loading the OSCAL schemas and templates)"
        )
        for count in args.hosts:
            raw = replicate(RAW, work / "raw" / f"hosts-{count}", count)
            seconds = build_pack(raw, work / "packs" / f"hosts-{count}", keys)
            print(f"pack build, N={count} hosts: {seconds:.2f} s ({seconds / count:.3f} s per host)")
            shutil.rmtree(work / "packs" / f"hosts-{count}")

        total = a["verify_s"] + one
        print(
            f"estimate, 1 host with {a['records']:,} audit records: verify {a['verify_s']:.1f} s + "
            f"pack {one:.1f} s = {total:.1f} s (goal: under 60 s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
