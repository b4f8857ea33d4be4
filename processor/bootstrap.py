"""`f5-batch bootstrap`: the buckets, the queue with its dead-letter queue, and the notification that feeds it.

Every step is idempotent: running it again changes nothing that is already right.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from processor.aws import MAX_VISIBILITY_TIMEOUT_S, S3Location
from processor.settings import Settings

NOTIFICATION_ID = "f5-batch-inbox"
DLQ_RETENTION_S = 14 * 24 * 3600  # the SQS maximum: time to look at what failed


@dataclass(frozen=True)
class BootstrapPlan:
    queue_name: str
    inbox: S3Location | None = None
    outbox: S3Location | None = None
    create_buckets: bool = False
    max_receive_count: int = Settings.default("max_receives")
    visibility_timeout_s: int = Settings.default("lease_s")
    region: str | None = None


def bootstrap(plan: BootstrapPlan, s3: Any, sqs: Any) -> dict[str, str]:
    """Create what is missing; returns the queue and dead-letter queue URLs and ARNs."""
    if plan.create_buckets:
        for location in (plan.inbox, plan.outbox):
            if location is not None:
                ensure_bucket(s3, location.bucket, plan.region)
    dlq_url = ensure_queue(sqs, f"{plan.queue_name}-dlq", {"MessageRetentionPeriod": str(DLQ_RETENTION_S)})
    dlq_arn = queue_arn(sqs, dlq_url)
    attributes = {
        "VisibilityTimeout": str(min(plan.visibility_timeout_s, MAX_VISIBILITY_TIMEOUT_S)),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(plan.max_receive_count)}),
    }
    queue_url = ensure_queue(sqs, plan.queue_name, attributes)
    arn = queue_arn(sqs, queue_url)
    if plan.inbox is not None:
        allow_s3_to_send(sqs, queue_url, arn, plan.inbox.bucket)
        ensure_notification(s3, plan.inbox, arn)
    return {"queue_url": queue_url, "queue_arn": arn, "dlq_url": dlq_url, "dlq_arn": dlq_arn}


def ensure_bucket(s3: Any, bucket: str, region: str | None) -> None:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region and region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**kwargs)


def ensure_queue(sqs: Any, name: str, attributes: dict[str, str]) -> str:
    """Create the queue, or bring an existing one's attributes to what is asked."""
    from botocore.exceptions import ClientError

    try:
        url: str = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if "NonExistentQueue" not in str(exc.response.get("Error", {}).get("Code", "")):
            raise
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        return url
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


def queue_arn(sqs: Any, url: str) -> str:
    arn: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return arn


def allow_s3_to_send(sqs: Any, url: str, arn: str, bucket: str) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "f5-batch-s3-notifications",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": arn,
            "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
        }],
    }
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})


def ensure_notification(s3: Any, inbox: S3Location, arn: str) -> None:
    """Our queue configuration (by Id) replaced in place; the bucket's other notifications kept."""
    current = s3.get_bucket_notification_configuration(Bucket=inbox.bucket)
    current.pop("ResponseMetadata", None)
    queues = [q for q in current.get("QueueConfigurations", []) if q.get("Id") != NOTIFICATION_ID]
    rules = [{"Name": "suffix", "Value": ".json"}]
    if inbox.prefix:
        rules.insert(0, {"Name": "prefix", "Value": inbox.prefix})
    queues.append({
        "Id": NOTIFICATION_ID,
        "QueueArn": arn,
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": rules}},
    })
    current["QueueConfigurations"] = queues
    s3.put_bucket_notification_configuration(Bucket=inbox.bucket, NotificationConfiguration=current)
