"""What a failed S3 or SQS call means to an operator: one line naming what failed, and the fix.

Every command (`run`, `doctor`, `submit`, `bootstrap`) says the same thing for the same failure, so the
wording lives here once. Only errors botocore raises are explained; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from processor.errors import AwsUnavailable
from processor.logs import logger, redact
from processor.retries import CallRetry, error_code, http_status

T = TypeVar("T")

POLICY = "docs/iam-policy.json"
CREDENTIALS_FIX = ("give the pod credentials through the standard chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                   "(on RunPod as pod environment variables or secrets), AWS_PROFILE, or an instance role")
REGION_FIX = "set AWS_REGION (or AWS_DEFAULT_REGION) to the region of your bucket and queue, e.g. AWS_REGION=us-east-1"
ENDPOINT_FIX = ("check the endpoint (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_SQS), the region and the "
                "network")
THROTTLED = ("Throttling", "ThrottlingException", "RequestThrottled", "SlowDown", "TooManyRequestsException",
             "RequestLimitExceeded")

INVALID_VALUE = ("InvalidParameterValue", "InvalidParameterValueException", "ValidationError", "InvalidAddress",
                 "InvalidArgument", "InvalidBucketName", "MalformedXML")


@dataclass(frozen=True)
class Explanation:
    detail: str
    fix: str


def is_aws_error(exc: BaseException) -> bool:
    """An error raised by botocore (never imported here for a command that made no AWS call)."""
    if "botocore" not in sys.modules:
        return False
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, (BotoCoreError, ClientError))


def explain(exc: BaseException, client: Any = None, what: str = "the bucket or queue") -> Explanation:
    """`what`: the thing the call was about, as the fix should name it ("the outbox bucket b", "the queue URL")."""
    from botocore.exceptions import NoCredentialsError, NoRegionError, PartialCredentialsError

    where = getattr(getattr(client, "meta", None), "endpoint_url", None) or "the AWS endpoint"
    region = getattr(getattr(client, "meta", None), "region_name", None)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return Explanation(f"no usable AWS credentials for {where}: {exc}", CREDENTIALS_FIX)
    if isinstance(exc, NoRegionError):
        return Explanation("no AWS region configured", REGION_FIX)
    status, code = http_status(exc), error_code(exc)
    operation = getattr(exc, "operation_name", "")
    said = f"{code} (HTTP {status or '-'}) from {where}" + (f" on {operation}" if operation else "")
    if status in (401, 403) or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return Explanation(said, f"give these credentials the permissions in {POLICY} for {what}")
    if "NonExistentQueue" in code or code == "QueueDoesNotExist":
        in_region = f" in region {region}" if region else ""
        return Explanation(f"{said}: no such queue{in_region}",
                           f"create {what} (f5-batch bootstrap --queue-name NAME), fix its URL, or set AWS_REGION to "
                           f"the region the queue is in (its URL names it: https://sqs.REGION.amazonaws.com/...)")
    if status == 404 or "NoSuch" in code:
        return Explanation(said, f"create {what} (f5-batch bootstrap --create-buckets creates the buckets) or fix "
                                 f"its name")
    if code in INVALID_VALUE:
        return Explanation(f"{said}: {redact(str(exc))}", f"correct the value the message names ({what})")
    if code in THROTTLED or status in (429, 503):
        return Explanation(f"{said}: still throttled after the retries",
                           "try again later, or raise F5B_AWS_MAX_ATTEMPTS / F5B_AWS_RETRY_TOTAL_S")
    if status:
        return Explanation(f"{said}: {redact(str(exc))}", f"the endpoint refused the call: check {what} and {where}")
    return Explanation(redact(f"cannot reach {where}: {type(exc).__name__}: {exc}"), ENDPOINT_FIX)


def command_call(retry: CallRetry, name: str, client: Any, what: str, fn: Callable[[], T]) -> T:
    """One S3 or SQS call of a command, retried as the worker retries; a failure that outlasts the retries is
    AwsUnavailable, explained (`what`: what the call is about, as the fix should name it)."""
    try:
        return retry.call(name, fn)
    except Exception as exc:
        if not is_aws_error(exc):
            raise
        explained = explain(exc, client, what)
        raise AwsUnavailable(explained.detail, explained.fix) from exc


def quiet_retries() -> None:
    """A command's stderr is its result and, on failure, one line: the retries it makes on the way stay unsaid."""
    logger.setLevel(logging.ERROR)
