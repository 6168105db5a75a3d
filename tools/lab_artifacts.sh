#!/usr/bin/env bash
# The lab organisation's keys and its signed model registry, as the connected side would hold them: the
# registry signing key, a separate transfer key (it signs bundles), and a signed registry holding the
# tiny random-weight SDXL (base + the Lightning preset LoRA), imported with an audit trail. Built once
# into .cache/lab-artifacts; rebuilt when it no longer verifies. `make bundle` packs the registry into
# the lab's transfer bundle; the public keys reach the controller by their own channel (inventory/lab).
set -euo pipefail
cd "$(dirname "$0")/.."
out=.cache/lab-artifacts
airlock=.venv/bin/airlock
export AIRLOCK_KEYS_DIR=$out/org-keys AIRLOCK_AUDIT_ROOT=$out/audit AIRLOCK_REGISTRY_ROOT=$out/registry

# The controller's evidence-pack signing key (its own: auditors trust it, nothing else does).
evidence_key() { [ -f "$out/evidence-keys/signing.key" ] || $airlock keys init --dir "$out/evidence-keys" >/dev/null; }

if [ -f "$out/registry/model_manifest.yaml" ] && [ -f "$out/transfer-keys/signing.pub" ] && $airlock models verify --trust "$out/org-keys/signing.pub" >/dev/null 2>&1; then
  evidence_key
  echo "$out: up to date (signed registry verifies)"
  exit 0
fi
rm -rf "$out" && mkdir -p "$out"
$airlock keys init >/dev/null
$airlock keys init --dir "$out/transfer-keys" >/dev/null
$airlock models make-tiny "$out/tiny" >/dev/null 2>&1
$airlock models import "$out/tiny/base" --name sd_xl_base_1.0 --version 1.0 --kind base \
  --approved-by security_team --source "airlock models make-tiny (random weights)" >/dev/null
$airlock models import "$out/tiny/loras/lightning_lora.safetensors" --name sdxl_lightning_4step_lora \
  --version 1.0 --kind lora --approved-by security_team --source "airlock models make-tiny (random weights)" >/dev/null
rm -rf "$out/tiny"
$airlock models verify --trust "$out/org-keys/signing.pub"
evidence_key
