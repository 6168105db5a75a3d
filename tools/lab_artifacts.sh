#!/usr/bin/env bash
# What the connected side hands the lab's GPU hosts, until the transfer bundle issue lands: the
# organisation's registry signing key and a signed registry holding the tiny random-weight SDXL
# (base + the Lightning preset LoRA), imported with an audit trail. Built once into .cache/lab-artifacts;
# rebuilt when it no longer verifies. The roles read it through inventory/lab/group_vars.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.cache/lab-artifacts
airlock=.venv/bin/airlock
export AIRLOCK_KEYS_DIR=$out/org-keys AIRLOCK_AUDIT_ROOT=$out/audit AIRLOCK_REGISTRY_ROOT=$out/registry

if [ -f "$out/registry/model_manifest.yaml" ] && $airlock models verify --trust "$out/org-keys/signing.pub" >/dev/null 2>&1; then
  echo "$out: up to date (signed registry verifies)"
  exit 0
fi
rm -rf "$out" && mkdir -p "$out"
$airlock keys init >/dev/null
$airlock models make-tiny "$out/tiny" >/dev/null 2>&1
$airlock models import "$out/tiny/base" --name sd_xl_base_1.0 --version 1.0 --kind base \
  --approved-by security_team --source "airlock models make-tiny (random weights)" >/dev/null
$airlock models import "$out/tiny/loras/lightning_lora.safetensors" --name sdxl_lightning_4step_lora \
  --version 1.0 --kind lora --approved-by security_team --source "airlock models make-tiny (random weights)" >/dev/null
rm -rf "$out/tiny"
$airlock models verify --trust "$out/org-keys/signing.pub"
