"""The organisation's single egress allowlist (policies/egress.yml) and its renderers."""

from airlock.policy.egress import (
    EgressPolicy,
    Inbound,
    PolicyError,
    Rule,
    cidrs,
    load_policy,
    policy_path,
    render_aws,
    render_k8s,
    render_nftables,
)

__all__ = [
    "EgressPolicy",
    "Inbound",
    "PolicyError",
    "Rule",
    "cidrs",
    "load_policy",
    "policy_path",
    "render_aws",
    "render_k8s",
    "render_nftables",
]
