#!/usr/bin/env bash
# `make demo`: the main job on the embedded default, narrated. Needs root (network namespaces,
# systemd-nspawn). Leaves nothing behind: the lab is torn down even when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
airlock=.venv/bin/airlock
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
machine_state() { { nft list ruleset; ip -o link | cut -d: -f2; ip route; } | sha256sum | cut -c1-16; }

if [ "$(id -u)" -ne 0 ]; then echo "error: make demo needs root: sudo make demo" >&2; exit 2; fi
before=$(machine_state)

# The embedded default: a tiny random-weight SDXL built here (no download), in a demo registry.
demo=.cache/demo
rm -rf "$demo" && mkdir -p "$demo"
export AIRLOCK_KEYS_DIR=$demo/keys AIRLOCK_AUDIT_ROOT=$demo/audit AIRLOCK_REGISTRY_ROOT=$demo/registry

step "Keys, a signed model registry, and an audited import (only safetensors get in)"
$airlock keys init
$airlock models make-tiny "$demo/tiny" >/dev/null 2>&1
$airlock models import "$demo/tiny/base" --name sd_xl_base_1.0 --version 1.0 --kind base \
  --approved-by security_team --source "airlock models make-tiny (random weights)"
$airlock models verify

step "Generate an image offline with the engine (verified model, Speed preset, a style)"
.venv/bin/python -m inference.engine --prompt "a lighthouse on a cliff" --style "Airlock Sharp" \
  --width 64 --height 64 --seed 42 --out "$demo/lighthouse.png" 2>/dev/null
echo "image: $demo/lighthouse.png (random weights draw noise; the pipeline, provenance and audit are real)"

step "Every step above is in the hash-chained audit log"
$airlock audit verify

trap 'step "Tear down"; $airlock lab down' EXIT

step "Bring the lab up: mgmt (controller), enclave (systemd host), internal, outside"
$airlock lab up
$airlock lab status

step "From the enclave host: systemd is PID 1, internal services answer"
$airlock lab ssh enclave -- 'echo "PID 1: $(cat /proc/1/comm), system: $(systemctl is-system-running)"'
$airlock lab ssh enclave -- curl -sS --max-time 5 http://internal.lab.airlock.test/

step "Before any role runs, the enclave CAN reach 'the internet' (203.0.113.80 in outside)"
$airlock lab ssh enclave -- curl -sS --max-time 5 http://203.0.113.80/
echo "(the egress_deny role will close this path; until then the host is not compliant)"

trap - EXIT
step "Tear down"
$airlock lab down
after=$(machine_state)
left=$(ip netns list | wc -l)
echo "namespaces left: $left; nspawn processes left: $(pgrep -c -f 'machine=airlock-lab-' || true)"
echo "this machine's firewall, links and routes: before $before, after $after"
[ "$before" = "$after" ] && [ "$left" -eq 0 ] || { echo "error: the demo left something behind" >&2; exit 1; }
echo "demo complete"
