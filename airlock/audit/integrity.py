"""Seals, purges and archives: the signed, chained blocks of integrity_hashes/SHA256SUMS.

The file is an append-only journal in sha256sum's line format, grouped in blocks:

    #seal {"at":"...","date":"2026-12-01","prev":"<hash of the previous block>","tips":{...}}
    <sha256>  2026-12-01/generations.jsonl
    #block <sha256 of the lines above>
    #sig ed25519 <key fingerprint> <base64 Ed25519 signature over the lines above>

A seal covers one closed day: the SHA-256 of each file and each category's chain tip (last seq and
hash), so removing a day, removing its newest records or re-hashing it is detected. A purge block
gives the new hashes of files whose prompt text was removed; an archive block the hash of a month's
tarball. Each block names the previous one (CloudTrail's chained digests) and carries its own
signature, and the file is replaced atomically, so a block and its signature land together.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import shutil
import tarfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from airlock.audit import records
from airlock.audit.chain import Chain, Finding, check_file
from airlock.audit.layout import (
    ARCHIVES,
    INTEGRITY,
    RootLock,
    day_file,
    fsync_dir,
    live_days,
    replace_atomically,
    sums_path,
)
from airlock.errors import AirlockError
from airlock.keys import Signer

KINDS = ("seal", "purge", "archive")
RETENTION_DAYS = (30, 90)  # prompt retention bounds (seed 3.5: configurable 30-90 days)


class IntegrityError(AirlockError):
    pass


@dataclass
class Block:
    kind: str
    meta: dict
    files: list[tuple[str, str]]  # (sha256, path relative to the root)
    text: bytes  # what the block hash and the signature cover
    hash: str = ""
    key: str = ""
    signature: bytes = b""
    line: int = 0  # line number of the header in SHA256SUMS


@dataclass
class ParsedSums:
    blocks: list[Block] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line, what)

    @property
    def last_hash(self) -> str:
        return self.blocks[-1].hash if self.blocks else records.GENESIS


def render_block(kind: str, meta: dict, files: list[tuple[str, str]], signer: Signer) -> bytes:
    text = f"#{kind} ".encode() + records.canonical(meta) + b"\n"
    text += b"".join(f"{sha}  {path}\n".encode() for sha, path in files)
    signature = base64.b64encode(signer.sign(text)).decode()
    return (
        text + f"#block {records.sha256_hex(text)}\n#sig ed25519 {signer.fingerprint} {signature}\n".encode()
    )


def parse_sums(data: bytes) -> ParsedSums:
    parsed = ParsedSums()
    current: Block | None = None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        parsed.problems.append((len(lines), "SHA256SUMS does not end with a newline (cut short)"))
    for number, raw in enumerate(lines, start=1):
        text = raw.decode(errors="replace")
        if text.startswith("#") and text[1:].split(" ", 1)[0] in KINDS:
            if current is not None:
                parsed.problems.append((current.line, f"#{current.kind} block has no #block/#sig lines"))
            kind, _, meta = text[1:].partition(" ")
            try:
                current = Block(kind, json.loads(meta), [], raw + b"\n", line=number)
            except json.JSONDecodeError:
                parsed.problems.append((number, "block header is not valid JSON"))
                current = None
        elif current is None:
            parsed.problems.append((number, "line outside any block"))
        elif text.startswith("#block "):
            current.hash = text[7:]
        elif text.startswith("#sig "):
            parts = text.split(" ")
            try:
                current.key, current.signature = parts[2], base64.b64decode(parts[3], validate=True)
            except (IndexError, ValueError):
                parsed.problems.append((number, "signature line is malformed"))
            parsed.blocks.append(current)
            current = None
        elif current.hash:
            parsed.problems.append((number, "line between #block and #sig"))
        else:
            sha, sep, path = text.partition("  ")
            if not sep or len(sha) != 64:
                parsed.problems.append((number, "not a '<sha256>  <path>' line"))
            current.files.append((sha, path))
            current.text += raw + b"\n"
    if current is not None:
        parsed.problems.append((current.line, f"#{current.kind} block has no #block/#sig lines (cut short)"))
    return parsed


def read_sums(root: Path) -> ParsedSums:
    path = sums_path(root)
    return parse_sums(path.read_bytes()) if path.exists() else ParsedSums()


def _append_block(root: Path, signer: Signer, kind: str, meta: dict, files: list[tuple[str, str]]) -> None:
    """Add a block (caller holds the root lock); refuses to extend a damaged journal."""
    path = sums_path(root)
    existing = path.read_bytes() if path.exists() else b""
    parsed = parse_sums(existing)
    if parsed.problems:
        line, what = parsed.problems[0]
        raise IntegrityError(
            f"{path} is damaged at line {line} ({what}); not extending it: "
            "run `airlock audit verify` and investigate"
        )
    (root / INTEGRITY).mkdir(mode=0o750, exist_ok=True)
    block = render_block(kind, {**meta, "prev": parsed.last_hash}, files, signer)
    replace_atomically(path, existing + block)


def sealed_days(parsed: ParsedSums) -> dict[str, Block]:
    return {b.meta["date"]: b for b in parsed.blocks if b.kind == "seal" and "date" in b.meta}


def sealed_tip(root: Path, category: str) -> tuple[int, str]:
    """The newest sealed chain tip of a category: where the writer continues when no live file has it."""
    for block in reversed(read_sums(root).blocks):
        tip = block.meta.get("tips", {}).get(category) if block.kind == "seal" else None
        if tip:
            return int(tip["seq"]), tip["hash"]
    return 0, records.GENESIS


def today(clock) -> str:
    return records.utc_timestamp(clock())[:10]


def day_summary(root: Path, day: str) -> tuple[dict[str, dict], list[tuple[str, str]]]:
    """Chain tips and file hashes of a live day; refuses a day whose records do not check out,
    so that a signed file hash always stands for checked records (verify relies on that)."""
    tips, files = {}, []
    for path in sorted((root / day).glob("*.jsonl")):
        category = path.stem
        if category not in records.CATEGORIES:
            raise IntegrityError(f"unexpected file {path} in the audit log; investigate before sealing")
        data = path.read_bytes()
        if not data:
            continue
        first = records.split(data[: data.index(b"\n")]) if b"\n" in data else None
        chain = Chain(last_seq=first.seq - 1, last_hash=first.prev_hash) if first else Chain()
        findings: list[Finding] = []
        count = check_file(data, path.name, day, category, chain, findings)
        findings += chain.gap_findings(category)
        if findings:
            f = findings[0]
            raise IntegrityError(
                f"refusing to seal {day}: {f.file} line {f.line} {f.kind} ({f.detail}); "
                "run `airlock audit verify`"
            )
        tips[category] = {
            "first_seq": first.seq,
            "seq": chain.last_seq,
            "hash": chain.last_hash.decode(),
            "records": count,
        }
        files.append((records.sha256_hex(data), day_file(day, category)))
    return tips, files


def seal_pending(root: Path, signer: Signer, *, clock, until: str | None = None) -> list[str]:
    """Seal every closed day (before today, up to `until`) that has records and no seal, in order."""
    open_day = today(clock)
    with RootLock(root):
        parsed = read_sums(root)
        sealed = sealed_days(parsed)
        newest = max(sealed, default="")
        done = []
        for day in live_days(root):
            if day in sealed or day >= open_day or (until and day > until):
                continue
            if day < newest:
                raise IntegrityError(
                    f"day {day} was never sealed but {newest} was: investigate how it "
                    "appeared (restored backup? tampering?) before sealing further"
                )
            tips, files = day_summary(root, day)
            if not files:
                continue
            meta = {"date": day, "at": records.utc_timestamp(clock()), "tips": tips}
            _append_block(root, signer, "seal", meta, files)
            done.append(day)
        return done


def seal(root: Path, signer: Signer, *, clock, day: str | None = None) -> list[str]:
    """`airlock audit seal`: seal a given closed day (and any unsealed day before it)."""
    if day is not None:
        try:
            date.fromisoformat(day)
        except ValueError as exc:
            raise IntegrityError(f"--date must be YYYY-MM-DD, got {day!r}") from exc
        if day >= today(clock):
            raise IntegrityError(
                f"{day} is still open (UTC today is {today(clock)}): seals cover closed days"
            )
        if day in sealed_days(read_sums(root)):
            raise IntegrityError(f"{day} is already sealed")
    return seal_pending(root, signer, clock=clock, until=day)


# ---------------------------------------------------------------- purge --------------------------


def _purge_bytes(data: bytes) -> tuple[bytes, int]:
    out, purged = [], 0
    for raw in data.splitlines(keepends=True):
        new = records.purge_texts(raw)
        purged += new != raw
        out.append(new)
    return b"".join(out), purged


def purge(root: Path, signer: Signer, *, clock, older_than_days: int) -> dict:
    """Remove prompt text from sealed days older than the retention; hashes and chain still verify."""
    low, high = RETENTION_DAYS
    if not low <= older_than_days <= high:
        raise IntegrityError(f"prompt retention must be {low}-{high} days (seed 3.5), got {older_than_days}")
    cutoff = (date.fromisoformat(today(clock)) - timedelta(days=older_than_days)).isoformat()
    changed: list[tuple[str, str]] = []
    purged = 0
    with RootLock(root):
        parsed = read_sums(root)
        sealed = sealed_days(parsed)
        for day in live_days(root):
            if day >= cutoff:
                continue
            if day not in sealed:
                raise IntegrityError(
                    f"{day} holds prompts past retention but is not sealed: run `airlock audit seal` first"
                )
            for path in sorted((root / day).glob("*.jsonl")):
                new, count = _purge_bytes(path.read_bytes())
                if count:
                    replace_atomically(path, new)
                    changed.append((records.sha256_hex(new), day_file(day, path.stem)))
                    purged += count
        for archive_rel in archive_files(parsed):
            count, member_hashes, new_hash = _purge_archive(root / archive_rel, cutoff)
            if count:
                changed += [*member_hashes, (new_hash, archive_rel)]
                purged += count
        if changed:
            meta = {
                "at": records.utc_timestamp(clock()),
                "before": cutoff,
                "fields": list(records.REDACTABLE),
                "records": purged,
            }
            _append_block(root, signer, "purge", meta, changed)
    result = {"before": cutoff, "records": purged, "files": [p for _, p in changed]}
    if purged:
        _log_maintenance(
            root, clock, "audit.prompts_purged", before=cutoff, records=purged, files=len(changed)
        )
    return result


def _log_maintenance(root: Path, clock, event: str, **fields) -> None:
    """Removing data is itself an audited event (written after the root lock is released)."""
    from airlock.audit.writer import AuditLog

    with AuditLog(root, clock=clock) as log:
        log.append("system_events", event, outcome="success", component="audit", **fields)


# ---------------------------------------------------------------- archive ------------------------


def archive_files(parsed: ParsedSums) -> list[str]:
    return [path for b in parsed.blocks if b.kind == "archive" for _sha, path in b.files]


def archived_days(parsed: ParsedSums) -> dict[str, str]:
    """day -> archive path (relative to the root)."""
    return {
        day: b.files[0][1] for b in parsed.blocks if b.kind == "archive" for day in b.meta.get("days", [])
    }


def read_archive(path: Path) -> dict[str, bytes]:
    """Members of an archive: relative path -> bytes."""
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _write_archive(path: Path, members: dict[str, bytes]) -> str:
    """A reproducible tar.gz (sorted names, fixed times and owners); returns its SHA-256."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(members[name]), 0o640, 0
            tar.addfile(info, io.BytesIO(members[name]))
    data = raw.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    replace_atomically(path, data)
    return records.sha256_hex(data)


