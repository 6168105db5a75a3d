"""The airlock enclave: an AWS VPC with no path to the internet, and the GPU fleet inside it.

Only wiring lives here: every setting comes from enclave_settings, every resource from a component.
"""

import pulumi
import pulumi_aws as aws

from enclave_endpoints import EndpointsArgs, PrivateEndpoints
from enclave_fleet import FleetArgs, GpuFleet
from enclave_network import EnclaveNetwork, NetworkArgs
from enclave_settings import load_settings
from enclave_storage import SecureStorage, StorageArgs

s = load_settings()
account_id = aws.get_caller_identity_output().account_id

# The bucket policies admit only the S3 endpoint, the endpoint needs the VPC, and the VPC's flow logs
# need the audit bucket: the endpoint id is promised here and kept once the endpoint exists.
s3_endpoint_id, keep_s3_endpoint_id = pulumi.deferred_output()

storage = SecureStorage(
    f"{s.name_prefix}-storage",
    StorageArgs(
        name_prefix=s.name_prefix,
        region=s.region,
        partition=s.partition,
        account_id=account_id,
        s3_endpoint_id=s3_endpoint_id,
        audit_retention_days=s.audit_retention_days,
    ),
)
network = EnclaveNetwork(
    f"{s.name_prefix}-network",
    NetworkArgs(
        name_prefix=s.name_prefix,
        region=s.region,
        account_id=account_id,
        vpc_cidr=s.vpc_cidr,
        availability_zones=s.availability_zones,
        private_subnet_cidrs=s.private_subnet_cidrs,
        internal_cidrs=s.internal_cidrs,
        key_arn=storage.key_arn,
        flow_log_bucket_arn=storage.bucket_arns["audit"],
        log_retention_days=s.log_retention_days,
    ),
)
endpoints = PrivateEndpoints(
    f"{s.name_prefix}-endpoints",
    EndpointsArgs(
        name_prefix=s.name_prefix,
        region=s.region,
        account_id=account_id,
        vpc_id=network.vpc_id,
        vpc_cidr=s.vpc_cidr,
        subnet_ids=network.subnet_ids,
        route_table_ids=network.route_table_ids,
        services=s.interface_endpoints,
    ),
)
keep_s3_endpoint_id(endpoints.s3_endpoint_id)

fleet = GpuFleet(
    f"{s.name_prefix}-fleet",
    FleetArgs(
        name_prefix=s.name_prefix,
        vpc_id=network.vpc_id,
        vpc_cidr=s.vpc_cidr,
        subnet_ids=network.subnet_ids,
        ami_id=s.ami_id,
        instance_type=s.instance_type,
        min_size=s.fleet_min_size,
        max_size=s.fleet_max_size,
        desired_capacity=s.fleet_desired_capacity,
        root_device_name=s.root_device_name,
        root_volume_gb=s.root_volume_gb,
        key_arn=storage.key_arn,
        models_bucket_arn=storage.bucket_arns["models"],
        outputs_bucket_arn=storage.bucket_arns["outputs"],
        audit_bucket_arn=storage.bucket_arns["audit"],
        s3_prefix_list_id=endpoints.s3_prefix_list_id,
        egress=s.fleet_egress,
        api_ingress=s.api_ingress,
        api_port=s.api_port,
        certificate_arn=s.certificate_arn,
        ssl_policy=s.ssl_policy,
        health_check_path=s.health_check_path,
        log_retention_days=s.log_retention_days,
    ),
)

# What the evidence pack reads back (`pulumi stack output --json`).
pulumi.export("vpcId", network.vpc_id)
pulumi.export("subnetIds", network.subnet_ids)
pulumi.export("s3EndpointId", endpoints.s3_endpoint_id)
pulumi.export("interfaceEndpointIds", endpoints.interface_endpoint_ids)
pulumi.export("bucketNames", storage.bucket_names)
pulumi.export("kmsKeyArn", storage.key_arn)
pulumi.export("nlbDnsName", fleet.nlb_dns_name)
pulumi.export("fleetSecurityGroupId", fleet.security_group_id)
pulumi.export("egressPolicySha256", s.egress_policy_sha256)
