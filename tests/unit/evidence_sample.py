"""A small, realistic `results.json` document (the evidence pack's core), for renderer tests.

The format (schema "airlock-evidence/1"), produced by compliance.evaluate:
- system: name, the inventory it came from, hosts, the cloud account/region when collected.
- generated_at: when the pack was built (UTC, RFC 3339); every artifact has its own collected_at.
- artifacts: every raw file of the pack, by pack-relative path, with its SHA-256, what produced it
  (`source`: the command or API call), the subject (a host name, "cloud", "controller") and time.
- checks: one entry per (check, subject): status pass | fail | not_applicable | manual, a one-line
  reason, the artifacts it read (pack-relative paths under raw/).
- frameworks: per framework its controls; a control's status is fail if any of its checks failed,
  pass if at least one passed and the rest passed or did not apply, not_applicable if none applied,
  manual if it has no automated check; `manual` is the question an assessor must still answer.
- inventory: what auditors ask for besides pass/fail (models, access, audit samples, topology).
"""

from __future__ import annotations

import copy

SAMPLE = {
    "schema": "airlock-evidence/1",
    "system": {
        "name": "airlock-lab",
        "inventory": "inventory/lab",
        "hosts": ["enclave"],
        "cloud": {"provider": "aws", "account": "123456789012", "region": "us-gov-west-1"},
    },
    "generated_at": "2026-12-04T06:00:00Z",
    "collector_versions": {"airlock": "0.1.0", "host": "1", "tls": "1", "aws": "1"},
    "artifacts": [
        {
            "path": "raw/enclave/nft_ruleset.json",
            "sha256": "9f" * 32,
            "source": "ssh enclave: nft -j list ruleset",
            "subject": "enclave",
            "collected_at": "2026-12-04T05:59:58Z",
        },
        {
            "path": "raw/enclave/sshd_effective.txt",
            "sha256": "a1" * 32,
            "source": "ssh enclave: sshd -T",
            "subject": "enclave",
            "collected_at": "2026-12-04T05:59:58Z",
        },
        {
            "path": "raw/enclave/tls_probe.json",
            "sha256": "b2" * 32,
            "source": "controller: TLS handshakes to 10.231.0.2:8443",
            "subject": "enclave",
            "collected_at": "2026-12-04T05:59:59Z",
        },
        {
            "path": "raw/cloud/aws.json",
            "sha256": "c3" * 32,
            "source": "aws api (read-only): compliance.collectors.aws",
            "subject": "cloud",
            "collected_at": "2026-12-04T05:59:59Z",
        },
    ],
    "checks": [
        {
            "id": "egress_default_deny",
            "title": "Outbound traffic is dropped unless the allowlist permits it",
            "subject": "enclave",
            "status": "pass",
            "reason": "table inet airlock: output hook policy drop, 6 allow rules",
            "evidence": ["raw/enclave/nft_ruleset.json"],
        },
        {
            "id": "ssh_key_only",
            "title": "SSH accepts keys only, no root login",
            "subject": "enclave",
            "status": "fail",
            "reason": "sshd -T: passwordauthentication yes",
            "evidence": ["raw/enclave/sshd_effective.txt"],
        },
        {
            "id": "tls13_only",
            "title": "The API accepts TLS 1.3 and refuses older versions",
            "subject": "enclave",
            "status": "pass",
            "reason": "TLS 1.3 handshake ok; TLS 1.2 refused",
            "evidence": ["raw/enclave/tls_probe.json"],
        },
        {
            "id": "aws_no_internet_gateway",
            "title": "No internet gateway is attached to the enclave VPC",
            "subject": "cloud",
            "status": "not_applicable",
            "reason": "no AWS account was collected",
            "evidence": [],
        },
    ],
    "frameworks": [
        {
            "id": "soc2",
            "title": "SOC 2 Trust Services Criteria (2017, revised points of focus 2022)",
            "summary": {"pass": 1, "fail": 1, "not_applicable": 0, "manual": 1},
            "controls": [
                {
                    "id": "CC6.1",
                    "title": "Logical access security software, infrastructure and architectures",
                    "status": "fail",
                    "checks": [{"id": "ssh_key_only", "subject": "enclave", "status": "fail"}],
                    "manual": "Are access rights reviewed at least quarterly, and is the review recorded?",
                },
                {
                    "id": "CC6.6",
                    "title": "Logical access security against threats from outside the system boundaries",
                    "status": "pass",
                    "checks": [
                        {"id": "egress_default_deny", "subject": "enclave", "status": "pass"},
                        {"id": "aws_no_internet_gateway", "subject": "cloud", "status": "not_applicable"},
                    ],
                    "manual": None,
                },
                {
                    "id": "CC7.2",
                    "title": "Monitoring of system components for anomalies",
                    "status": "manual",
                    "checks": [],
                    "manual": "Who reviews the audit log alerts, how often, and where is that recorded?",
                },
            ],
        },
        {
            "id": "hipaa",
            "title": "HIPAA Security Rule, 45 CFR 164.312 technical safeguards",
            "summary": {"pass": 1, "fail": 0, "not_applicable": 0, "manual": 0},
            "controls": [
                {
                    "id": "164.312(e)(1)",
                    "title": "Transmission security",
                    "status": "pass",
                    "checks": [{"id": "tls13_only", "subject": "enclave", "status": "pass"}],
                    "manual": None,
                }
            ],
        },
    ],
    "inventory": {
        "models": [
            {
                "name": "sdxl_base",
                "version": "1.0",
                "kind": "base",
                "checksum": "sha256:" + "d4" * 32,
                "approved_by": "ciso@example.org",
                "import_date": "2026-12-01",
                "restricted_to": "all_tenants",
                "host": "enclave",
            }
        ],
        "api_keys": [
            {
                "key_id": "ak_4f3c2b1a",
                "tenant": "team-a",
                "permissions": ["generate", "jobs:read"],
                "status": "active",
                "expires": "2027-03-01T00:00:00Z",
                "host": "enclave",
            }
        ],
        "ssh_keys": [
            {"host": "enclave", "user": "ops", "fingerprint": "SHA256:Zm9vYmFy", "comment": "ops@controller"}
        ],
        "sudoers": [{"host": "enclave", "line": "%ops ALL=(ALL:ALL) NOPASSWD: ALL"}],
        "audit_samples": [
            {
                "host": "enclave",
                "category": "generations",
                "record": {
                    "seq": 1,
                    "timestamp": "2026-12-04T05:50:00Z",
                    "tenant": "team-a",
                    "hash": "e5" * 32,
                },
            }
        ],
        "topology": {
            "hosts": [{"name": "enclave", "address": "10.231.0.2", "listening": [22, 8443]}],
            "networks": {"mgmt": ["10.231.0.0/24"], "internal": ["10.231.1.0/24"]},
            "inbound": [
                {"name": "management-ssh", "from": ["mgmt"], "proto": "tcp", "ports": [22]},
                {"name": "service-api", "from": ["mgmt", "internal"], "proto": "tcp", "ports": [8443]},
            ],
            "outbound": [
                {"name": "internal-dns", "to": ["10.231.1.1/32"], "proto": "udp", "ports": [53]},
                {"name": "internal-services", "to": ["internal"], "proto": "tcp", "ports": [80, 443]},
            ],
            "cloud": {
                "vpc": {"id": "vpc-0abc", "cidr": "10.60.0.0/16"},
                "subnets": [{"id": "subnet-1", "cidr": "10.60.1.0/24", "zone": "us-gov-west-1a"}],
                "endpoints": [{"id": "vpce-1", "service": "s3", "type": "Gateway"}],
                "internet_gateways": [],
            },
        },
    },
}


def sample() -> dict:
    """A fresh copy: tests may change it."""
    return copy.deepcopy(SAMPLE)
