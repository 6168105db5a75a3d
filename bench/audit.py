"""Audit log speed, as ratios measured in one run (absolute numbers only for context).

- append: records/s with durability on (every record fdatasync'ed before its caller is released),
  group commit with callers in flight, vs. one caller at a time (one fsync per record).
- verify: bytes/s of `airlock audit verify` over sealed days vs. bare hashlib.sha256 over the same
  bytes; also the deep walk (`--deep`: every record re-checked even where a signed seal vouches).
Run with `make bench`; uses a temporary directory under .cache/ on this disk.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airlock.audit import AuditLog
from airlock.audit.integrity import seal_pending
from airlock.audit.verify import verify
from airlock.keys import init_keys, load_verifier

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "unit"))
from conftest import GENERATION  # noqa: E402 - the realistic generation record the tests use


def sequential(root: Path, count: int) -> float:
    with AuditLog(root) as log:
        start = time.perf_counter()
        for _ in range(count):
            log.append("generations", "generation.completed", **GENERATION)
        return count / (time.perf_counter() - start)


def pipelined(log: AuditLog, count: int) -> None:
    """Keep `count` records in flight (like concurrent requests); each future resolves once durable."""
    pending = [log.submit("generations", "generation.completed", **GENERATION) for _ in range(count)]
    for future in pending:
        future.result()  # raises if any record was not made durable


def _writer_process(root: Path, count: int, barrier) -> None:
    with AuditLog(root) as log:
        barrier.wait()
        pipelined(log, count)


def processes(root: Path, workers: int, per_worker: int) -> float:
    """Several writer processes on one log (one per service worker), coordinated by the root lock."""
    barrier = multiprocessing.Barrier(workers + 1)
    procs = [
        multiprocessing.Process(target=_writer_process, args=(root, per_worker, barrier))
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    barrier.wait()
    start = time.perf_counter()
    for proc in procs:
        proc.join()
    if any(proc.exitcode for proc in procs):
        raise SystemExit("a writer process failed")
    return workers * per_worker / (time.perf_counter() - start)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    (ROOT / ".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:
        signer = init_keys(Path(tmp) / "keys")
        one = sequential(Path(tmp) / "sequential", 2000)
        many = processes(Path(tmp) / "processes", workers=2, per_worker=30_000)
        print(
            f"append, 2 writer processes with group commit / one fsync per record: {many / one:.1f}x "
            f"({many:,.0f} vs {one:,.0f} records/s, every record durable; goal >= 20,000/s)"
        )

        root = Path(tmp) / "audit"
        day = [datetime(2026, 10, 1, 12, tzinfo=UTC)]
        with AuditLog(root, clock=lambda: day[0], signer=signer) as log:
            for _ in range(4):  # four days of records; each rollover seals the day before
                pipelined(log, 50_000)
                day[0] += timedelta(days=1)
        seal_pending(root, signer, clock=lambda: day[0])

        files = sorted(root.glob("*/*.jsonl"))
        size = sum(p.stat().st_size for p in files)
        raw = min(timed(lambda: [hashlib.sha256(p.read_bytes()).digest() for p in files]) for _ in range(3))
        trusted = load_verifier(Path(tmp) / "keys")
        report = verify(root, trusted, clock=lambda: day[0])
        assert report.ok, report.findings[:3]
        fast = min(timed(lambda: verify(root, trusted, clock=lambda: day[0])) for _ in range(3))
        deep = timed(lambda: verify(root, trusted, clock=lambda: day[0], deep=True))
        mb = size / 1e6
        print(
            f"verify / raw sha256 over the same {mb:.0f} MB ({report.records:,} records): {raw / fast:.2f} "
            f"({mb / fast:.0f} vs {mb / raw:.0f} MB/s; goal >= 0.6)"
        )
        print(f"verify --deep / raw sha256: {raw / deep:.2f} ({mb / deep:.0f} MB/s: every record re-checked)")


if __name__ == "__main__":
    main()
