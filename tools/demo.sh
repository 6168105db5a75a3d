#!/usr/bin/env bash
# `make demo`: the main job on the embedded default, narrated. Needs root (network namespaces,
# systemd-nspawn). Leaves nothing behind: the lab is torn down even when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
airlock=.venv/bin/airlock
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
machine_state() { { nft list ruleset; ip -o link | cut -d: -f2; ip route; } | sha256sum | cut -c1-16; }

if [ "$(id -u)" -ne 0 ]; then echo "error: make demo needs root: sudo make demo" >&2; exit 2; fi
if [ -e /run/airlock-lab/state.json ]; then
  echo "error: a lab is already up; the demo brings up (and removes) its own: run \`airlock lab down\` first" >&2
  exit 2
fi
before=$(machine_state)
rm -rf .cache/lab-controller  # the lab controller's bundle store and audit: this demo imports afresh

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

step "Bring the lab up: mgmt (controller), enclave (systemd host), backup (the backup host), internal, outside"
$airlock lab up
$airlock lab status

step "From the enclave host: systemd is PID 1, internal services answer"
$airlock lab ssh enclave -- 'echo "PID 1: $(cat /proc/1/comm), system: $(systemctl is-system-running)"'
$airlock lab ssh enclave -- curl -sS --max-time 5 http://internal.lab.airlock.test/

step "Before any role runs, the enclave CAN reach 'the internet' (203.0.113.80 in outside)"
$airlock lab ssh enclave -- curl -sS --max-time 5 http://203.0.113.80/

step "The transfer bundle make built (wheels, apt repo, signed registry): verify it with the transfer key"
$airlock bundle verify .cache/bundle/airlock-lab.tar --trust .cache/lab-artifacts/transfer-keys/signing.pub

step "Import it on the controller (custody audited) and publish it to the host: playbooks/bundle_import.yml"
ip netns exec mgmt .venv/bin/ansible-playbook -i inventory/lab playbooks/bundle_import.yml |
  grep -E '"msg"|^enclave|^backup|^localhost'

step "Provision it from the bundle only: ansible-playbook -i inventory/lab playbooks/site.yml (from mgmt)"
ip netns exec mgmt .venv/bin/ansible-playbook -i inventory/lab playbooks/site.yml | tail -n 4

step "Egress is closed now (HTTP over IPv4 and IPv6 here; the host tests probe UDP and ICMP too); internal still answers"
for target in http://203.0.113.80/ 'http://[2001:db8::80]/'; do
  if $airlock lab ssh enclave -- curl -sS --max-time 3 "$target" >/dev/null 2>&1; then
    echo "error: the enclave host reached $target" >&2; exit 1
  fi
  echo "blocked: $target"
done
$airlock lab ssh enclave -- sudo nft list chain inet airlock output | grep -E 'policy|counter'
$airlock lab ssh enclave -- curl -sS --max-time 5 http://internal.lab.airlock.test/

step "Generate an image through the HTTPS API from mgmt (TLS 1.3, an API key made on the host)"
key=$($airlock lab ssh enclave -- sudo runuser -u airlock -- /opt/airlock/venv/bin/airlock apikeys create \
  --tenant demo_tenant --permissions generate,jobs:read --expires 30d --created-by demo | sed -n 's/^api_key: *//p')
ip netns exec mgmt curl -sS --fail-with-body --cacert .cache/lab-artifacts/ca/ca.crt -H "X-API-KEY: $key" \
  -H 'Content-Type: application/json' https://10.231.0.10:8443/v1/generation/text-to-image \
  -d '{"prompt": "a lighthouse on a cliff", "performance_selection": "Lightning", "image_seed": 42,
       "aspect_ratios_selection": "1024*1024", "require_base64": true}' -o "$demo/api-response.json"
.venv/bin/python -c 'import base64, json, sys; r = json.load(open(sys.argv[1]))[0]
open(sys.argv[2], "wb").write(base64.b64decode(r["base64"])); print("image:", sys.argv[2], "seed", r["seed"])' \
  "$demo/api-response.json" "$demo/api-lighthouse.png"
echo -n "without a key: "
ip netns exec mgmt curl -sS --cacert .cache/lab-artifacts/ca/ca.crt -o /dev/null -w '%{http_code}\n' \
  -H 'Content-Type: application/json' https://10.231.0.10:8443/v1/generation/text-to-image -d '{"prompt": "x"}'

step "Read-only verification of the host (playbooks/verify.yml): sshd, egress, models, audit chain, service"
ip netns exec mgmt .venv/bin/ansible-playbook -i inventory/lab playbooks/verify.yml | tail -n 2

step "Backups: every class on the backup host (BorgBackup, encrypted), plus the write-once audit copy"
$airlock lab ssh enclave -- sudo /opt/airlock/venv/bin/airlock backup status
$airlock lab ssh enclave -- sudo systemctl start airlock-backup@outputs.service airlock-backup@audit.service

step "Disaster: the enclave host is destroyed and restored onto a fresh one (airlock dr drill: RTO, RPO)"
(umask 077 && printf '%s\n' "$key" > "$demo/api-key")  # readable by root only from the start
$airlock dr drill --inventory inventory/lab --host enclave --api-key-file "$demo/api-key" \
  --ca .cache/lab-artifacts/ca/ca.crt

step "Evidence pack from the live host: SOC 2, HIPAA, NIST 800-171, CMMC L2, ITAR (signed; OSCAL inside)"
pack=evidence/$(date -u +%Y-%m-%dT%H%M%SZ)
ip netns exec mgmt $airlock evidence build --inventory inventory/lab --out "$pack" \
  --key .cache/lab-artifacts/evidence-keys --drill-report drills/
$airlock evidence verify "$pack" --trust .cache/lab-artifacts/evidence-keys/signing.pub

trap - EXIT
step "Tear down"
$airlock lab down
after=$(machine_state)
left=$(ip netns list | wc -l)
echo "namespaces left: $left; nspawn processes left: $(pgrep -c -f 'machine=airlock-lab-' || true)"
echo "this machine's firewall, links and routes: before $before, after $after"
[ "$before" = "$after" ] && [ "$left" -eq 0 ] || { echo "error: the demo left something behind" >&2; exit 1; }
echo "demo complete"
echo "evidence pack: $pack/index.html  (check it: $airlock evidence verify $pack --trust .cache/lab-artifacts/evidence-keys/signing.pub)"
