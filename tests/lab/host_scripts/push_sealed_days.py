"""Run on a lab host as root (its venv's python): give it audit days that are really sealed, as a host
that has run for a few days has, and send them through the host's own write-once channel.

The lab's hosts share this machine's clock, so today's log has no closed day yet: the days are written
with a clock set three days back into a separate audit root, sealed at each rollover with a throwaway
key, then pushed with the host's backup configuration (its worm key, the backup host's pinned key).
Prints the names sent, as JSON.
"""

import json
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airlock.audit.writer import AuditLog
from airlock.backup import config, worm
from airlock.keys import init_keys

now = datetime.now(UTC)
moment = [now - timedelta(days=3)]
root = Path(tempfile.mkdtemp(prefix="airlock-sealed-days-"))
signer = init_keys(root / "keys")
with AuditLog(root / "audit", clock=lambda: moment[0], signer=signer) as log:
    for _ in range(12):  # every 6 hours: each rollover seals the day before
        log.append("system_events", "lab.fixture", outcome="success", component="lab-test")
        moment[0] += timedelta(hours=6)
plan = config.load()
staging = root / "staging"
sent = worm.push(replace(plan, audit_root=root / "audit", worm=replace(plan.worm, staging=staging)))
names = sorted(f"{p.parent.name}/{p.name}" for p in (root / "audit").glob("*/*.jsonl"))
json.dump({"sent": sent, "days": names}, sys.stdout)
