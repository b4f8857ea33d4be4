"""AWS clients and S3 locations, configured the standard way.

Endpoints come from boto3's own `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3` and
`AWS_ENDPOINT_URL_SQS`; credentials from the standard chain. The region is
`AWS_REGION` as the AWS SDKs document it (this boto3 reads only
`AWS_DEFAULT_REGION` and the profile), then boto3's own, and for SQS the region an
AWS queue URL names wins: the queue lives there. Nothing here reads or logs a secret.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from processor.errors import InvalidConfiguration
from processor.retries import CallRetry

if TYPE_CHECKING:
    from processor.settings import Settings

# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html
MAX_VISIBILITY_TIMEOUT_S = 12 * 3600
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html
MAX_WAIT_TIME_S = 20
MAX_RECEIVE_BATCH = 10

S3_SCHEME = "s3://"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# https://docs.aws.amazon.com/general/latest/gr/sqs-service.html: sqs.REGION.amazonaws.com, the legacy
# REGION.queue.amazonaws.com, and queue.amazonaws.com (us-east-1).
_QUEUE_HOST = re.compile(r"^(?:sqs\.([a-z0-9-]+)|([a-z0-9-]+)\.queue|(queue))\.amazonaws\.com(?:\.cn)?$")


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (empty, or ending in '/')."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise InvalidConfiguration(f"not an s3:// URL: {url!r}", "write it as s3://bucket/prefix/")
        if not _BUCKET_RE.match(parsed.netloc):
            raise InvalidConfiguration(f"not a valid bucket name: {parsed.netloc!r}",
                                       "a bucket name is 3 to 63 lowercase letters, digits, dots and hyphens")
        prefix = parsed.path.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(parsed.netloc, prefix)

    @classmethod
    def bucket_of(cls, url: str) -> str | None:
        """The bucket an s3:// URL names; None for a folder path (see `processor.schemes`)."""
        return cls.parse(url).bucket if url.startswith(S3_SCHEME) else None

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def uri(self, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{name}"


def client_config(*, path_style: bool, connect_timeout_s: float, read_timeout_s: float) -> Any:
    from botocore.config import Config

    return Config(
        # One retry layer only: ours (processor.retries). See its docstring.
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        max_pool_connections=20,
        s3={"addressing_style": "path" if path_style else "auto"},
    )


def queue_region(url: str | None) -> str | None:
    """The region an AWS queue URL names; None for another endpoint's URL (a local server, a VPC endpoint)."""
    found = _QUEUE_HOST.match(urlparse(url or "").hostname or "")
    if found is None:
        return None
    return found.group(1) or found.group(2) or "us-east-1"


def configured_region() -> str | None:
    """AWS_REGION, else what boto3 finds itself (AWS_DEFAULT_REGION, the profile's region)."""
    import boto3

    return os.environ.get("AWS_REGION") or boto3.session.Session().region_name


def region_for(service: str, queue_url: str | None = None) -> str | None:
    return (queue_region(queue_url) if service == "sqs" else None) or configured_region()


def make_client(service: str, *, path_style: bool = False, connect_timeout_s: float | None = None,
                read_timeout_s: float | None = None, queue_url: str | None = None) -> Any:
    """A client with our one retry layer; timeouts default to the settings' defaults (F5B_AWS_*_TIMEOUT_S).

    `queue_url`: the queue an SQS client is for, whose URL may name its region."""
    import boto3

    from processor.settings import Settings

    config = client_config(
        path_style=path_style,
        connect_timeout_s=Settings.default("aws_connect_timeout_s") if connect_timeout_s is None else connect_timeout_s,
        read_timeout_s=Settings.default("aws_read_timeout_s") if read_timeout_s is None else read_timeout_s,
    )
    return boto3.session.Session().client(service, config=config, region_name=region_for(service, queue_url))


class Clients:
    """The S3 and SQS clients the settings describe, each made on first use, and the one retry policy of their calls."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.retry = CallRetry.from_settings(settings)

    @cached_property
    def s3(self) -> Any:
        return make_client("s3", path_style=self.settings.s3_path_style,
                           connect_timeout_s=self.settings.aws_connect_timeout_s,
                           read_timeout_s=self.settings.aws_read_timeout_s)

    @cached_property
    def sqs(self) -> Any:
        # A long poll holds the connection open for its whole wait: the read timeout must outlast it.
        return make_client("sqs", queue_url=self.settings.queue, connect_timeout_s=self.settings.aws_connect_timeout_s,
                           read_timeout_s=max(self.settings.aws_read_timeout_s, self.settings.receive_wait_s + 5))
