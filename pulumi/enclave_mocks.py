"""Run the enclave program under Pulumi's mocks and hand back every resource it registered.

No CLI, no engine, no AWS account: `run_enclave(config)` runs pulumi/__main__.py, the program `pulumi up`
runs, against `RecordingMocks` and returns a `Recording` of each resource's type, name and inputs
(camelCase, as a provider or a CrossGuard policy sees them) plus the resolved stack outputs.

To build the enclave somewhere else (moto, through boto3), subclass RecordingMocks and override
`create(typ, name, inputs)` to return the real (id, outputs), and `invoke(function, args)` for the data
sources the program reads (getCallerIdentity, getPrefixList). Dependencies arrive already resolved.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import runpy
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml

PROJECT = "airlock-enclave"
HERE = Path(__file__).resolve().parent
EXAMPLE_CONFIG = HERE / "Pulumi.example.yaml"
ACCOUNT_ID = "123456789012"
# EC2's id prefixes, so ids look like the real ones in recordings and evidence.
EC2_ID_PREFIXES = {
    "aws:ec2/subnet:Subnet": "subnet",
    "aws:ec2/routeTable:RouteTable": "rtb",
    "aws:ec2/networkAcl:NetworkAcl": "acl",
    "aws:ec2/securityGroup:SecurityGroup": "sg",
    "aws:ec2/flowLog:FlowLog": "fl",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "rtbassoc",
}
# Stand-ins for the region's S3 prefix list.
S3_CIDRS = ("52.216.0.0/15", "54.231.0.0/16", "3.5.0.0/19")
S3_PREFIX_LIST_ID = "pl-63a5400a"


@dataclass(frozen=True)
class Recorded:
    type: str  # e.g. aws:ec2/vpc:Vpc; components: airlock:enclave:EnclaveNetwork
    name: str
    inputs: dict[str, Any]  # camelCase keys; numbers arrive as floats
    id: str
    outputs: dict[str, Any]
    custom: bool  # False for component resources


@dataclass(frozen=True)
class Recording:
    resources: tuple[Recorded, ...]
    outputs: dict[str, Any]  # the stack outputs (pulumi.export), resolved

    def of_type(self, typ: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == typ]

    def one(self, typ: str, name_suffix: str = "") -> Recorded:
        found = [r for r in self.of_type(typ) if r.name.endswith(name_suffix)]
        if len(found) != 1:
            raise LookupError(f"expected one {typ} named *{name_suffix}, got {[r.name for r in found]}")
        return found[0]


def _partition(region: str) -> str:
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every registration; `create` and `invoke` are the two methods to override."""

    def __init__(self, region: str = "us-east-1", account_id: str = ACCOUNT_ID):
        self.region = region
        self.account_id = account_id
        self.recorded: list[Recorded] = []
        # The runtime calls new_resource from several threads.
        self.lock = threading.Lock()

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        inputs = dict(args.inputs)
        with self.lock:
            if args.custom:
                rid, outputs = self.create(args.typ, args.name, inputs)
            else:  # components exist only in the program: nothing to create
                rid, outputs = f"{args.name}-component", {}
            self.recorded.append(Recorded(args.typ, args.name, inputs, rid, outputs, args.custom))
        return rid, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        return self.invoke(args.token, dict(args.args)), []

    def invoke(self, function: str, args: dict) -> dict:
        """The result of a provider function (data source) call, by its token."""
        if function == "aws:index/getCallerIdentity:getCallerIdentity":
            arn = f"arn:{_partition(self.region)}:iam::{self.account_id}:user/deployer"
            return {
                "accountId": self.account_id,
                "arn": arn,
                "userId": "AIDAMOCKDEPLOYER",
                "id": self.account_id,
            }
        if function == "aws:ec2/getPrefixList:getPrefixList":
            name = args.get("name", f"com.amazonaws.{self.region}.s3")
            return {
                "id": S3_PREFIX_LIST_ID,
                "prefixListId": S3_PREFIX_LIST_ID,
                "name": name,
                "cidrBlocks": list(S3_CIDRS),
            }
        return {}

    def create(self, typ: str, name: str, inputs: dict) -> tuple[str, dict]:
        """Create one custom resource; return its physical id and output properties.

        The default invents them the way the AWS provider would fill them in. An override that creates
        the resource for real must return what the program reads back: arn (most types), Bucket.bucket,
        Key.keyId, Vpc.defaultRouteTableId and defaultNetworkAclId, VpcEndpoint.prefixListId (gateway),
        LogGroup.name, Role.name, LaunchTemplate.latestVersion, LoadBalancer.dnsName; calling
        super().create() first and replacing the id is the short way.
        """
        digest = hashlib.sha256(f"{typ}/{name}".encode()).hexdigest()[:17]
        partition, region, account = _partition(self.region), self.region, self.account_id
        service = typ.split(":")[1].split("/")[0]
        rid = f"{EC2_ID_PREFIXES[typ]}-{digest}" if typ in EC2_ID_PREFIXES else f"{name}-{digest[:8]}"
        extra: dict[str, Any] = {}
        if typ == "aws:s3/bucket:Bucket":
            rid = inputs.get("bucket") or f"{name}-{digest[:7]}"  # the provider's auto-name
            extra = {"bucket": rid, "arn": f"arn:{partition}:s3:::{rid}"}
        elif typ == "aws:ec2/vpc:Vpc":
            rid = f"vpc-{digest}"
            extra = {
                "defaultRouteTableId": f"rtb-{digest}",
                "mainRouteTableId": f"rtb-{digest}",
                "defaultNetworkAclId": f"acl-{digest}",
                "defaultSecurityGroupId": f"sg-{digest}",
            }
        elif typ == "aws:ec2/vpcEndpoint:VpcEndpoint":
            rid = f"vpce-{digest}"
            if inputs.get("vpcEndpointType") == "Gateway":
                extra = {"prefixListId": S3_PREFIX_LIST_ID}
        elif typ == "aws:kms/key:Key":
            rid = f"{digest[:8]}-mock-key"
            extra = {"keyId": rid, "arn": f"arn:{partition}:kms:{region}:{account}:key/{rid}"}
        elif typ == "aws:cloudwatch/logGroup:LogGroup":
            rid = inputs.get("name") or name
            extra = {"name": rid, "arn": f"arn:{partition}:logs:{region}:{account}:log-group:{rid}"}
        elif typ in ("aws:iam/role:Role", "aws:iam/instanceProfile:InstanceProfile"):
            rid = inputs.get("name") or f"{name}-{digest[:7]}"
            kind = "role" if typ.endswith("Role") else "instance-profile"
            extra = {"name": rid, "arn": f"arn:{partition}:iam::{account}:{kind}/{rid}"}
        elif typ == "aws:lb/loadBalancer:LoadBalancer":
            extra = {"dnsName": f"internal-{name}-{digest[:8]}.elb.{region}.amazonaws.com"}
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            rid, extra = f"lt-{digest}", {"latestVersion": 1}
        extra.setdefault("arn", f"arn:{partition}:{service}:{region}:{account}:{name}")
        return rid, {**inputs, **extra}


