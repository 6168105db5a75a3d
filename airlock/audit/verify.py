"""`airlock audit verify`: every file, record, chain, seal and signature, with a precise report.

Finding kinds (each with the file and line where it shows):
  modified     a record's bytes do not match its hash, or it was changed and re-hashed
  inserted     a record repeats an earlier sequence number, or a file is not covered by its seal
  deleted      sequence numbers are missing, or a sealed day lost its newest records
  reordered    a record appears after a later one
  truncated    a file ends in a cut line (torn write or cut file)
  malformed    a line that is not an audit record at all
  misplaced    a record in the wrong day or category file
  prompt       prompt text that does not match the hash the chain holds
  missing_day  a sealed day that is gone (live and archived)
  unsealed_day a closed day that nobody sealed
  seal         SHA256SUMS damaged, a block re-ordered/removed, a file differing from its sealed hash
  signature    a block whose signature does not verify with the trusted key
"""

from __future__ import annotations

import hmac
import tarfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airlock.audit import records
from airlock.audit.integrity import (
    ParsedSums,
    archived_days,
    read_archive,
    read_sums,
    sealed_days,
)
from airlock.audit.layout import DAY, INTEGRITY, QUARANTINE, SUMS, day_file, live_days
from airlock.keys import Verifier


@dataclass
class Finding:
    kind: str
    file: str
    line: int | None
    detail: str


@dataclass
class Report:
    root: str
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    records: int = 0
    files: int = 0
    days: int = 0
    blocks: int = 0
    trusted_key: str | None = None

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


@dataclass
class _Chain:
    """Running state of one category's chain across days."""

    last_seq: int = 0
    last_hash: bytes = records.GENESIS.encode()
    last_loc: tuple[str, int] | None = None
    seen: set[int] = field(default_factory=set)
    gaps: list[list] = field(default_factory=list)  # [first missing, last missing, (file, line)]


def _check_blocks(parsed: ParsedSums, verifier: Verifier | None, report: Report) -> None:
    sums = f"{INTEGRITY}/{SUMS}"
    for line, what in parsed.problems:
        report.findings.append(Finding("seal", sums, line, what))
    prev = records.GENESIS
    for block in parsed.blocks:
        if records.sha256_hex(block.text) != block.hash:
            report.findings.append(
                Finding("seal", sums, block.line, f"#{block.kind} block content was altered")
            )
        if block.meta.get("prev") != prev:
            report.findings.append(
                Finding(
                    "seal",
                    sums,
                    block.line,
                    f"#{block.kind} block does not follow the "
                    "previous block: a block was removed, inserted or reordered",
                )
            )
        prev = block.hash
        if verifier is None:
            report.findings.append(Finding("signature", sums, block.line, "no trusted key to check it with"))
        elif block.key != verifier.fingerprint:
            report.findings.append(
                Finding(
                    "signature",
                    sums,
                    block.line,
                    f"signed by {block.key}, but the trusted key is {verifier.fingerprint}",
                )
            )
        elif not verifier.verify(block.signature, block.text):
            report.findings.append(Finding("signature", sums, block.line, "bad signature"))


def _day_sources(
    root: Path, parsed: ParsedSums, expected: dict[str, str], report: Report
) -> dict[str, dict[str, tuple[str, bytes]]]:
    """day -> {name in day: (display path, bytes)}, live or from archives."""
    sources: dict[str, dict[str, tuple[str, bytes]]] = {}
    for archive_rel in sorted(set(archived_days(parsed).values())):
        try:
            if records.sha256_hex((root / archive_rel).read_bytes()) != expected.get(archive_rel):
                report.findings.append(
                    Finding("seal", archive_rel, None, "archive differs from its signed hash")
                )
            members = read_archive(root / archive_rel)
        except (OSError, EOFError, ValueError, tarfile.TarError) as exc:
            report.findings.append(Finding("missing_day", archive_rel, None, f"archive unreadable: {exc}"))
            continue
        for name, data in members.items():
            day, _, rest = name.partition("/")
            sources.setdefault(day, {})[rest] = (f"{archive_rel}:{name}", data)
    for day in live_days(root):
        if day in sources:
            report.notes.append(
                f"{day} is both archived and live (interrupted archive?); the archive is used"
            )
            continue
        for path in sorted((root / day).rglob("*")):
            if path.is_file():
                rel = str(path.relative_to(root / day))
                sources.setdefault(day, {})[rel] = (f"{day}/{rel}", path.read_bytes())
    return sources


def _expected_hashes(parsed: ParsedSums) -> dict[str, str]:
    expected: dict[str, str] = {}
    for block in parsed.blocks:
        for sha, path in block.files:
            expected[path] = sha
    return expected


