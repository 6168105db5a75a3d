"""Airlock's air-gap policy pack: `pulumi preview --policy-pack policies/pulumi` (from the repo root).

This file only builds the pack; the policies live in airgap_policies.py so tests can import them:
constructing PolicyPack starts the analyzer's gRPC server and blocks until the CLI stops it.
"""

from airgap_policies import (
    audit_bucket_object_lock_policy,
    customer_key_encryption_policy,
    imdsv2_required_policy,
    no_internet_gateways_policy,
    no_internet_routes_policy,
    no_open_egress_policy,
    no_public_ips_policy,
    s3_default_encryption_configured_policy,
    s3_public_access_blocked_policy,
    vpc_flow_logs_policy,
)
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name="airlock-airgap",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        no_internet_gateways_policy,
        no_internet_routes_policy,
        no_open_egress_policy,
        no_public_ips_policy,
        customer_key_encryption_policy,
        imdsv2_required_policy,
        s3_public_access_blocked_policy,
        s3_default_encryption_configured_policy,
        audit_bucket_object_lock_policy,
        vpc_flow_logs_policy,
    ],
)
