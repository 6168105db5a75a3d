# Airlock: `make help` lists the targets. Every target makes and reuses .venv itself.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.SHELLFLAGS := -eu -o pipefail -c

VENV := .venv
PY := $(VENV)/bin/python
# Nothing reaches for a model hub, ever (see README, "Offline by construction").
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HOME := $(CURDIR)/.cache/hf
export ANSIBLE_DEPRECATION_WARNINGS := false
# testinfra's ansible backend shells out to ansible-inventory: the venv's bin must be on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
INFRA_PYTEST := $(PY) -m pytest tests/infra/provisioned -p no:cacheprovider --hosts=ansible://gpu_hosts \
  --ansible-inventory=inventory/lab

WHEELHOUSE := .cache/wheelhouse/wheelhouse.tar

.PHONY: help venv lock wheelhouse lab-artifacts lab-provision test unit-test lab-test lab-infra-test lint demo bench lab-up lab-down lab-status clean

help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: requirements.lock pyproject.toml
	@python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  { echo "error: python3 must be CPython 3.11 (the lock and the torch CPU wheel are cp311)"; exit 2; }
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

venv: $(VENV)/.installed ## Create .venv from requirements.lock (hash-checked)

wheelhouse: venv ## The GPU hosts' wheels (the service's subset of the lock + airlock), for the roles
	$(PY) tools/wheelhouse.py .cache/wheelhouse

lab-artifacts: venv ## The lab's signed registry (tiny random-weight SDXL) and the org's signing key
	tools/lab_artifacts.sh

lock: ## Re-resolve requirements.in into requirements.lock (pins + sha256)
	python3 -m venv .cache/lock-venv
	.cache/lock-venv/bin/python tools/lock.py requirements.in requirements.lock

test: unit-test lab-test ## Unit tests, then the lab tests (root: lab up -> tests -> lab down)

unit-test: venv ## Fast tests, no root needed
	$(PY) -m pytest tests/unit

lab-test: venv wheelhouse lab-artifacts ## Lab lifecycle, site.yml both ways, host tests (root); always tears down
	$(PY) -m pytest tests/lab -p no:cacheprovider

lab-provision: venv wheelhouse lab-artifacts ## Run playbooks/site.yml on a lab that is already up
	ip netns exec mgmt $(VENV)/bin/ansible-playbook -i inventory/lab playbooks/site.yml

lab-infra-test: venv ## Host tests (testinfra) against a lab that is up and provisioned
	ip netns exec mgmt $(INFRA_PYTEST)

lint: venv ## ruff, yamllint, ansible-lint (production profile)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/yamllint --strict .
	$(VENV)/bin/ansible-lint --profile production

demo: venv wheelhouse lab-artifacts ## The main job on the embedded default (root): lab up, checks, lab down
	tools/demo.sh

bench: venv ## Benchmarks, printed as ratios measured in one run (root for the lab cycle)
	$(PY) bench/audit.py
	$(PY) bench/engine.py
	$(PY) bench/service.py
	$(PY) bench/bundle.py
	$(PY) bench/lab_cycle.py

lab-up: venv ## Bring the local lab up (root)
	$(VENV)/bin/airlock lab up

lab-down: venv ## Remove the local lab (root); safe to repeat
	$(VENV)/bin/airlock lab down

lab-status: venv ## Say what of the lab is up
	$(VENV)/bin/airlock lab status

clean: ## Remove the lab, the venv and caches (keeps nothing but the checkout)
	-[ -x $(VENV)/bin/airlock ] && $(VENV)/bin/airlock lab down
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache *.egg-info
