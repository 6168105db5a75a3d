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

# The lab's transfer bundle (tools/lab-bundle.yaml) and the Airlock wheel it carries.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
AIRLOCK_WHEEL := .cache/dist/airlock-$(VERSION)-py3-none-any.whl
LAB_BUNDLE := .cache/bundle/airlock-lab.tar
LAB_PLAYBOOK := ip netns exec mgmt $(VENV)/bin/ansible-playbook -i inventory/lab

.PHONY: screenshots help venv lock bundle lab-artifacts lab-provision test unit-test lab-test lab-infra-test lint demo bench lab-up lab-down lab-status clean

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

# Fixed zip times (1980-01-01): the same checkout gives the same wheel, so the same bundle.
$(AIRLOCK_WHEEL): $(VENV)/.installed pyproject.toml $(wildcard $(shell git ls-files airlock inference compliance 2>/dev/null))
	rm -rf .cache/dist build
	SOURCE_DATE_EPOCH=315532800 $(VENV)/bin/pip wheel --quiet --no-deps --no-build-isolation -w .cache/dist .
	# the egg-info it leaves in the checkout would shadow the venv's metadata (entry points) from here
	rm -rf build airlock.egg-info

# `created` is the last commit's time (not the newest input file's mtime): a rebuild is byte-identical.
bundle: venv lab-artifacts $(AIRLOCK_WHEEL) ## The lab's signed transfer bundle (wheels, apt repo, models) the lab host installs from
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 315532800) \
	  $(VENV)/bin/airlock bundle build --spec tools/lab-bundle.yaml --out $(LAB_BUNDLE) \
	  --key .cache/lab-artifacts/transfer-keys --creator "make bundle (lab, $$(whoami)@$$(hostname))"

lab-artifacts: venv ## The lab's signed registry (tiny random-weight SDXL), its signing key and the transfer key
	tools/lab_artifacts.sh

lock: ## Re-resolve requirements.in into requirements.lock (pins + sha256); KEEP=1 adds new packages only
	python3 -m venv .cache/lock-venv
	.cache/lock-venv/bin/python tools/lock.py requirements.in requirements.lock $(if $(KEEP),--keep-pins)

test: unit-test lab-test ## Unit tests, then the lab tests (root: lab up -> tests -> lab down)

unit-test: venv ## Fast tests, no root needed
	$(PY) -m pytest tests/unit

lab-test: venv bundle ## Lab lifecycle, bundle import, site.yml both ways, host tests (root); always tears down
	$(PY) -m pytest tests/lab -p no:cacheprovider

lab-provision: venv bundle ## Import and publish the lab bundle, then run site.yml, on a lab that is up
	$(LAB_PLAYBOOK) playbooks/bundle_import.yml
	$(LAB_PLAYBOOK) playbooks/site.yml

lab-infra-test: venv ## Host tests (testinfra) against a lab that is up and provisioned
	ip netns exec mgmt $(INFRA_PYTEST)

lint: venv ## ruff, yamllint, ansible-lint (production profile)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/yamllint --strict .
	$(VENV)/bin/ansible-lint --profile production

demo: venv bundle ## The main job on the embedded default (root): lab up, provision, image via the API, evidence pack, lab down
	tools/demo.sh

bench: venv ## Benchmarks, printed as ratios measured in one run (root for the lab cycle)
	$(PY) bench/audit.py
	$(PY) bench/engine.py
	$(PY) bench/service.py
	$(PY) bench/bundle.py
	$(PY) bench/protect.py
	$(PY) bench/backup.py
	$(PY) bench/evidence.py
	$(PY) bench/lab_cycle.py

screenshots: venv ## Run the web page's browser tests and copy their screenshots to docs/screenshots/
	$(PY) -m pytest tests/unit/test_web_browser.py -q
	mkdir -p docs/screenshots && cp .cache/test-artifacts/ui/*.png docs/screenshots/

lab-up: venv ## Bring the local lab up (root)
	$(VENV)/bin/airlock lab up

lab-down: venv ## Remove the local lab (root); safe to repeat
	$(VENV)/bin/airlock lab down

lab-status: venv ## Say what of the lab is up
	$(VENV)/bin/airlock lab status

clean: ## Remove the lab, the venv and caches (keeps nothing but the checkout)
	-[ -x $(VENV)/bin/airlock ] && $(VENV)/bin/airlock lab down
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache *.egg-info