def _purge_archive(path: Path, cutoff: str) -> tuple[int, list[tuple[str, str]], str]:
    members = read_archive(path)
    purged, hashes = 0, []
    for name, data in members.items():
        if name.endswith(".jsonl") and name[:10] < cutoff:
            new, count = _purge_bytes(data)
            if count:
                members[name] = new
                hashes.append((records.sha256_hex(new), name))
                purged += count
    return purged, hashes, (_write_archive(path, members) if purged else "")


def archive(root: Path, signer: Signer, *, clock, before: str) -> list[str]:
    """Compress every sealed month before `before` (YYYY-MM) into archives/YYYY-MM/."""
    try:
        datetime.strptime(before, "%Y-%m").replace(tzinfo=UTC)
    except ValueError as exc:
        raise IntegrityError(f"--before must be YYYY-MM, got {before!r}") from exc
    if before > today(clock)[:7]:
        raise IntegrityError(f"{before} is after the current month; only closed months can be archived")
    done = []
    with RootLock(root):
        parsed = read_sums(root)
        sealed = sealed_days(parsed)
        months = sorted({d[:7] for d in live_days(root) if d[:7] < before})
        for month in months:
            days = [d for d in live_days(root) if d.startswith(month)]
            unsealed = [d for d in days if d not in sealed]
            if unsealed:
                raise IntegrityError(
                    f"cannot archive {month}: {', '.join(unsealed)} not sealed (run `airlock audit seal`)"
                )
            rel = f"{ARCHIVES}/{month}/audit-{month}.tar.gz"
            if (root / rel).exists():
                raise IntegrityError(f"{rel} already exists but days of {month} are still live: investigate")
            members = {
                f"{d}/{p.relative_to(root / d)}": p.read_bytes()
                for d in days
                for p in sorted((root / d).rglob("*"))
                if p.is_file()
            }
            digest = _write_archive(root / rel, members)
            meta = {"month": month, "days": days, "at": records.utc_timestamp(clock())}
            _append_block(root, signer, "archive", meta, [(digest, rel)])
            for d in days:
                shutil.rmtree(root / d)
            fsync_dir(root)
            done.append(month)
    if done:
        _log_maintenance(root, clock, "audit.months_archived", months=done)
    return done
