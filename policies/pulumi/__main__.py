"""Airlock's air-gap policy pack: `pulumi preview --policy-pack policies/pulumi` (from the repo root).

This file only builds the pack; the policies live in airgap_policies.py so tests can import them:
constructing PolicyPack starts the analyzer's gRPC server and blocks until the CLI stops it.
"""

from airgap_policies import POLICIES
from pulumi_policy import EnforcementLevel, PolicyPack

# One list (airgap_policies.POLICIES) for the pack and for run_all, so they cannot drift apart.
PolicyPack(name="airlock-airgap", enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
