"""Backups inside the enclave (seed section 4.5): BorgBackup repositories on a backup host, one
archive series per asset class with its own schedule and retention, a separate repository (and
passphrase) for keys, and a write-once copy of sealed audit days. `airlock backup ...` runs on the
GPU host from systemd timers; `airlock dr drill` (airlock/dr) rehearses the restore."""
