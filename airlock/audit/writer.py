"""The audit writer: every record durable before `append` returns, or an exception (fail closed).

Group commit: callers queue records; one flusher thread per process writes whatever is queued as a
batch under an exclusive lock on the audit root (so several processes can write at once), fsyncs,
and only then releases the callers. A batch is written as soon as the previous fsync ends, so the
added latency is at most one fsync. If a write or fsync fails, the file is cut back to where the
batch began and every caller in it gets AuditWriteError: the caller must refuse the action.

After a crash (kill -9) a file can end in a torn line. The next writer to touch it moves that tail
to <day>/quarantine/, truncates the file to its last whole record, and logs a system_events record
saying so: the chain continues from the last durable record, and verify stays exact.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airlock.audit import records
from airlock.audit.layout import QUARANTINE, RootLock, audit_root, day_file, fsync_dir, live_days
from airlock.errors import AirlockError

Clock = Callable[[], datetime]


class AuditWriteError(AirlockError, OSError):
    """A record could not be made durable; the action it describes must not go ahead."""


@dataclass(frozen=True)
class Receipt:
    category: str
    seq: int
    hash: str
    ts: str
    file: str  # relative to the audit root


@dataclass
class _Tip:
    path: Path
    size: int
    seq: int
    hash: str


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _last_line(path: Path) -> tuple[bytes, int, int]:
    """Return (last complete line without its newline, offset just after it, file size)."""
    size = path.stat().st_size
    window = 65536
    with open(path, "rb") as fh:
        while True:
            start = max(0, size - window)
            fh.seek(start)
            chunk = fh.read(size - start)
            newline = chunk.rfind(b"\n")
            before = chunk.rfind(b"\n", 0, max(newline, 0))
            if start > 0 and (newline < 0 or before < 0):
                window *= 2  # a record longer than the window: look further back
                continue
            if newline < 0:
                return b"", 0, size
            return chunk[before + 1 : newline], start + newline + 1, size


class AuditLog:
    """Append-only, hash-chained audit log under `root` (the seed's layout)."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        clock: Clock = _utcnow,
        signer=None,
        seal_grace: timedelta = timedelta(0),
    ):
        self.root = Path(root or audit_root())
        self.clock = clock
        self.signer = signer  # when set, closed days are sealed at day rollover
        self.seal_grace = seal_grace
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as exc:
            raise AuditWriteError(f"cannot create the audit root {self.root}: {exc.strerror}") from exc
        self._tips: dict[str, _Tip] = {}
        self._last_day: str | None = None
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._queue: list[tuple[records.Prepared, Future]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="audit-flusher", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ API

    def submit(self, category: str, event: str, /, **fields: Any) -> Future:
        """Queue a record; the future resolves to a Receipt once it is durable."""
        prepared = records.prepare(category, {"event": event, **fields})
        if self._pid != os.getpid():  # forked: the flusher thread did not come along
            self._start()
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise AuditWriteError("the audit log is closed")
            self._queue.append((prepared, future))
            self._cond.notify()
        return future

    def append(self, category: str, event: str, /, **fields: Any) -> Receipt:
        """Write one record and return once it is on disk; AuditWriteError means refuse the action."""
        return self.submit(category, event, **fields).result()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._pid == os.getpid():
            self._thread.join()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ flusher

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                batch, self._queue = self._queue, []
                if not batch and self._closed:
                    return
            try:
                rolled_over = self._write_batch(batch)
            except Exception as exc:  # never leave a caller waiting
                error = (
                    exc if isinstance(exc, AuditWriteError) else AuditWriteError(f"audit write failed: {exc}")
                )
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            if rolled_over and self.signer is not None:
                self._seal_closed_days()

    def _write_batch(self, batch: list[tuple[records.Prepared, Future]]) -> bool:
        try:
            lock = RootLock(self.root).__enter__()
        except OSError as exc:
            raise AuditWriteError(f"cannot lock the audit root {self.root}: {exc.strerror}") from exc
        try:
            now = self.clock()
            ts = records.utc_timestamp(now)
            day = ts[:10]
            by_category: dict[str, list[tuple[records.Prepared, Future]]] = {}
            for item in batch:
                by_category.setdefault(item[0].category, []).append(item)
            notes: list[records.Prepared] = []
            for category, items in by_category.items():
                self._write_category(day, ts, category, items, notes)
            while notes:  # torn tails found while looking for tips are recorded in the same lock
                pending, notes = notes, []
                self._write_category(day, ts, "system_events", [(n, Future()) for n in pending], notes)
        finally:
            lock.__exit__()
        rolled_over = self._last_day is not None and day != self._last_day
        self._last_day = day
        return rolled_over

    def _write_category(self, day: str, ts: str, category: str, items, notes: list) -> None:
        path = self.root / day_file(day, category)
        try:
            tip = self._tip(category, path, notes)
        except OSError as exc:
            self._fail(items, path, exc)
            return
        if category == "system_events" and notes:  # a recovery is recorded before what follows it
            items = [(note, Future()) for note in notes] + list(items)
            notes.clear()
        lines, receipts, seq, prev = [], [], tip.seq, tip.hash
        for prepared, _future in items:
            seq += 1
            line, prev = records.encode(seq, prev, ts, prepared)
            lines.append(line)
            receipts.append(Receipt(category, seq, prev, ts, day_file(day, category)))
        data = b"".join(lines)
        start = 0
        fd = -1
        try:
            new_dir = not path.parent.exists()
            if new_dir:
                path.parent.mkdir(mode=0o750, exist_ok=True)
                fsync_dir(self.root)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            start = os.fstat(fd).st_size
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fdatasync(fd)
            if start == 0:
                fsync_dir(path.parent)
        except OSError as exc:
            if fd >= 0:
                try:
                    os.ftruncate(fd, start)  # nothing half-written stays behind as if valid
                    os.fsync(fd)
                except OSError:
                    pass  # the torn tail is quarantined by the next writer
            self._tips.pop(category, None)
            self._fail(items, path, exc)
            return
        finally:
            if fd >= 0:
                os.close(fd)
        self._tips[category] = _Tip(path, start + len(data), seq, prev)
        for (_prepared, future), receipt in zip(items, receipts, strict=True):
            future.set_result(receipt)

    def _fail(self, items, path: Path, exc: OSError) -> None:
        error = AuditWriteError(
            f"audit record not written to {path}: {exc.strerror or exc}; the action must be refused "
            f"(fail closed). Fix the audit storage ({self.root}: space, permissions, mount) and retry"
        )
        for _prepared, future in items:
            future.set_exception(error)

    # ------------------------------------------------------------------ chain tips

    def _tip(self, category: str, path: Path, notes: list) -> _Tip:
        cached = self._tips.get(category)
        if cached and cached.path == path and path.exists() and path.stat().st_size == cached.size:
            return cached
        candidates = [path] if path.exists() else []
        candidates += [
            self.root / day_file(d, category) for d in reversed(live_days(self.root)) if d < path.parent.name
        ]
        for candidate in candidates:
            if not candidate.exists():
                continue
            self._quarantine_torn_tail(candidate, category, notes)
            last, _end, _size = _last_line(candidate)
            if not last:
                continue
            try:
                parsed = records.split(last)
            except ValueError as exc:
                raise AuditWriteError(
                    f"cannot continue the {category} chain: the last record of {candidate} is unreadable; "
                    "run `airlock audit verify` and investigate before writing more"
                ) from exc
            return _Tip(path, path.stat().st_size if path.exists() else 0, parsed.seq, parsed.hash.decode())
        from airlock.audit.integrity import sealed_tip  # archived days live only in the seals

        seq, digest = sealed_tip(self.root, category)
        return _Tip(path, 0, seq, digest)

    def _quarantine_torn_tail(self, path: Path, category: str, notes: list) -> None:
        _last, end, size = _last_line(path)
        if end == size:
            return
        with open(path, "rb") as fh:
            fh.seek(end)
            torn = fh.read()
        qdir = path.parent / QUARANTINE
        qdir.mkdir(mode=0o750, exist_ok=True)
        qpath = qdir / f"{category}.{time.time_ns()}.torn"
        fd = os.open(qpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            os.write(fd, torn)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(qdir)
        with open(path, "r+b") as fh:
            fh.truncate(end)
            os.fsync(fh.fileno())
        rel = lambda p: str(p.relative_to(self.root))  # noqa: E731
        notes.append(
            records.prepare(
                "system_events",
                {
                    "event": "audit.torn_record_quarantined",
                    "outcome": "success",
                    "component": "audit",
                    "file": rel(path),
                    "offset": end,
                    "bytes": len(torn),
                    "sha256": records.sha256_hex(torn),
                    "quarantine": rel(qpath),
                    "detail": "a record cut short by a crash was moved aside; it was never acknowledged",
                },
            )
        )

    def _seal_closed_days(self) -> None:
        # Runs on the flusher thread: queue the failure record (submit), never wait on it here.
        from airlock.audit.integrity import seal_pending

        try:
            seal_pending(self.root, self.signer, clock=self.clock)
        except (AirlockError, OSError) as exc:
            self.submit(
                "system_events", "audit.seal_failed", outcome="failure", component="audit", detail=str(exc)
            )
