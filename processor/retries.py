"""Retrying S3 and SQS calls: which failures are worth another try, and how long to keep trying.

botocore's own retries are switched off (`total_max_attempts=1` in `aws.py`) so
that this is the only layer: two layers multiply (3 × 3 attempts, backoffs
stacked) and hide what happened from the logs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential_jitter

from processor.logs import logger

if TYPE_CHECKING:
    from processor.settings import Settings

T = TypeVar("T")

# Error codes AWS documents as retryable (botocore's standard retry mode uses the same list), plus
# 409 ConditionalRequestConflict, which S3 returns when two conditional writes race on one key.
TRANSIENT_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled", "SlowDown",
    "PriorRequestNotComplete", "EC2ThrottledException", "RequestTimeout", "RequestTimeoutException",
    "InternalError", "InternalFailure", "ServiceUnavailable", "ConditionalRequestConflict",
})


def is_transient(exc: BaseException) -> bool:
    """Network trouble, throttling and 5xx are transient; 4xx (403, 404, validation) are not."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from urllib3.exceptions import ProtocolError

    if isinstance(exc, (BotoConnectionError, ConnectionClosedError, EndpointConnectionError,
                        ConnectTimeoutError, ReadTimeoutError, ProtocolError, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return code in TRANSIENT_CODES or status >= 500 or status == 429
    return False


def error_code(exc: BaseException) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or "ClientError"
    return type(exc).__name__


def http_status(exc: BaseException) -> int:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


@dataclass(frozen=True)
class CallRetry:
    """Exponential backoff with full jitter, bounded in attempts and in total time (`F5B_AWS_*`)."""

    max_attempts: int
    total_s: float
    initial_s: float = 0.2
    max_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> CallRetry:
        return cls(max_attempts=settings.aws_max_attempts, total_s=settings.aws_retry_total_s)

    def call(self, what: str, fn: Callable[[], T]) -> T:
        def log_retry(state: object) -> None:
            outcome = getattr(state, "outcome", None)
            exc = outcome.exception() if outcome is not None else None
            logger.warning(
                f"{what} failed ({error_code(exc) if exc else '?'}), retrying",
                extra={"stage": "retry", "call": what, "attempt": getattr(state, "attempt_number", 0)},
            )

        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self.max_attempts) | stop_after_delay(self.total_s),
            wait=wait_exponential_jitter(initial=self.initial_s, max=self.max_s),
            before_sleep=log_retry,
            reraise=True,
        )
        return retrying(fn)
