"""The stack and the CrossGuard pack together: every resource the Pulumi program registers (under
mocks, for each tested config) passes every airlock-airgap policy, and the same graph with one
breakage added fails the policy that guards it. `pulumi preview --policy-pack policies/pulumi` does
this against a real account; here the program's own resource graph stands in for the preview."""

from __future__ import annotations

import pytest
from test_pulumi_policy import ap
from test_pulumi_stack import CONFIGS, run_enclave

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_aws")


def as_policy_input(recording) -> list[dict]:
    return [
        {"type": r.type, "name": r.name, "props": dict(r.inputs), "id": r.id}
        for r in recording.resources
        if r.custom  # component resources are not cloud resources: policies never see them
    ]


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def resources(request) -> list[dict]:
    return as_policy_input(run_enclave(CONFIGS[request.param]))


def test_the_stack_passes_every_policy(resources):
    assert len(resources) > 40  # the whole enclave, not an empty graph
    assert ap.run_all(resources) == []


BREAKAGES = {
    "no-internet-gateways": {"type": "aws:ec2/internetGateway:InternetGateway", "name": "igw", "props": {}},
    "no-internet-routes": {
        "type": "aws:ec2/route:Route",
        "name": "default-route",
        "props": {"routeTableId": "rtb-1", "destinationCidrBlock": "0.0.0.0/0", "gatewayId": "igw-1"},
    },
    "no-open-egress": {
        "type": "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
        "name": "anywhere",
        "props": {"securityGroupId": "sg-1", "cidrIpv4": "0.0.0.0/0", "ipProtocol": "-1"},
    },
    "no-public-ips": {
        "type": "aws:ec2/subnet:Subnet",
        "name": "public",
        "props": {"vpcId": "vpc-1", "cidrBlock": "10.40.200.0/24", "mapPublicIpOnLaunch": True},
    },
    "vpc-flow-logs": {
        "type": "aws:ec2/vpc:Vpc",
        "name": "shadow-vpc",
        "props": {"cidrBlock": "10.99.0.0/16"},
    },
}


@pytest.mark.parametrize("policy", sorted(BREAKAGES))
def test_one_breakage_added_to_the_stack_fails_its_policy(resources, policy):
    broken = [*resources, {**BREAKAGES[policy], "id": f"{BREAKAGES[policy]['name']}-id"}]
    violated = {v.policy for v in ap.run_all(broken)}
    assert policy in violated
