"""PrivateEndpoints: the only way out of the VPC, to this account's AWS resources and nothing else."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class EndpointsArgs:
    name_prefix: str
    region: str
    account_id: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    subnet_ids: list[pulumi.Input[str]]
    route_table_ids: list[pulumi.Input[str]]  # the S3 gateway endpoint adds its route to each
    services: tuple[str, ...]  # interface endpoints by short name: logs, kms, ssm, ...


class PrivateEndpoints(pulumi.ComponentResource):
    s3_endpoint_id: pulumi.Output[str]
    s3_prefix_list_id: pulumi.Output[str]
    interface_endpoint_ids: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: EndpointsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("airlock:enclave:PrivateEndpoints", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        policy = pulumi.Output.json_dumps(_this_account_only(args.account_id))

        s3 = aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=args.vpc_id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=args.route_table_ids,
            policy=policy,
            opts=child,
        )
        # Security groups are stateful: HTTPS in from the VPC is all an endpoint needs; no egress.
        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description="Interface endpoints: HTTPS from the enclave VPC only",
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": 443,
                    "to_port": 443,
                    "cidr_blocks": [args.vpc_cidr],
                    "description": "vpc",
                }
            ],
            egress=[],
            opts=child,
        )
        self.interface_endpoint_ids = {}
        for service in args.services:
            endpoint = aws.ec2.VpcEndpoint(
                f"{name}-{service}",
                vpc_id=args.vpc_id,
                service_name=f"com.amazonaws.{args.region}.{service}",
                vpc_endpoint_type="Interface",
                subnet_ids=args.subnet_ids,
                security_group_ids=[group.id],
                # The SDKs' default public names resolve to the endpoint's private addresses.
                private_dns_enabled=True,
                policy=policy,
                opts=child,
            )
            self.interface_endpoint_ids[service] = endpoint.id

        self.s3_endpoint_id = s3.id
        self.s3_prefix_list_id = s3.prefix_list_id
        self.register_outputs(
            {
                "s3_endpoint_id": s3.id,
                "interface_endpoint_ids": self.interface_endpoint_ids,
                "security_group_id": group.id,
            }
        )


def _this_account_only(account_id: pulumi.Input[str]) -> dict:
    """This account's principals, to this account's resources: no exfiltration to a foreign bucket or key.

    `IfExists` on the resource account: a few agent APIs (ssmmessages, ec2messages) name no resource,
    and a plain StringEquals would block them; where a resource is named, it must be ours.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ThisAccountOnly",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "*",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"aws:PrincipalAccount": account_id},
                    "StringEqualsIfExists": {"aws:ResourceAccount": account_id},
                },
            }
        ],
    }
