"""Which S3/SQS failures are retried, and that one call's retries are bounded."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from processor.retries import CallRetry, is_transient


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "PutObject")


@pytest.mark.parametrize("exc", [
    client_error("SlowDown", 503), client_error("InternalError", 500), client_error("ServiceUnavailable", 503),
    client_error("ThrottlingException", 400), client_error("RequestTimeout", 400),
    client_error("ConditionalRequestConflict", 409), client_error("Whatever", 502), client_error("TooMany", 429),
    EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), ConnectTimeoutError(endpoint_url="x"),
    ReadTimeoutError(endpoint_url="x"), ConnectionResetError(), TimeoutError(),
])
def test_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [
    client_error("AccessDenied", 403), client_error("NoSuchKey", 404), client_error("PreconditionFailed", 412),
    client_error("InvalidArgument", 400), ValueError("bug"), KeyError("x"),
])
def test_permanent(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_transient_errors_are_retried_until_success() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise client_error("SlowDown", 503)
        return "ok"

    assert CallRetry(max_attempts=5, total_s=60, initial_s=0.01, max_s=0.01).call("put", flaky) == "ok"
    assert len(calls) == 3


def test_permanent_errors_are_not_retried_and_attempts_are_bounded() -> None:
    calls = []

    def denied() -> None:
        calls.append(1)
        raise client_error("AccessDenied", 403)

    with pytest.raises(ClientError):
        CallRetry(max_attempts=5, total_s=60, initial_s=0.01).call("get", denied)
    assert len(calls) == 1

    def down() -> None:
        calls.append(1)
        raise client_error("SlowDown", 503)

    calls.clear()
    with pytest.raises(ClientError):
        CallRetry(max_attempts=4, total_s=60, initial_s=0.01, max_s=0.01).call("get", down)
    assert len(calls) == 4


def test_botocore_retries_are_off_so_layers_do_not_multiply() -> None:
    from processor.aws import client_config

    config = client_config(path_style=False, connect_timeout_s=1, read_timeout_s=1)
    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}
