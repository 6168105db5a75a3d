"""EnclaveNetwork: a VPC with private subnets only, local routes only, and every flow logged."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class NetworkArgs:
    name_prefix: str
    region: str
    account_id: pulumi.Input[str]
    vpc_cidr: str
    availability_zones: tuple[str, ...]
    private_subnet_cidrs: tuple[str, ...]  # one per zone, same order
    internal_cidrs: tuple[str, ...]  # internal ranges outside the VPC that traffic may reach
    key_arn: pulumi.Input[str]  # encrypts the flow-log group
    flow_log_bucket_arn: pulumi.Input[str]  # the audit bucket
    log_retention_days: int


class EnclaveNetwork(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    subnet_ids: list[pulumi.Output[str]]
    route_table_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("airlock:enclave:EnclaveNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            # Interface endpoints answer the services' public names only with DNS on.
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags={"Name": f"{args.name_prefix}-enclave"},
            opts=child,
        )
        # Take over what AWS creates with every VPC, emptied: the default security group (allow-all
        # egress), the main route table and the default network ACL (allow-all) can then grant nothing.
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, ingress=[], egress=[], opts=child)
        aws.ec2.DefaultRouteTable(
            f"{name}-main-routes", default_route_table_id=vpc.default_route_table_id, routes=[], opts=child
        )
        aws.ec2.DefaultNetworkAcl(
            f"{name}-default-acl", default_network_acl_id=vpc.default_network_acl_id, opts=child
        )

        self.subnet_ids, self.route_table_ids = [], []
        for az, cidr in zip(args.availability_zones, args.private_subnet_cidrs, strict=True):
            subnet = aws.ec2.Subnet(
                f"{name}-private-{az}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=az,
                map_public_ip_on_launch=False,
                tags={"Name": f"{args.name_prefix}-private-{az}"},
                opts=child,
            )
            # No routes listed: only the implicit local route (and the S3 endpoint's, which it adds).
            table = aws.ec2.RouteTable(f"{name}-routes-{az}", vpc_id=vpc.id, routes=[], opts=child)
            aws.ec2.RouteTableAssociation(
                f"{name}-routes-{az}", subnet_id=subnet.id, route_table_id=table.id, opts=child
            )
            self.subnet_ids.append(subnet.id)
            self.route_table_ids.append(table.id)

        # Network ACLs are stateless and know no prefix lists: S3 through the gateway endpoint is
        # reached at the region's S3 addresses, so those are allowed for HTTPS (and the replies back).
        s3 = aws.ec2.get_prefix_list_output(
            name=f"com.amazonaws.{args.region}.s3", opts=pulumi.InvokeOptions(parent=self)
        )
        inside = (args.vpc_cidr, *args.internal_cidrs)
        # Computing inputs in apply() is fine; only creating resources there is not.
        ingress = s3.cidr_blocks.apply(
            lambda s3_ranges: _acl_rules(inside, s3_ranges, aws.ec2.NetworkAclIngressArgs)
        )
        egress = s3.cidr_blocks.apply(
            lambda s3_ranges: _acl_rules(inside, s3_ranges, aws.ec2.NetworkAclEgressArgs)
        )
        aws.ec2.NetworkAcl(
            f"{name}-acl",
            vpc_id=vpc.id,
            subnet_ids=self.subnet_ids,
            ingress=ingress,
            egress=egress,
            tags={"Name": f"{args.name_prefix}-enclave"},
            opts=child,
        )

        flow_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=f"/{args.name_prefix}/vpc-flow-logs",
            retention_in_days=args.log_retention_days,
            kms_key_id=args.key_arn,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-flow-logs",
            assume_role_policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                            "Condition": {"StringEquals": {"aws:SourceAccount": args.account_id}},
                        }
                    ],
                }
            ),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-flow-logs",
            role=role.id,
            policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": [
                                "logs:CreateLogStream",
                                "logs:PutLogEvents",
                                "logs:DescribeLogGroups",
                                "logs:DescribeLogStreams",
                            ],
                            "Resource": [flow_group.arn, pulumi.Output.concat(flow_group.arn, ":*")],
                        }
                    ],
                }
            ),
            opts=child,
        )
        to_logs = aws.ec2.FlowLog(
            f"{name}-flow-to-logs",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=flow_group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            opts=child,
        )
        # A second copy in the audit bucket, under Object Lock: the CloudWatch copy can be deleted.
        to_bucket = aws.ec2.FlowLog(
            f"{name}-flow-to-audit-bucket",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="s3",
            log_destination=args.flow_log_bucket_arn,
            max_aggregation_interval=60,
            opts=child,
        )

        self.vpc_id = vpc.id
        self.register_outputs(
            {
                "vpc_id": vpc.id,
                "subnet_ids": self.subnet_ids,
                "route_table_ids": self.route_table_ids,
                "flow_log_ids": [to_logs.id, to_bucket.id],
            }
        )


def _acl_rules(inside: tuple[str, ...], s3_cidrs: list[str], rule_type) -> list:
    """Everything to/from the enclave's ranges, HTTPS with S3; the implicit last rule denies the rest."""
    # Rule ports are destination ports: 443 on the way out to S3, the client's ephemeral port back.
    s3_from, s3_to = (443, 443) if rule_type is aws.ec2.NetworkAclEgressArgs else (1024, 65535)
    rules = []
    for i, cidr in enumerate(inside):
        family = {"ipv6_cidr_block": cidr} if ":" in cidr else {"cidr_block": cidr}
        rules.append(
            rule_type(rule_no=100 + i, action="allow", protocol="-1", from_port=0, to_port=0, **family)
        )
    for i, cidr in enumerate(s3_cidrs):
        rules.append(
            rule_type(
                rule_no=500 + i,
                action="allow",
                protocol="6",
                from_port=s3_from,
                to_port=s3_to,
                cidr_block=cidr,
            )
        )
    return rules
