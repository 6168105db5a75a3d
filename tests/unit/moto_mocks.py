"""MotoMocks: run the Pulumi enclave program (pulumi/__main__.py) and create what it registers in a moto
server through boto3, so the collector can be tested on the enclave the program itself builds.

Each `create` makes the resource in moto the way the AWS provider would (same API calls, same defaults
taken over or stripped) and returns the real id plus the outputs the program reads back (arn, keyId,
Vpc.defaultRouteTableId, VpcEndpoint.prefixListId, LaunchTemplate.latestVersion, LoadBalancer.dnsName,
...). The data sources (getCallerIdentity, getPrefixList) are answered from moto too.

Every type the program uses is created in moto; none is faked. FAKED lists the types that would be
answered by RecordingMocks' invented ids instead (none today). A type in neither table fails the run:
a new resource in the program must be decided on here, not silently invented.

Provider behaviour mimicked: a new security group loses AWS's default allow-all egress (the provider
strips it and adds only the listed rules); DefaultSecurityGroup, DefaultNetworkAcl and DefaultRouteTable
take over what AWS made with the VPC and remove every rule/route not listed; numbers are ints (Pulumi
hands mocks floats); the provider's tri-state strings ("true"/"false") become booleans; buckets and
other auto-named resources get `<name>-<7 hex>` unless their name input is given.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

PULUMI_DIR = Path(__file__).resolve().parents[2] / "pulumi"
if str(PULUMI_DIR) not in sys.path:
    sys.path.insert(0, str(PULUMI_DIR))  # no package there: `pulumi` would shadow the SDK

from enclave_mocks import RecordingMocks  # noqa: E402

# Types answered by RecordingMocks.create (invented ids, nothing in moto): none. Every type the program
# registers today is created in moto, including the ones the collector never reads (IAM roles, role
# policies, instance profiles, KMS alias, log groups, target group, NLB, listener, Auto Scaling group).
FAKED: frozenset[str] = frozenset()

SERVICES = ("ec2", "s3", "kms", "logs", "iam", "sts", "elbv2", "autoscaling", "acm")
TRI_STATE = {"true": True, "false": False}
# Launch-template input names whose EC2 API name is not the input name capitalised.
LT_RENAMES = {"securityGroups": "Groups", "vpcSecurityGroupIds": "SecurityGroupIds"}
# Route input names that are not CreateRoute's parameter names capitalised.
ROUTE_KEYS = {
    "cidrBlock": "DestinationCidrBlock",
    "ipv6CidrBlock": "DestinationIpv6CidrBlock",
    "destinationPrefixListId": "DestinationPrefixListId",
}


def plain(value: Any) -> Any:
    """Pulumi's floats back to the ints the provider sends (rule numbers, ports, sizes, days)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def auto_name(name: str) -> str:
    """The provider's auto-name: the logical name plus a suffix (deterministic here)."""
    return f"{name}-{hashlib.sha256(name.encode()).hexdigest()[:7]}"


def _pascal_key(key: str) -> str:
    return key[:1].upper() + key[1:]


def _pascal(value: Any) -> Any:
    """Provider input shapes to EC2 API shapes: keys capitalised, tri-state strings to booleans."""
    if isinstance(value, dict):
        return {LT_RENAMES.get(k, _pascal_key(k)): _pascal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_pascal(v) for v in value]
    return TRI_STATE.get(value, value) if isinstance(value, str) else value


def _tags(resource_type: str, inputs: dict) -> dict:
    tags = inputs.get("tags") or {}
    items = [{"Key": k, "Value": v} for k, v in tags.items()]
    return {"TagSpecifications": [{"ResourceType": resource_type, "Tags": items}]} if items else {}