def _check_line(
    raw: bytes, loc: tuple[str, int], day: str, category: str, chain: _Chain, report: Report
) -> None:
    file, number = loc
    try:
        line = records.split(raw)
    except ValueError:
        report.findings.append(
            Finding("malformed", file, number, "not an audit record (inserted or damaged)")
        )
        return
    seq = line.seq
    intact = line.intact
    if not intact:
        report.findings.append(
            Finding("modified", file, number, f"seq {seq}: content does not match its hash")
        )
        if seq != chain.last_seq + 1:
            return  # its seq is not to be trusted either
    if line.ts[:10] != day or f'"category":"{category}"'.encode() not in line.body:
        report.findings.append(
            Finding(
                "misplaced", file, number, f"seq {seq} ({line.ts}) does not belong in {day}/{category}.jsonl"
            )
        )
    if line.tail:
        _check_texts(line, file, number, report)
    if seq in chain.seen:
        report.findings.append(Finding("inserted", file, number, f"seq {seq} appears a second time"))
        return
    chain.seen.add(seq)
    if seq == chain.last_seq + 1:
        if intact and line.prev_hash != chain.last_hash:
            where = chain.last_loc or (file, number)
            report.findings.append(
                Finding(
                    "modified",
                    where[0],
                    where[1],
                    f"seq {seq - 1} was changed and "
                    f"re-hashed: seq {seq} ({file}:{number}) no longer links to it",
                )
            )
    elif seq > chain.last_seq + 1:
        chain.gaps.append([chain.last_seq + 1, seq - 1, (file, number)])
    else:
        report.findings.append(
            Finding("reordered", file, number, f"seq {seq} appears after seq {chain.last_seq}")
        )
        for gap in chain.gaps:
            if gap[0] <= seq <= gap[1]:
                chain.gaps.remove(gap)
                chain.gaps += [
                    g for g in ([gap[0], seq - 1, gap[2]], [seq + 1, gap[1], gap[2]]) if g[0] <= g[1]
                ]
                break
        return
    chain.last_seq, chain.last_hash, chain.last_loc = seq, line.hash, (file, number)


def _check_texts(line: records.Line, file: str, number: int, report: Report) -> None:
    try:
        texts, covered = line.texts(), line.record()
    except ValueError:
        report.findings.append(
            Finding("prompt", file, number, f"seq {line.seq}: prompt text is not valid JSON")
        )
        return
    for key, text in texts.items():
        expected = covered.get(f"{key}_sha256")
        if key not in records.REDACTABLE or expected is None:
            report.findings.append(Finding("prompt", file, number, f"seq {line.seq}: unexpected field {key}"))
        elif not hmac.compare_digest(records.sha256_hex(str(text).encode()), str(expected)):
            report.findings.append(
                Finding("prompt", file, number, f"seq {line.seq}: {key} text does not match its hash")
            )


def _check_seal_tips(day: str, seal, chains: dict[str, _Chain], present: set[str], report: Report) -> None:
    tips = seal.meta.get("tips", {})
    for category, tip in tips.items():
        chain = chains.setdefault(category, _Chain())
        file = day_file(day, category)
        if category not in present:
            report.findings.append(
                Finding("deleted", file, None, f"sealed with {tip['records']} records, now gone")
            )
        elif chain.last_seq < tip["seq"]:
            report.findings.append(
                Finding(
                    "deleted",
                    file,
                    None,
                    f"sealed through seq {tip['seq']}, the log "
                    f"ends at seq {chain.last_seq}: the newest records were removed",
                )
            )
        elif chain.last_seq == tip["seq"] and chain.last_hash.decode() != tip["hash"]:
            report.findings.append(
                Finding("modified", file, None, "the chain no longer ends at the sealed hash")
            )
    for category in present - set(tips):
        report.findings.append(
            Finding("inserted", day_file(day, category), None, "file not covered by the seal")
        )


def verify(
    root: Path,
    verifier: Verifier | None,
    *,
    clock=lambda: datetime.now(UTC),
    unsealed_grace: timedelta = timedelta(hours=1),
) -> Report:
    report = Report(root=str(root), trusted_key=verifier.fingerprint if verifier else None)
    parsed = read_sums(root)
    report.blocks = len(parsed.blocks)
    _check_blocks(parsed, verifier, report)
    sealed = sealed_days(parsed)
    expected = _expected_hashes(parsed)
    sources = _day_sources(root, parsed, expected, report)
    chains: dict[str, _Chain] = {}
    for day in sorted(set(sources) | set(sealed)):
        if day not in sources:
            report.findings.append(
                Finding("missing_day", day, None, "sealed day is gone (not live, not archived)")
            )
            continue
        report.days += 1
        present = set()
        for name, (display, data) in sorted(sources[day].items()):
            if name.startswith(QUARANTINE + "/"):
                report.notes.append(f"{display}: torn record quarantined after a crash ({len(data)} bytes)")
                continue
            category = name.removesuffix(".jsonl")
            if category not in records.CATEGORIES or "/" in name:
                report.findings.append(Finding("inserted", display, None, "unexpected file in the audit log"))
                continue
            present.add(category)
            report.files += 1
            want = expected.get(day_file(day, category))
            if want is not None and records.sha256_hex(data) != want:
                report.findings.append(Finding("seal", display, None, "file differs from its sealed hash"))
            lines = data.split(b"\n")
            if lines[-1]:
                report.findings.append(
                    Finding(
                        "truncated", display, len(lines), "last line is cut short (torn write or cut file)"
                    )
                )
            chain = chains.setdefault(category, _Chain())
            for number, raw in enumerate(lines[:-1], start=1):
                _check_line(raw, (display, number), day, category, chain, report)
            report.records += len(lines) - 1
        if day in sealed:
            _check_seal_tips(day, sealed[day], chains, present, report)
        elif DAY.match(day) and _closed_for(day, clock()) > unsealed_grace:
            report.findings.append(
                Finding("unsealed_day", day, None, "closed day was never sealed (run `airlock audit seal`)")
            )
    for category, chain in chains.items():
        for first, last, (file, number) in chain.gaps:
            span = f"seq {first}" if first == last else f"seq {first}-{last}"
            report.findings.append(
                Finding("deleted", file, number, f"{category} {span} missing before this line")
            )
    report.findings.sort(key=lambda f: (f.file, f.line or 0))
    return report


def _closed_for(day: str, now: datetime) -> timedelta:
    end = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)
    return now - end