def load_stack_config(path: str | Path = EXAMPLE_CONFIG) -> dict[str, Any]:
    """The `config:` mapping of a Pulumi.<stack>.yaml, as written."""
    return dict(yaml.safe_load(Path(path).read_text())["config"])


def _engine_config(config: Mapping[str, Any]) -> dict[str, str]:
    """Config as the engine hands it to a program: namespaced keys; non-strings as JSON."""
    out = {}
    for key, value in config.items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        out[full] = value if isinstance(value, str) else json.dumps(value)
    return out


_OUR_LOOP: list[asyncio.AbstractEventLoop] = []  # the loop the previous run installed


def _fresh_event_loop() -> None:
    """Install a new event loop (closing the one our previous run left); it stays installed afterwards.

    An earlier async test may have closed or unset the current loop, and set_mocks needs one; code that
    calls set_mocks itself after a run still finds one.
    """
    if _OUR_LOOP:
        _OUR_LOOP.pop().close()
    _OUR_LOOP.append(asyncio.new_event_loop())
    asyncio.set_event_loop(_OUR_LOOP[0])


def run_enclave(
    config: Mapping[str, Any], mocks: RecordingMocks | None = None, *, stack: str = "test"
) -> Recording:
    """Run pulumi/__main__.py with `config` (a Pulumi.<stack>.yaml `config:` mapping) against `mocks`.

    Keys without a namespace belong to the project. Returns what this run registered and exported;
    a refused config raises the program's exception (enclave_settings.SettingsError).
    """
    mocks = mocks if mocks is not None else RecordingMocks(region=str(config.get("aws:region", "us-east-1")))
    start = len(mocks.recorded)
    exports: dict[str, Any] = {}

    @pulumi.runtime.test
    def program():
        # As the CLI runs a project directory: its folder on sys.path while __main__ runs.
        runpy.run_path(str(HERE), run_name="__main__")
        stack_outputs = pulumi.runtime.get_root_resource().outputs
        return pulumi.Output.all(**stack_outputs).apply(exports.update)

    _fresh_event_loop()
    pulumi.runtime.reset_options(project=PROJECT, stack=stack)  # a new root stack for each run
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False)
    pulumi.runtime.set_all_config(_engine_config(config))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pulumi_aws(\.|$)")
        program()
    return Recording(tuple(mocks.recorded[start:]), exports)
