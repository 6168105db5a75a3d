"""GpuFleet: the inference hosts, in the private subnets, behind an internal TLS load balancer."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from enclave_settings import SgRule


@dataclass(frozen=True)
class FleetArgs:
    name_prefix: str
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    subnet_ids: list[pulumi.Input[str]]
    ami_id: str
    instance_type: str
    min_size: int
    max_size: int
    desired_capacity: int
    root_device_name: str
    root_volume_gb: int
    key_arn: pulumi.Input[str]
    models_bucket_arn: pulumi.Input[str]
    outputs_bucket_arn: pulumi.Input[str]
    audit_bucket_arn: pulumi.Input[str]
    s3_prefix_list_id: pulumi.Input[str]  # the S3 gateway endpoint's route destination
    egress: tuple[SgRule, ...]  # from policies/egress.yml, already checked to stay inside the enclave
    api_ingress: tuple[SgRule, ...]  # who may call the API, from the same policy
    api_port: int
    certificate_arn: str
    ssl_policy: str
    health_check_path: str
    log_retention_days: int


class GpuFleet(pulumi.ComponentResource):
    security_group_id: pulumi.Output[str]
    nlb_dns_name: pulumi.Output[str]
    log_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: FleetArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("airlock:enclave:GpuFleet", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        logs = aws.cloudwatch.LogGroup(
            f"{name}-service-logs",
            name=f"/{args.name_prefix}/inference",
            retention_in_days=args.log_retention_days,
            kms_key_id=args.key_arn,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "ec2.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
            opts=child,
        )
        # Session Manager reaches the hosts through the account's Default Host Management Configuration
        # (it needs IMDSv2, required below), so this role carries no `Resource: "*"` SSM grants.
        aws.iam.RolePolicy(
            f"{name}-role-policy",
            role=role.id,
            policy=pulumi.Output.json_dumps(_least_privilege(args, logs.arn)),
            opts=child,
        )
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, opts=child)

        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description="GPU fleet: the API in from internal clients, out only as policies/egress.yml allows",
            ingress=[
                # The load balancer's health checks come from its nodes' addresses in the VPC; clients'
                # own addresses arrive too (NLB preserves them), so the policy's API sources are listed.
                _rule(SgRule("tcp", args.api_port, args.api_port, (args.vpc_cidr,), (), "nlb-health-checks")),
                *(_rule(r) for r in args.api_ingress),
            ],
            egress=[
                *(_rule(r) for r in args.egress),
                _rule(SgRule("tcp", 443, 443, (args.vpc_cidr,), (), "interface-endpoints")),
                {
                    "protocol": "tcp",
                    "from_port": 443,
                    "to_port": 443,
                    "prefix_list_ids": [args.s3_prefix_list_id],
                    "description": "s3-gateway-endpoint",
                },
            ],
            opts=child,
        )
        template = aws.ec2.LaunchTemplate(
            f"{name}-template",
            image_id=args.ami_id,
            instance_type=args.instance_type,
            iam_instance_profile={"arn": profile.arn},
            # IMDSv2 only, one hop: a container or a forwarded request cannot reach the role's credentials.
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "required",
                "http_put_response_hop_limit": 1,
                "instance_metadata_tags": "disabled",
            },
            network_interfaces=[
                {
                    "device_index": 0,
                    "associate_public_ip_address": "false",
                    "security_groups": [group.id],
                    "delete_on_termination": "true",
                }
            ],
            block_device_mappings=[
                {
                    "device_name": args.root_device_name,
                    "ebs": {
                        "encrypted": "true",
                        "kms_key_id": args.key_arn,
                        "volume_size": args.root_volume_gb,
                        "volume_type": "gp3",
                        "delete_on_termination": "true",
                    },
                }
            ],
            update_default_version=True,
            opts=child,
        )

        targets = aws.lb.TargetGroup(
            f"{name}-api",
            port=args.api_port,
            protocol="TLS",  # re-encrypted to the service, which terminates TLS itself
            target_type="instance",
            vpc_id=args.vpc_id,
            health_check={
                "protocol": "HTTPS",
                "path": args.health_check_path,
                "port": "traffic-port",
                "matcher": "200",
            },
            opts=child,
        )
        nlb = aws.lb.LoadBalancer(
            f"{name}-nlb",
            load_balancer_type="network",
            internal=True,
            subnets=args.subnet_ids,
            enable_cross_zone_load_balancing=True,
            opts=child,
        )
        aws.lb.Listener(
            f"{name}-tls",
            load_balancer_arn=nlb.arn,
            port=443,
            protocol="TLS",
            certificate_arn=args.certificate_arn,
            ssl_policy=args.ssl_policy,
            default_actions=[{"type": "forward", "target_group_arn": targets.arn}],
            opts=child,
        )
        aws.autoscaling.Group(
            f"{name}-asg",
            vpc_zone_identifiers=args.subnet_ids,
            min_size=args.min_size,
            max_size=args.max_size,
            desired_capacity=args.desired_capacity,
            launch_template={"id": template.id, "version": template.latest_version.apply(str)},
            target_group_arns=[targets.arn],
            # Readiness (/readyz) only steers traffic: a host with a full queue must not be replaced.
            health_check_type="EC2",
            tags=[{"key": "Name", "value": f"{args.name_prefix}-gpu", "propagate_at_launch": True}],
            opts=child,
        )

        self.security_group_id = group.id
        self.nlb_dns_name = nlb.dns_name
        self.log_group_name = logs.name
        self.register_outputs(
            {"security_group_id": group.id, "nlb_dns_name": nlb.dns_name, "log_group_name": logs.name}
        )


def _rule(rule: SgRule) -> dict:
    return {
        "protocol": rule.protocol,
        "from_port": rule.from_port,
        "to_port": rule.to_port,
        "cidr_blocks": list(rule.cidr_blocks),
        "ipv6_cidr_blocks": list(rule.ipv6_cidr_blocks),
        "description": rule.description,
    }


def _least_privilege(args: FleetArgs, log_group_arn: pulumi.Output[str]) -> dict:
    """Read models, write outputs and audit records, write its own logs: named resources only."""

    def objects(bucket_arn):
        return pulumi.Output.concat(bucket_arn, "/*")

    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListModels",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": args.models_bucket_arn,
            },
            {
                "Sid": "ReadModels",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                "Resource": objects(args.models_bucket_arn),
            },
            {
                "Sid": "WriteOutputsAndAudit",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": [objects(args.outputs_bucket_arn), objects(args.audit_bucket_arn)],
            },
            {
                # SSE-KMS: reading decrypts, writing asks for a data key.
                "Sid": "UseTheEnclaveKey",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": args.key_arn,
            },
            {
                "Sid": "WriteServiceLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                "Resource": [log_group_arn, pulumi.Output.concat(log_group_arn, ":log-stream:*")],
            },
        ],
    }
