"""AWS clients and S3 locations, configured the standard way.

Endpoints come from boto3's own `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3` and
`AWS_ENDPOINT_URL_SQS`; credentials from the standard chain. Nothing here reads
or logs a secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from processor.errors import F5BatchError

# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html
MAX_VISIBILITY_TIMEOUT_S = 12 * 3600
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html
MAX_WAIT_TIME_S = 20
MAX_RECEIVE_BATCH = 10

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (empty, or ending in '/')."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise F5BatchError(f"not an s3:// URL: {url!r}", code="invalid_configuration")
        if not _BUCKET_RE.match(parsed.netloc):
            raise F5BatchError(f"not a valid bucket name: {parsed.netloc!r}", code="invalid_configuration")
        prefix = parsed.path.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(parsed.netloc, prefix)

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def uri(self, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{name}"


def is_s3_url(value: str) -> bool:
    return value.startswith("s3://")


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


def make_client(service: str, *, path_style: bool = False, connect_timeout_s: float = 5.0,
                read_timeout_s: float = 30.0) -> Any:
    import boto3

    config = client_config(path_style=path_style, connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s)
    return boto3.session.Session().client(service, config=config)