class MotoMocks(RecordingMocks):
    """RecordingMocks whose `create` builds each custom resource in the moto server at `endpoint_url`."""

    def __init__(self, endpoint_url: str, region: str = "us-east-1"):
        super().__init__(region=region)
        fake = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # moto takes any
        session = boto3.Session(**fake, region_name=region)
        self.aws = {name: session.client(name, endpoint_url=endpoint_url) for name in SERVICES}
        self.partition = "aws-us-gov" if region.startswith("us-gov-") else "aws"
        self.account_id = self.aws["sts"].get_caller_identity()["Account"]
        # new_resource and call arrive from several threads; boto3 clients share one connection pool.
        self._lock = threading.RLock()
        self.creators: dict[str, Callable[[str, dict], tuple[str, dict]]] = {
            "aws:ec2/vpc:Vpc": self._vpc,
            "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": self._default_security_group,
            "aws:ec2/defaultRouteTable:DefaultRouteTable": self._default_route_table,
            "aws:ec2/defaultNetworkAcl:DefaultNetworkAcl": self._default_network_acl,
            "aws:ec2/subnet:Subnet": self._subnet,
            "aws:ec2/routeTable:RouteTable": self._route_table,
            "aws:ec2/routeTableAssociation:RouteTableAssociation": self._route_table_association,
            "aws:ec2/networkAcl:NetworkAcl": self._network_acl,
            "aws:ec2/securityGroup:SecurityGroup": self._security_group,
            "aws:ec2/vpcEndpoint:VpcEndpoint": self._vpc_endpoint,
            "aws:ec2/flowLog:FlowLog": self._flow_log,
            "aws:ec2/launchTemplate:LaunchTemplate": self._launch_template,
            "aws:cloudwatch/logGroup:LogGroup": self._log_group,
            "aws:iam/role:Role": self._role,
            "aws:iam/rolePolicy:RolePolicy": self._role_policy,
            "aws:iam/instanceProfile:InstanceProfile": self._instance_profile,
            "aws:kms/key:Key": self._key,
            "aws:kms/alias:Alias": self._alias,
            "aws:s3/bucket:Bucket": self._bucket,
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": self._public_access_block,
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
                self._bucket_encryption
            ),
            "aws:s3/bucketVersioning:BucketVersioning": self._bucket_versioning,
            "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration": self._object_lock,
            "aws:s3/bucketPolicy:BucketPolicy": self._bucket_policy,
            "aws:lb/targetGroup:TargetGroup": self._target_group,
            "aws:lb/loadBalancer:LoadBalancer": self._load_balancer,
            "aws:lb/listener:Listener": self._listener,
            "aws:autoscaling/group:Group": self._autoscaling_group,
        }

    # ---- the two RecordingMocks hooks ----------------------------------------------------------------

    def create(self, typ: str, name: str, inputs: dict) -> tuple[str, dict]:
        with self._lock:
            if typ in FAKED:
                return super().create(typ, name, inputs)
            creator = self.creators.get(typ)
            if creator is None:
                raise NotImplementedError(
                    f"MotoMocks cannot create {typ} ({name}): add a creator (or list it in FAKED)"
                )
            values = plain(inputs)
            rid, outputs = creator(name, values)
            return rid, {**values, "id": rid, **outputs}

    def invoke(self, function: str, args: dict) -> dict:
        with self._lock:
            if function == "aws:index/getCallerIdentity:getCallerIdentity":
                me = self.aws["sts"].get_caller_identity()
                return {
                    "accountId": me["Account"],
                    "arn": me["Arn"],
                    "userId": me["UserId"],
                    "id": me["Account"],
                }
            if function == "aws:ec2/getPrefixList:getPrefixList":
                found = self._prefix_list(args.get("name"), args.get("prefixListId"))
                return {
                    "id": found["PrefixListId"],
                    "prefixListId": found["PrefixListId"],
                    "name": found["PrefixListName"],
                    "cidrBlocks": self._prefix_list_cidrs(found["PrefixListId"]),
                }
            return super().invoke(function, args)

    # ---- helpers ---------------------------------------------------------------------------------------

    @property
    def ec2(self):
        return self.aws["ec2"]

    def _arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        where = self.region if region else ""
        owner = self.account_id if account else ""
        return f"arn:{self.partition}:{service}:{where}:{owner}:{resource}"

    def _prefix_list(self, name: str | None, prefix_list_id: str | None = None) -> dict:
        if prefix_list_id:
            found = self.ec2.describe_managed_prefix_lists(PrefixListIds=[prefix_list_id])
        else:
            filters = [{"Name": "prefix-list-name", "Values": [name]}]
            found = self.ec2.describe_managed_prefix_lists(Filters=filters)
        (prefix_list,) = found["PrefixLists"]
        return prefix_list

    def _prefix_list_cidrs(self, prefix_list_id: str) -> list[str]:
        entries = self.ec2.get_managed_prefix_list_entries(PrefixListId=prefix_list_id)["Entries"]
        return [e["Cidr"] for e in entries]

    def _in_vpc(self, vpc_id: str, *more: tuple[str, str]) -> list[dict]:
        return [{"Name": "vpc-id", "Values": [vpc_id]}, *({"Name": k, "Values": [v]} for k, v in more)]

    # ---- EC2: network ----------------------------------------------------------------------------------

    def _vpc(self, name: str, i: dict) -> tuple[str, dict]:
        vpc = self.ec2.create_vpc(CidrBlock=i["cidrBlock"], **_tags("vpc", i))["Vpc"]["VpcId"]
        for attribute in ("enableDnsSupport", "enableDnsHostnames"):
            if attribute in i:
                self.ec2.modify_vpc_attribute(VpcId=vpc, **{_pascal_key(attribute): {"Value": i[attribute]}})
        main = self.ec2.describe_route_tables(Filters=self._in_vpc(vpc, ("association.main", "true")))
        acl = self.ec2.describe_network_acls(Filters=self._in_vpc(vpc, ("default", "true")))
        group = self.ec2.describe_security_groups(Filters=self._in_vpc(vpc, ("group-name", "default")))
        main_id = main["RouteTables"][0]["RouteTableId"]
        return vpc, {
            "arn": self._arn("ec2", f"vpc/{vpc}"),
            "defaultRouteTableId": main_id,
            "mainRouteTableId": main_id,
            "defaultNetworkAclId": acl["NetworkAcls"][0]["NetworkAclId"],
            "defaultSecurityGroupId": group["SecurityGroups"][0]["GroupId"],
            "ownerId": self.account_id,
        }

    def _subnet(self, name: str, i: dict) -> tuple[str, dict]:
        subnet = self.ec2.create_subnet(
            VpcId=i["vpcId"],
            CidrBlock=i["cidrBlock"],
            AvailabilityZone=i["availabilityZone"],
            **_tags("subnet", i),
        )["Subnet"]["SubnetId"]
        if i.get("mapPublicIpOnLaunch"):
            self.ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
        return subnet, {"arn": self._arn("ec2", f"subnet/{subnet}")}

    def _add_routes(self, table: str, routes: list[dict]) -> None:
        for route in routes:
            args = {ROUTE_KEYS.get(k, _pascal_key(k)): v for k, v in route.items() if v}
            self.ec2.create_route(RouteTableId=table, **args)

    def _route_table(self, name: str, i: dict) -> tuple[str, dict]:
        table = self.ec2.create_route_table(VpcId=i["vpcId"], **_tags("route-table", i))["RouteTable"]
        self._add_routes(table["RouteTableId"], i.get("routes") or [])
        return table["RouteTableId"], {"arn": self._arn("ec2", f"route-table/{table['RouteTableId']}")}

    def _default_route_table(self, name: str, i: dict) -> tuple[str, dict]:
        table_id = i["defaultRouteTableId"]
        (table,) = self.ec2.describe_route_tables(RouteTableIds=[table_id])["RouteTables"]
        for route in table["Routes"]:  # the provider removes every route it was not given (not local)
            if route.get("GatewayId") != "local" and route.get("Origin") == "CreateRoute":
                destination = {
                    k: route[k] for k in ("DestinationCidrBlock", "DestinationIpv6CidrBlock") if k in route
                }
                self.ec2.delete_route(RouteTableId=table_id, **destination)
        self._add_routes(table_id, i.get("routes") or [])
        return table_id, {"arn": self._arn("ec2", f"route-table/{table_id}"), "vpcId": table["VpcId"]}

    def _route_table_association(self, name: str, i: dict) -> tuple[str, dict]:
        association = self.ec2.associate_route_table(RouteTableId=i["routeTableId"], SubnetId=i["subnetId"])
        return association["AssociationId"], {}

    def _acl_entries(self, acl: str, i: dict) -> None:
        for egress, key in ((False, "ingress"), (True, "egress")):
            for rule in i.get(key) or []:
                protocol = {"tcp": "6", "udp": "17", "icmp": "1", "all": "-1"}.get(
                    rule["protocol"], rule["protocol"]
                )
                entry = {
                    "NetworkAclId": acl,
                    "RuleNumber": rule["ruleNo"],
                    "Protocol": protocol,
                    "RuleAction": rule["action"],
                    "Egress": egress,
                }
                if rule.get("ipv6CidrBlock"):
                    entry["Ipv6CidrBlock"] = rule["ipv6CidrBlock"]
                else:
                    entry["CidrBlock"] = rule["cidrBlock"]
                if protocol != "-1":  # as the provider: ports only where the protocol has them
                    entry["PortRange"] = {"From": rule["fromPort"], "To": rule["toPort"]}
                self.ec2.create_network_acl_entry(**entry)

    def _associate_acl(self, acl: str, subnet_ids: list[str]) -> None:
        for subnet in subnet_ids:
            filters = [{"Name": "association.subnet-id", "Values": [subnet]}]
            (current,) = self.ec2.describe_network_acls(Filters=filters)["NetworkAcls"]
            association = next(a for a in current["Associations"] if a["SubnetId"] == subnet)
            self.ec2.replace_network_acl_association(
                AssociationId=association["NetworkAclAssociationId"], NetworkAclId=acl
            )

    def _network_acl(self, name: str, i: dict) -> tuple[str, dict]:
        acl = self.ec2.create_network_acl(VpcId=i["vpcId"], **_tags("network-acl", i))["NetworkAcl"]
        acl_id = acl["NetworkAclId"]
        self._acl_entries(acl_id, i)
        self._associate_acl(acl_id, i.get("subnetIds") or [])
        return acl_id, {"arn": self._arn("ec2", f"network-acl/{acl_id}")}

    def _default_network_acl(self, name: str, i: dict) -> tuple[str, dict]:
        acl_id = i["defaultNetworkAclId"]
        (acl,) = self.ec2.describe_network_acls(NetworkAclIds=[acl_id])["NetworkAcls"]
        for entry in acl["Entries"]:  # every rule but the implicit deny (32767), as the provider does
            if entry["RuleNumber"] != 32767:
                self.ec2.delete_network_acl_entry(
                    NetworkAclId=acl_id, RuleNumber=entry["RuleNumber"], Egress=entry["Egress"]
                )
        self._acl_entries(acl_id, i)
        self._associate_acl(acl_id, i.get("subnetIds") or [])
        return acl_id, {"arn": self._arn("ec2", f"network-acl/{acl_id}"), "vpcId": acl["VpcId"]}

    # ---- EC2: security groups --------------------------------------------------------------------------

    @staticmethod
    def _permissions(rules: list[dict], group_id: str) -> list[dict]:
        permissions = []
        for r in rules:
            text = {"Description": r["description"]} if r.get("description") else {}
            protocol = str(r["protocol"]).lower()
            permission: dict[str, Any] = {"IpProtocol": "-1" if protocol in ("-1", "all") else protocol}
            if permission["IpProtocol"] != "-1":
                permission |= {"FromPort": r["fromPort"], "ToPort": r["toPort"]}
            groups = [*(r.get("securityGroups") or []), *([group_id] if r.get("self") else [])]
            permission |= {
                "IpRanges": [{"CidrIp": c, **text} for c in r.get("cidrBlocks") or []],
                "Ipv6Ranges": [{"CidrIpv6": c, **text} for c in r.get("ipv6CidrBlocks") or []],
                "PrefixListIds": [{"PrefixListId": p, **text} for p in r.get("prefixListIds") or []],
                "UserIdGroupPairs": [{"GroupId": g, **text} for g in groups],
            }
            permissions.append(permission)
        return permissions

    def _set_rules(self, group_id: str, i: dict) -> None:
        """Remove every rule the group has (AWS's defaults), then add exactly the listed ones."""
        (group,) = self.ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
        if group["IpPermissionsEgress"]:
            self.ec2.revoke_security_group_egress(
                GroupId=group_id, IpPermissions=group["IpPermissionsEgress"]
            )
        if group["IpPermissions"]:
            self.ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=group["IpPermissions"])
        if ingress := self._permissions(i.get("ingress") or [], group_id):
            self.ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=ingress)
        if egress := self._permissions(i.get("egress") or [], group_id):
            self.ec2.authorize_security_group_egress(GroupId=group_id, IpPermissions=egress)

    def _security_group(self, name: str, i: dict) -> tuple[str, dict]:
        group_id = self.ec2.create_security_group(
            GroupName=i.get("name") or auto_name(name),
            Description=i.get("description") or "Managed by Pulumi",
            VpcId=i["vpcId"],
            **_tags("security-group", i),
        )["GroupId"]
        self._set_rules(group_id, i)  # strips AWS's default allow-all egress, like the provider
        return group_id, {"arn": self._arn("ec2", f"security-group/{group_id}"), "ownerId": self.account_id}

    def _default_security_group(self, name: str, i: dict) -> tuple[str, dict]:
        filters = self._in_vpc(i["vpcId"], ("group-name", "default"))
        (group,) = self.ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
        self._set_rules(group["GroupId"], i)
        return group["GroupId"], {
            "arn": self._arn("ec2", f"security-group/{group['GroupId']}"),
            "name": "default",
        }

    # ---- EC2: endpoints, flow logs, launch template -----------------------------------------------------

    def _vpc_endpoint(self, name: str, i: dict) -> tuple[str, dict]:
        optional = {
            "RouteTableIds": i.get("routeTableIds"),
            "SubnetIds": i.get("subnetIds"),
            "SecurityGroupIds": i.get("securityGroupIds"),
            "PrivateDnsEnabled": i.get("privateDnsEnabled"),
            "PolicyDocument": i.get("policy"),
        }
        endpoint = self.ec2.create_vpc_endpoint(
            VpcId=i["vpcId"],
            ServiceName=i["serviceName"],
            VpcEndpointType=i.get("vpcEndpointType", "Gateway"),
            **{k: v for k, v in optional.items() if v is not None},
        )["VpcEndpoint"]
        outputs = {
            "arn": self._arn("ec2", f"vpc-endpoint/{endpoint['VpcEndpointId']}"),
            "state": endpoint["State"],
        }
        if endpoint["VpcEndpointType"] == "Gateway":  # the provider looks the service's prefix list up
            prefix_list = self._prefix_list(i["serviceName"])
            outputs |= {
                "prefixListId": prefix_list["PrefixListId"],
                "cidrBlocks": self._prefix_list_cidrs(prefix_list["PrefixListId"]),
            }
        return endpoint["VpcEndpointId"], outputs

    def _flow_log(self, name: str, i: dict) -> tuple[str, dict]:
        kinds = {"vpcId": "VPC", "subnetId": "Subnet", "eniId": "NetworkInterface"}
        key = next(k for k in kinds if i.get(k))
        optional = {
            "LogDestinationType": i.get("logDestinationType"),
            "LogDestination": i.get("logDestination"),
            "DeliverLogsPermissionArn": i.get("iamRoleArn"),
            "MaxAggregationInterval": i.get("maxAggregationInterval"),
            "LogFormat": i.get("logFormat"),
        }
        created = self.ec2.create_flow_logs(
            ResourceIds=[i[key]],
            ResourceType=kinds[key],
            TrafficType=i["trafficType"],
            **{k: v for k, v in optional.items() if v is not None},
        )
        if created.get("Unsuccessful"):
            raise RuntimeError(f"moto refused flow log {name}: {created['Unsuccessful']}")
        (flow_log,) = created["FlowLogIds"]
        return flow_log, {"arn": self._arn("ec2", f"vpc-flow-log/{flow_log}")}

    def _launch_template(self, name: str, i: dict) -> tuple[str, dict]:
        skip = {"name", "namePrefix", "description", "updateDefaultVersion", "tags", "defaultVersion"}
        data = _pascal({k: v for k, v in i.items() if k not in skip})
        template = self.ec2.create_launch_template(
            LaunchTemplateName=i.get("name") or auto_name(name), LaunchTemplateData=data
        )["LaunchTemplate"]
        return template["LaunchTemplateId"], {
            "arn": self._arn("ec2", f"launch-template/{template['LaunchTemplateId']}"),
            "name": template["LaunchTemplateName"],
            "latestVersion": template["LatestVersionNumber"],
            "defaultVersion": template["DefaultVersionNumber"],
        }

    # ---- logs, IAM, KMS --------------------------------------------------------------------------------

    def _log_group(self, name: str, i: dict) -> tuple[str, dict]:
        group = i.get("name") or auto_name(name)
        key = {"kmsKeyId": i["kmsKeyId"]} if i.get("kmsKeyId") else {}
        self.aws["logs"].create_log_group(logGroupName=group, **key)
        if i.get("retentionInDays"):
            self.aws["logs"].put_retention_policy(logGroupName=group, retentionInDays=i["retentionInDays"])
        return group, {"name": group, "arn": self._arn("logs", f"log-group:{group}")}

    def _role(self, name: str, i: dict) -> tuple[str, dict]:
        role = self.aws["iam"].create_role(
            RoleName=i.get("name") or auto_name(name),
            AssumeRolePolicyDocument=i["assumeRolePolicy"],
            Path=i.get("path", "/"),
        )["Role"]
        return role["RoleName"], {"name": role["RoleName"], "arn": role["Arn"], "uniqueId": role["RoleId"]}

    def _role_policy(self, name: str, i: dict) -> tuple[str, dict]:
        policy = i.get("name") or auto_name(name)
        self.aws["iam"].put_role_policy(RoleName=i["role"], PolicyName=policy, PolicyDocument=i["policy"])
        return f"{i['role']}:{policy}", {"name": policy}

    def _instance_profile(self, name: str, i: dict) -> tuple[str, dict]:
        iam, profile_name = self.aws["iam"], i.get("name") or auto_name(name)
        profile = iam.create_instance_profile(InstanceProfileName=profile_name)["InstanceProfile"]
        if i.get("role"):
            iam.add_role_to_instance_profile(InstanceProfileName=profile_name, RoleName=i["role"])
        return profile_name, {
            "name": profile_name,
            "arn": profile["Arn"],
            "uniqueId": profile["InstanceProfileId"],
        }

    def _key(self, name: str, i: dict) -> tuple[str, dict]:
        optional = {
            "Description": i.get("description"),
            "Policy": i.get("policy"),
            "KeyUsage": i.get("keyUsage"),
        }
        key = self.aws["kms"].create_key(**{k: v for k, v in optional.items() if v is not None})[
            "KeyMetadata"
        ]
        if i.get("enableKeyRotation"):
            self.aws["kms"].enable_key_rotation(KeyId=key["KeyId"])
        return key["KeyId"], {"keyId": key["KeyId"], "arn": key["Arn"]}

    def _alias(self, name: str, i: dict) -> tuple[str, dict]:
        self.aws["kms"].create_alias(AliasName=i["name"], TargetKeyId=i["targetKeyId"])
        return i["name"], {"arn": self._arn("kms", i["name"])}

    # ---- S3 --------------------------------------------------------------------------------------------

    def _bucket(self, name: str, i: dict) -> tuple[str, dict]:
        bucket = i.get("bucket") or auto_name(name)
        where = (
            {}
            if self.region == "us-east-1"
            else {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
        )
        self.aws["s3"].create_bucket(
            Bucket=bucket, ObjectLockEnabledForBucket=bool(i.get("objectLockEnabled")), **where
        )
        if tags := i.get("tags"):  # the provider tags the bucket in the same apply
            self.aws["s3"].put_bucket_tagging(
                Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}
            )
        return bucket, {
            "bucket": bucket,
            "arn": f"arn:{self.partition}:s3:::{bucket}",
            "region": self.region,
            "bucketDomainName": f"{bucket}.s3.amazonaws.com",
        }

    def _public_access_block(self, name: str, i: dict) -> tuple[str, dict]:
        flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        self.aws["s3"].put_public_access_block(
            Bucket=i["bucket"],
            PublicAccessBlockConfiguration={_pascal_key(f): bool(i.get(f)) for f in flags},
        )
        return i["bucket"], {}

    def _bucket_encryption(self, name: str, i: dict) -> tuple[str, dict]:
        rules = []
        for rule in i["rules"]:
            default = rule.get("applyServerSideEncryptionByDefault") or {}
            by_default = {"SSEAlgorithm": default["sseAlgorithm"]}
            if default.get("kmsMasterKeyId"):
                by_default["KMSMasterKeyID"] = default["kmsMasterKeyId"]
            rules.append(
                {
                    "ApplyServerSideEncryptionByDefault": by_default,
                    "BucketKeyEnabled": bool(rule.get("bucketKeyEnabled")),
                }
            )
        self.aws["s3"].put_bucket_encryption(
            Bucket=i["bucket"], ServerSideEncryptionConfiguration={"Rules": rules}
        )
        return i["bucket"], {}

    def _bucket_versioning(self, name: str, i: dict) -> tuple[str, dict]:
        status = i["versioningConfiguration"]["status"]
        self.aws["s3"].put_bucket_versioning(Bucket=i["bucket"], VersioningConfiguration={"Status": status})
        return i["bucket"], {}

    def _object_lock(self, name: str, i: dict) -> tuple[str, dict]:
        configuration: dict[str, Any] = {"ObjectLockEnabled": i.get("objectLockEnabled", "Enabled")}
        if retention := (i.get("rule") or {}).get("defaultRetention"):
            configuration["Rule"] = {"DefaultRetention": {_pascal_key(k): v for k, v in retention.items()}}
        self.aws["s3"].put_object_lock_configuration(
            Bucket=i["bucket"], ObjectLockConfiguration=configuration
        )
        return i["bucket"], {}

    def _bucket_policy(self, name: str, i: dict) -> tuple[str, dict]:
        self.aws["s3"].put_bucket_policy(Bucket=i["bucket"], Policy=i["policy"])
        return i["bucket"], {}

    # ---- load balancing, Auto Scaling ------------------------------------------------------------------

    def _target_group(self, name: str, i: dict) -> tuple[str, dict]:
        check = i.get("healthCheck") or {}
        optional = {
            "HealthCheckProtocol": check.get("protocol"),
            "HealthCheckPath": check.get("path"),
            "HealthCheckPort": check.get("port"),
            "Matcher": {"HttpCode": check["matcher"]} if check.get("matcher") else None,
        }
        group = self.aws["elbv2"].create_target_group(
            Name=i.get("name") or auto_name(name),
            Port=i["port"],
            Protocol=i["protocol"],
            TargetType=i.get("targetType", "instance"),
            VpcId=i["vpcId"],
            **{k: v for k, v in optional.items() if v is not None},
        )["TargetGroups"][0]
        arn = group["TargetGroupArn"]
        return arn, {"arn": arn, "name": group["TargetGroupName"], "arnSuffix": arn.split(":", 5)[5]}

    def _load_balancer(self, name: str, i: dict) -> tuple[str, dict]:
        elbv2 = self.aws["elbv2"]
        balancer = elbv2.create_load_balancer(
            Name=i.get("name") or auto_name(name),
            Subnets=i["subnets"],
            Type=i.get("loadBalancerType", "application"),
            Scheme="internal" if i.get("internal") else "internet-facing",
        )["LoadBalancers"][0]
        arn = balancer["LoadBalancerArn"]
        if "enableCrossZoneLoadBalancing" in i:
            value = str(bool(i["enableCrossZoneLoadBalancing"])).lower()
            elbv2.modify_load_balancer_attributes(
                LoadBalancerArn=arn, Attributes=[{"Key": "load_balancing.cross_zone.enabled", "Value": value}]
            )
        return arn, {"arn": arn, "dnsName": balancer["DNSName"], "name": balancer["LoadBalancerName"]}

    def _listener(self, name: str, i: dict) -> tuple[str, dict]:
        optional = {
            "Certificates": [{"CertificateArn": i["certificateArn"]}] if i.get("certificateArn") else None,
            "SslPolicy": i.get("sslPolicy"),
        }
        actions = [
            {
                "Type": a["type"],
                **({"TargetGroupArn": a["targetGroupArn"]} if a.get("targetGroupArn") else {}),
            }
            for a in i["defaultActions"]
        ]
        listener = self.aws["elbv2"].create_listener(
            LoadBalancerArn=i["loadBalancerArn"],
            Port=i["port"],
            Protocol=i["protocol"],
            DefaultActions=actions,
            **{k: v for k, v in optional.items() if v is not None},
        )["Listeners"][0]
        return listener["ListenerArn"], {"arn": listener["ListenerArn"]}

    def _autoscaling_group(self, name: str, i: dict) -> tuple[str, dict]:
        group_name = i.get("name") or auto_name(name)
        template = i["launchTemplate"]
        optional = {
            "DesiredCapacity": i.get("desiredCapacity"),
            "TargetGroupARNs": i.get("targetGroupArns"),
            "HealthCheckType": i.get("healthCheckType"),
            "Tags": [
                {"Key": t["key"], "Value": t["value"], "PropagateAtLaunch": bool(t.get("propagateAtLaunch"))}
                for t in i.get("tags") or []
            ]
            or None,
        }
        autoscaling = self.aws["autoscaling"]
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=group_name,
            MinSize=i["minSize"],
            MaxSize=i["maxSize"],
            VPCZoneIdentifier=",".join(i["vpcZoneIdentifiers"]),
            LaunchTemplate={
                "LaunchTemplateId": template["id"],
                "Version": template.get("version", "$Default"),
            },
            **{k: v for k, v in optional.items() if v is not None},
        )
        (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group_name])[
            "AutoScalingGroups"
        ]
        return group_name, {"name": group_name, "arn": group["AutoScalingGroupARN"]}
