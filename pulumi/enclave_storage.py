"""SecureStorage: the customer-managed KMS key and the models, outputs and audit buckets."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

# Object reads and writes: denied unless they come through the enclave's S3 endpoint. Bucket-level
# actions are left out on purpose: the deployer works from outside the VPC and its HeadBucket needs
# s3:ListBucket, so denying those would lock Pulumi out of its own buckets.
DATA_ACTIONS = [
    "s3:GetObject*",
    "s3:PutObject*",
    "s3:DeleteObject*",
    "s3:ListMultipartUploadParts",
    "s3:AbortMultipartUpload",
    "s3:RestoreObject",
]
BUCKETS = ("models", "outputs", "audit")


@dataclass(frozen=True)
class StorageArgs:
    name_prefix: str
    region: str
    partition: str
    account_id: pulumi.Input[str]
    s3_endpoint_id: pulumi.Input[str]  # the only door to the buckets' objects
    audit_retention_days: int


class SecureStorage(pulumi.ComponentResource):
    key_arn: pulumi.Output[str]
    bucket_names: dict[str, pulumi.Output[str]]
    bucket_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("airlock:enclave:SecureStorage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        key = aws.kms.Key(
            f"{name}-key",
            description=f"{args.name_prefix} enclave: buckets, EBS volumes, log groups",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.json_dumps(_key_policy(args)),
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-key-alias",
            name=f"alias/{args.name_prefix}-enclave",
            target_key_id=key.key_id,
            opts=child,
        )

        self.bucket_names, self.bucket_arns = {}, {}
        for purpose in BUCKETS:
            audit = purpose == "audit"
            bucket = aws.s3.Bucket(
                f"{name}-{purpose}",
                object_lock_enabled=audit,  # only settable at creation
                force_destroy=False,
                # Read by the policy pack (the audit bucket) and the AWS collector (outputs are
                # unversioned on purpose: retention and erasure must really delete).
                tags={"airlock:role": purpose},
                opts=child,
            )
            bucket_opts = pulumi.ResourceOptions(parent=bucket)
            block = aws.s3.BucketPublicAccessBlock(
                f"{name}-{purpose}-public-access",
                bucket=bucket.id,
                block_public_acls=True,
                block_public_policy=True,
                ignore_public_acls=True,
                restrict_public_buckets=True,
                opts=bucket_opts,
            )
            aws.s3.BucketServerSideEncryptionConfiguration(
                f"{name}-{purpose}-encryption",
                bucket=bucket.id,
                rules=[
                    {
                        "apply_server_side_encryption_by_default": {
                            "sse_algorithm": "aws:kms",
                            "kms_master_key_id": key.arn,
                        },
                        "bucket_key_enabled": True,
                    }
                ],
                opts=bucket_opts,
            )
            if purpose != "outputs":  # models: every version kept; audit: Object Lock needs versioning
                versioning = aws.s3.BucketVersioning(
                    f"{name}-{purpose}-versioning",
                    bucket=bucket.id,
                    versioning_configuration={"status": "Enabled"},
                    opts=bucket_opts,
                )
            if audit:
                # COMPLIANCE: nobody, root included, can shorten the retention or delete a locked version.
                aws.s3.BucketObjectLockConfiguration(
                    f"{name}-{purpose}-object-lock",
                    bucket=bucket.id,
                    object_lock_enabled="Enabled",
                    rule={"default_retention": {"mode": "COMPLIANCE", "days": args.audit_retention_days}},
                    opts=pulumi.ResourceOptions(parent=bucket, depends_on=[versioning]),
                )
            aws.s3.BucketPolicy(
                f"{name}-{purpose}-policy",
                bucket=bucket.id,
                policy=pulumi.Output.json_dumps(_bucket_policy(bucket.arn, args, flow_logs=audit)),
                # S3 refuses concurrent changes to one bucket's access settings.
                opts=pulumi.ResourceOptions(parent=bucket, depends_on=[block]),
            )
            self.bucket_names[purpose] = bucket.bucket
            self.bucket_arns[purpose] = bucket.arn

        self.key_arn = key.arn
        self.register_outputs({"key_arn": key.arn, "bucket_names": self.bucket_names})


def _key_policy(args: StorageArgs) -> dict:
    account, region, partition = args.account_id, args.region, args.partition
    root = pulumi.Output.concat("arn:", partition, ":iam::", account, ":root")
    # Launching instances with volumes encrypted by this key is done by the Auto Scaling service-linked
    # role; it must exist before the key policy names it (any account that has used Auto Scaling has it,
    # else: aws iam create-service-linked-role --aws-service-name autoscaling.amazonaws.com).
    autoscaling = pulumi.Output.concat(
        "arn:",
        partition,
        ":iam::",
        account,
        ":role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
    )
    use = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            # Key administration stays with the account's IAM policies.
            {
                "Sid": "AccountAdministers",
                "Effect": "Allow",
                "Principal": {"AWS": root},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchLogsEncryptsThisAccountsLogGroups",
                "Effect": "Allow",
                "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                "Action": use,
                "Resource": "*",
                "Condition": {
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": pulumi.Output.concat(
                            "arn:", partition, ":logs:", region, ":", account, ":log-group:*"
                        )
                    }
                },
            },
            {
                "Sid": "FlowLogDeliveryToTheAuditBucket",
                "Effect": "Allow",
                "Principal": {"Service": "delivery.logs.amazonaws.com"},
                "Action": use,
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": account}},
            },
            {
                "Sid": "AutoScalingUsesForEncryptedVolumes",
                "Effect": "Allow",
                "Principal": {"AWS": autoscaling},
                "Action": use,
                "Resource": "*",
            },
            {
                "Sid": "AutoScalingGrantsForEncryptedVolumes",
                "Effect": "Allow",
                "Principal": {"AWS": autoscaling},
                "Action": "kms:CreateGrant",
                "Resource": "*",
                "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
            },
        ],
    }


def _bucket_policy(arn: pulumi.Output[str], args: StorageArgs, *, flow_logs: bool) -> dict:
    objects = pulumi.Output.concat(arn, "/*")
    statements = [
        {
            "Sid": "DenyPlainHttp",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn, objects],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        {
            "Sid": "DenyOutsideTheEnclaveEndpoint",
            "Effect": "Deny",
            "Principal": "*",
            "Action": DATA_ACTIONS,
            "Resource": [arn, objects],
            # AWS services (flow-log delivery) write from their own network, never through the endpoint.
            "Condition": {
                "StringNotEquals": {"aws:SourceVpce": args.s3_endpoint_id},
                "BoolIfExists": {"aws:PrincipalIsAWSService": "false"},
            },
        },
    ]
    if flow_logs:
        account = args.account_id
        statements += [
            {
                "Sid": "FlowLogDeliveryWrites",
                "Effect": "Allow",
                "Principal": {"Service": "delivery.logs.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": pulumi.Output.concat(arn, "/AWSLogs/", account, "/*"),
                "Condition": {
                    "StringEquals": {
                        "aws:SourceAccount": account,
                        "s3:x-amz-acl": "bucket-owner-full-control",
                    }
                },
            },
            {
                "Sid": "FlowLogDeliveryChecksAcl",
                "Effect": "Allow",
                "Principal": {"Service": "delivery.logs.amazonaws.com"},
                "Action": "s3:GetBucketAcl",
                "Resource": arn,
                "Condition": {"StringEquals": {"aws:SourceAccount": account}},
            },
        ]
    return {"Version": "2012-10-17", "Statement": statements}
