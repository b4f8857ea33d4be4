"""`f5-batch bootstrap`: the buckets, the queue with its dead-letter queue, and the notification that feeds it.

Every step is idempotent: running it again changes nothing that is already right.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from processor.aws import MAX_VISIBILITY_TIMEOUT_S, S3Location
from processor.errors import AwsUnavailable, InvalidConfiguration
from processor.failures import command_call
from processor.retries import CallRetry, error_code
from processor.settings import Settings

T = TypeVar("T")

NOTIFICATION_ID = "f5-batch-inbox"
DLQ_RETENTION_S = 14 * 24 * 3600  # the SQS maximum: time to look at what failed
DLQ_SUFFIX = "-dlq"
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html: up to 80 characters,
# alphanumerics, hyphens and underscores (the dead-letter queue's name adds "-dlq"). No ".fifo": S3 cannot notify a
# FIFO queue.
MAX_QUEUE_NAME = 80 - len(DLQ_SUFFIX)
_QUEUE_NAME = re.compile(rf"^[A-Za-z0-9_-]{{1,{MAX_QUEUE_NAME}}}$")


@dataclass(frozen=True)
class BootstrapPlan:
    queue_name: str
    inbox: S3Location | None = None
    outbox: S3Location | None = None
    create_buckets: bool = False
    max_receive_count: int = Settings.default("max_receives")
    visibility_timeout_s: int = Settings.default("lease_s")
    region: str | None = None

    def __post_init__(self) -> None:
        if not _QUEUE_NAME.match(self.queue_name):
            raise InvalidConfiguration(
                f"--queue-name {self.queue_name!r} is not a queue name SQS takes here",
                f"use 1 to {MAX_QUEUE_NAME} letters, digits, '-' or '_' (no .fifo: S3 cannot notify a FIFO queue)")


@dataclass(frozen=True)
class Calls:
    """The S3 and SQS clients, and the retries every call gets; a call that fails for good is explained."""

    s3: Any
    sqs: Any
    retry: CallRetry

    def s3_call(self, name: str, what: str, fn: Callable[[Any], T]) -> T:
        return command_call(self.retry, f"s3 {name}", self.s3, what, lambda: fn(self.s3))

    def sqs_call(self, name: str, what: str, fn: Callable[[Any], T]) -> T:
        return command_call(self.retry, f"sqs {name}", self.sqs, what, lambda: fn(self.sqs))


def bootstrap(plan: BootstrapPlan, s3: Any, sqs: Any, retry: CallRetry | None = None) -> dict[str, str]:
    """Create what is missing; returns the queue and dead-letter queue URLs and ARNs."""
    calls = Calls(s3, sqs, retry or CallRetry.from_settings(Settings.model_validate({})))
    if plan.create_buckets:
        for location in (plan.inbox, plan.outbox):
            if location is not None:
                ensure_bucket(calls, location.bucket, plan.region)
    dlq_url = ensure_queue(calls, plan.queue_name + DLQ_SUFFIX, {"MessageRetentionPeriod": str(DLQ_RETENTION_S)})
    dlq_arn = queue_arn(calls, dlq_url)
    attributes = {
        "VisibilityTimeout": str(min(plan.visibility_timeout_s, MAX_VISIBILITY_TIMEOUT_S)),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(plan.max_receive_count)}),
    }
    queue_url = ensure_queue(calls, plan.queue_name, attributes)
    arn = queue_arn(calls, queue_url)
    if plan.inbox is not None:
        allow_s3_to_send(calls, queue_url, arn, plan.inbox.bucket)
        ensure_notification(calls, plan.inbox, arn)
    return {"queue_url": queue_url, "queue_arn": arn, "dlq_url": dlq_url, "dlq_arn": dlq_arn}


def cause_code(exc: AwsUnavailable) -> str:
    return error_code(exc.__cause__) if exc.__cause__ is not None else ""


def ensure_bucket(calls: Calls, bucket: str, region: str | None) -> None:
    what = f"the bucket {bucket}"
    try:
        calls.s3_call("head bucket", what, lambda s3: s3.head_bucket(Bucket=bucket))
        return
    except AwsUnavailable as exc:
        if cause_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region and region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    calls.s3_call("create bucket", what, lambda s3: s3.create_bucket(**kwargs))


def ensure_queue(calls: Calls, name: str, attributes: dict[str, str]) -> str:
    """Create the queue, or bring an existing one's attributes to what is asked."""
    what = f"the queue {name}"
    try:
        url: str = calls.sqs_call("get queue url", what, lambda sqs: sqs.get_queue_url(QueueName=name))["QueueUrl"]
    except AwsUnavailable as exc:
        if "NonExistentQueue" not in cause_code(exc) and cause_code(exc) != "QueueDoesNotExist":
            raise
        made: str = calls.sqs_call("create queue", what, lambda sqs: sqs.create_queue(
            QueueName=name, Attributes=attributes))["QueueUrl"]
        return made
    calls.sqs_call("set queue attributes", what, lambda sqs: sqs.set_queue_attributes(QueueUrl=url,
                                                                                       Attributes=attributes))
    return url


def queue_arn(calls: Calls, url: str) -> str:
    arn: str = calls.sqs_call("get queue attributes", f"the queue {url}", lambda sqs: sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["QueueArn"]))["Attributes"]["QueueArn"]
    return arn


def allow_s3_to_send(calls: Calls, url: str, arn: str, bucket: str) -> None:
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
    calls.sqs_call("set queue policy", f"the queue {url}", lambda sqs: sqs.set_queue_attributes(
        QueueUrl=url, Attributes={"Policy": json.dumps(policy)}))


def ensure_notification(calls: Calls, inbox: S3Location, arn: str) -> None:
    """Our queue configuration (by Id) replaced in place; the bucket's other notifications kept."""
    what = f"the inbox bucket {inbox.bucket}"
    current = calls.s3_call("get notification", what, lambda s3: s3.get_bucket_notification_configuration(
        Bucket=inbox.bucket))
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
    calls.s3_call("put notification", what, lambda s3: s3.put_bucket_notification_configuration(
        Bucket=inbox.bucket, NotificationConfiguration=current))


# --- the command ---------------------------------------------------------------------------------------------

HELP = "create the queue, its dead-letter queue and the inbox notification (idempotent)"
DESCRIPTION = """\
Create, or bring back to what is right, what a queue worker needs in AWS: with
--create-buckets the inbox and outbox buckets, the dead-letter queue NAME-dlq
(messages kept 14 days), the queue NAME with its redrive policy and visibility
timeout, the queue policy letting the inbox bucket send to it, and the inbox
bucket's notification (new .json keys under the inbox prefix) to the queue.
Running it again changes nothing that is already right. Prints queue_url=,
queue_arn=, dlq_url= and dlq_arn= (queue_url is the worker's F5B_QUEUE).
Run it with an operator's credentials: the worker's cannot create queues."""
EPILOG = """\
example:
  f5-batch bootstrap --queue-name tts-jobs --inbox s3://my-inbox/inbox/ \\
                     --outbox s3://my-outbox/ --create-buckets

exit status:
  0  everything exists and is configured
  2  usage or AWS error: a bad flag or queue name, no credentials or region, access
     denied, a missing bucket, an endpoint that does not answer (one line with the fix)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue-name", required=True, metavar="NAME",
                        help=f"the queue's name (1 to {MAX_QUEUE_NAME} letters, digits, '-', '_')")
    parser.add_argument("--inbox", metavar="s3://BUCKET/PREFIX/",
                        help="the inbox whose new .json objects feed the queue (default: no notification)")
    parser.add_argument("--outbox", metavar="s3://BUCKET/PREFIX/", help="the outbox (created with --create-buckets)")
    parser.add_argument("--create-buckets", action="store_true",
                        help="create the inbox and outbox buckets if missing (default: off)")
    parser.add_argument("--max-receive-count", type=int, default=Settings.default("max_receives"), metavar="N",
                        help="deliveries before the dead-letter queue (default: %(default)s)")
    parser.add_argument("--visibility-timeout", type=int, default=Settings.default("lease_s"), metavar="SECONDS",
                        help="the queue's visibility timeout, the worker's lease F5B_LEASE_S (default: %(default)s)")
    parser.add_argument("--s3-path-style", action="store_true",
                        help="path-style S3 addressing, for S3-compatible stores (default: off)")


def run(args: argparse.Namespace) -> int:
    from processor.aws import make_client
    from processor.failures import quiet_retries
    from processor.validation import env_settings

    quiet_retries()
    retry = CallRetry.from_settings(env_settings())
    plan = BootstrapPlan(
        queue_name=args.queue_name,
        inbox=S3Location.parse(args.inbox) if args.inbox else None,
        outbox=S3Location.parse(args.outbox) if args.outbox else None,
        create_buckets=args.create_buckets,
        max_receive_count=args.max_receive_count,
        visibility_timeout_s=args.visibility_timeout,
    )
    s3 = make_client("s3", path_style=args.s3_path_style)
    # Outside us-east-1 a bucket needs its location constraint.
    plan = dataclasses.replace(plan, region=s3.meta.region_name)
    for name, value in bootstrap(plan, s3, make_client("sqs"), retry).items():
        print(f"{name}={value}")
    return 0
