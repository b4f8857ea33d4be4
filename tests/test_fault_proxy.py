"""The fault proxy forwards S3 and SQS faithfully at rate 0 and injects each fault kind as a real network would.

Other tests rely on these behaviours to test retries and idempotency, so each one is pinned here with the exact
exception or error code botocore reports, and where it matters, with what the server really stored.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from tests.support.aws import Endpoint, free_ports, unique_name
from tests.support.fault_proxy import ALL_KINDS, FaultProxy, Request, is_s3, is_sqs
from tests.support.waiting import wait_until

MIB = 1024 * 1024
#: fail fast and never retry: each call makes exactly one request, so each fault is seen as the client sees it
ONE_SHOT = Config(retries={"total_max_attempts": 1}, read_timeout=1, connect_timeout=1)

ProxyFactory = Callable[..., FaultProxy]
ClientFactory = Callable[..., Any]


@pytest.fixture
def make_proxy(moto_endpoint: Endpoint) -> Iterator[ProxyFactory]:
    """Start proxies in front of moto (keyword arguments as FaultProxy's); all are stopped after the test."""
    proxies: list[FaultProxy] = []

    def make(**kwargs: Any) -> FaultProxy:
        proxy = FaultProxy(moto_endpoint.url, **kwargs).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    """boto3 clients for a URL, closed after the test so no socket outlives it (ResourceWarning is an error)."""
    clients: list[Any] = []

    def make(url: str, service: str, config: Config | None = None) -> Any:
        client = Endpoint(url=url).client(service, config)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def direct_s3(moto_endpoint: Endpoint, make_client: ClientFactory) -> Any:
    """An S3 client straight to moto, to check what the server really stored behind the proxy's back."""
    return make_client(moto_endpoint.url, "s3")


@pytest.fixture
def bucket(direct_s3: Any) -> str:
    name = unique_name("fault-proxy")
    direct_s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def queue(moto_endpoint: Endpoint, make_client: ClientFactory) -> str:
    url: str = make_client(moto_endpoint.url, "sqs").create_queue(QueueName=unique_name("fault-proxy"))["QueueUrl"]
    return url


def exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "404":
            return False
        raise


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# --------------------------------------------------------------------------------------------- rate 0: faithful


def test_s3_through_proxy_at_rate_zero(make_proxy: ProxyFactory, make_client: ClientFactory, bucket: str) -> None:
    """Small, large (6 MiB, Expect: 100-continue) and multipart bodies, HEAD, GET and LIST all pass unchanged."""
    proxy = make_proxy()
    s3 = make_client(proxy.url, "s3")
    s3.put_object(Bucket=bucket, Key="small.txt", Body=b"hello")
    big = os.urandom(6 * MIB)
    s3.put_object(Bucket=bucket, Key="big.bin", Body=big)
    multi = os.urandom(11 * MIB)
    five_mib_parts = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    s3.upload_fileobj(io.BytesIO(multi), bucket, "multi.bin", Config=five_mib_parts)

    assert s3.get_object(Bucket=bucket, Key="small.txt")["Body"].read() == b"hello"
    assert md5(s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read()) == md5(big)
    assert md5(s3.get_object(Bucket=bucket, Key="multi.bin")["Body"].read()) == md5(multi)
    head = s3.head_object(Bucket=bucket, Key="multi.bin")
    assert head["ContentLength"] == len(multi)
    assert head["ETag"].endswith('-3"'), "three parts: a real multipart upload went through the proxy"
    keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["big.bin", "multi.bin", "small.txt"]
    stats = proxy.stats.snapshot()
    assert stats["faults"] == 0
    assert stats["requests"] == stats["forwarded"] >= 10  # 3 puts, create + 3 parts + complete, 3 gets, head, list


def test_sqs_through_proxy_at_rate_zero(make_proxy: ProxyFactory, make_client: ClientFactory) -> None:
    proxy = make_proxy()
    sqs = make_client(proxy.url, "sqs")
    queue = sqs.create_queue(QueueName=unique_name("fault-proxy"))["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody='{"job": 1}')
    messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in messages] == ['{"job": 1}']
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=messages[0]["ReceiptHandle"])
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert proxy.stats["forwarded"] == proxy.stats["requests"] == 5


def test_chunked_request_body_reaches_moto(make_proxy: ProxyFactory, direct_s3: Any, bucket: str) -> None:
    """A ``Transfer-Encoding: chunked`` PUT (what botocore sends for aws-chunked uploads over TLS) is relayed."""
    proxy = make_proxy()
    parts = [b"hello ", b"chunked ", b"world" * 1000]
    conn = http.client.HTTPConnection("127.0.0.1", port_of(proxy.url), timeout=5)
    try:
        conn.request("PUT", f"/{bucket}/chunked", body=iter(parts), encode_chunked=True)
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status == 200
    assert direct_s3.get_object(Bucket=bucket, Key="chunked")["Body"].read() == b"".join(parts)


class RawUpstream:
    """A one-request upstream that records the exact bytes it received: to check framing and trailers survive.

    moto cannot be used for trailers: its server (werkzeug) answers 500 to a chunked body with trailers.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.received = b""
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            while not self.received.endswith(b"\r\n\r\n") or b"\r\n0\r\n" not in self.received:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                self.received += chunk
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def close(self) -> None:
        self.thread.join(5)
        self.listener.close()


def test_chunked_body_with_trailers_is_forwarded_byte_for_byte() -> None:
    upstream = RawUpstream()
    body = b"5;ext=1\r\nabcde\r\n3\r\nfgh\r\n0\r\nx-amz-checksum-crc32: AAAAAA==\r\n\r\n"
    head = (
        b"PUT /b/k HTTP/1.1\r\nHost: s3.example:1234\r\n"
        b"Transfer-Encoding: chunked\r\nX-Amz-Trailer: x-amz-checksum-crc32\r\n"
    )
    try:
        with FaultProxy(upstream.url) as proxy, socket.create_connection(("127.0.0.1", port_of(proxy.url))) as sock:
            sock.sendall(head + b"\r\n" + body)
            answer = sock.recv(65536)
    finally:
        upstream.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nok")
    sent_head, _, sent_body = upstream.received.partition(b"\r\n\r\n")
    assert sent_body == body
    assert b"Host: s3.example:1234\r\n" in sent_head, "the original Host header is kept (SigV4 signs it)"


# --------------------------------------------------------------------------------------------- each fault kind


def test_reset_before_fails_and_nothing_is_stored(
    make_proxy: ProxyFactory, make_client: ClientFactory, direct_s3: Any, bucket: str
) -> None:
    proxy = make_proxy(rate=1.0, kinds=["reset_before"])
    s3 = make_client(proxy.url, "s3", ONE_SHOT)
    with pytest.raises(ConnectionClosedError):
        s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert not exists(direct_s3, bucket, "k")
    assert proxy.stats.faults_by_kind() == {"reset_before": 1}
    assert proxy.stats["forwarded"] == 0


def test_reset_after_fails_but_the_write_happened(
    make_proxy: ProxyFactory, make_client: ClientFactory, direct_s3: Any, bucket: str
) -> None:
    """The client sees the same error as reset_before, yet the object is stored: the case retries must survive."""
    proxy = make_proxy(rate=1.0, kinds=["reset_after"])
    s3 = make_client(proxy.url, "s3", ONE_SHOT)
    with pytest.raises(ConnectionClosedError):
        s3.put_object(Bucket=bucket, Key="k", Body=b"data", IfNoneMatch="*")
    assert direct_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"
    proxy.set_rate(0.0)
    with pytest.raises(ClientError) as retry:  # the naive retry of a conditional write now fails
        s3.put_object(Bucket=bucket, Key="k", Body=b"data", IfNoneMatch="*")
    assert retry.value.response["Error"]["Code"] == "PreconditionFailed"
    assert proxy.stats["reset_after"] == 1 and proxy.stats["forwarded"] == 2


def test_reset_after_sqs_delete_happened(
    make_proxy: ProxyFactory, make_client: ClientFactory, moto_endpoint: Endpoint, queue: str
) -> None:
    direct = make_client(moto_endpoint.url, "sqs")
    direct.send_message(QueueUrl=queue, MessageBody="m")
    (message,) = direct.receive_message(QueueUrl=queue, VisibilityTimeout=1)["Messages"]
    proxy = make_proxy(rate=1.0, kinds=["reset_after"])
    with pytest.raises(ConnectionClosedError):
        make_client(proxy.url, "sqs", ONE_SHOT).delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    time.sleep(1.1)  # past the visibility timeout: an undeleted message would be back
    assert "Messages" not in direct.receive_message(QueueUrl=queue)


def test_stall_times_out(make_proxy: ProxyFactory, make_client: ClientFactory) -> None:
    proxy = make_proxy(rate=1.0, kinds=["stall"], stall_s=3.0)
    s3 = make_client(proxy.url, "s3", ONE_SHOT)
    start = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        s3.list_buckets()
    assert 0.9 <= time.monotonic() - start < 2.5
    assert proxy.stats["stall"] == 1
    start = time.monotonic()
    proxy.stop()
    assert time.monotonic() - start < 1.0, "stop() interrupts a stall in progress"


def test_slow_succeeds_late(make_proxy: ProxyFactory, make_client: ClientFactory, bucket: str) -> None:
    proxy = make_proxy(rate=1.0, kinds=["slow"], slow_s=0.3)
    s3 = make_client(proxy.url, "s3", ONE_SHOT)
    start = time.monotonic()
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert time.monotonic() - start >= 0.3
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"
    assert proxy.stats.snapshot()["slow"] == proxy.stats["forwarded"] == 2


@pytest.mark.parametrize(("kind", "status", "code"), [("http503", 503, "SlowDown"), ("http500", 500, "InternalError")])
def test_s3_error_replies_parse_as_aws_codes(
    make_proxy: ProxyFactory, make_client: ClientFactory, direct_s3: Any, bucket: str, kind: str, status: int, code: str
) -> None:
    proxy = make_proxy(rate=1.0, kinds=[kind])
    s3 = make_client(proxy.url, "s3", ONE_SHOT)
    with pytest.raises(ClientError) as put:
        s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert put.value.response["Error"]["Code"] == code
    assert put.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    with pytest.raises(ClientError) as head:  # HEAD errors have no body: botocore reports the status as the code
        s3.head_object(Bucket=bucket, Key="k")
    assert head.value.response["Error"]["Code"] == str(status)
    assert not exists(direct_s3, bucket, "k")
    proxy.set_rate(0.0)
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")  # the kept-alive connection is still in a sane state
    assert proxy.stats[kind] == 2 and proxy.stats["forwarded"] == 1


@pytest.mark.parametrize(
    ("kind", "status", "code"), [("http503", 503, "ServiceUnavailable"), ("http500", 500, "InternalFailure")]
)
def test_sqs_error_replies_parse_as_aws_codes(
    make_proxy: ProxyFactory, make_client: ClientFactory, queue: str, kind: str, status: int, code: str
) -> None:
    proxy = make_proxy(rate=1.0, kinds=[kind])
    sqs = make_client(proxy.url, "sqs", ONE_SHOT)
    with pytest.raises(ClientError) as send:
        sqs.send_message(QueueUrl=queue, MessageBody="m")
    error = send.value.response["Error"]
    assert send.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert (error["Code"], error["Type"]) == (code, "Receiver")
    assert proxy.stats["forwarded"] == 0


# --------------------------------------------------------------------------------------------- control


def test_set_rate_and_stats(make_proxy: ProxyFactory, make_client: ClientFactory) -> None:
    proxy = make_proxy(rate=0.0, kinds=["http503"])
    s3 = make_client(proxy.url, "s3", ONE_SHOT)
    s3.list_buckets()
    proxy.set_rate(1.0)
    with pytest.raises(ClientError):
        s3.list_buckets()
    proxy.set_rate(0.0)
    s3.list_buckets()
    stats = proxy.stats.snapshot()
    assert (stats["requests"], stats["forwarded"], stats["faults"], stats["http503"]) == (3, 2, 1, 1)
    assert [kind for _, _, kind in proxy.history] == [None, "http503", None]
    with pytest.raises(ValueError):
        proxy.set_rate(1.5)


def test_only_restricts_faults(make_proxy: ProxyFactory, make_client: ClientFactory, bucket: str, queue: str) -> None:
    proxy = make_proxy(rate=1.0, kinds=["http503"], only=is_sqs)
    s3 = make_client(proxy.url, "s3", ONE_SHOT)
    sqs = make_client(proxy.url, "sqs", ONE_SHOT)
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"
    with pytest.raises(ClientError):
        sqs.send_message(QueueUrl=queue, MessageBody="m")
    assert proxy.stats["http503"] == 1 and proxy.stats["forwarded"] == 2


def test_request_classifiers() -> None:
    sqs_json = Request("POST", "/", "HTTP/1.1", (("X-Amz-Target", "AmazonSQS.SendMessage"),))
    sqs_query = Request(
        "POST", "/", "HTTP/1.1", (("content-type", "application/x-www-form-urlencoded"),), b"Action=SendMessage&x=1"
    )
    s3_put = Request("PUT", "/b/k?x=1", "HTTP/1.1", (("Content-Type", "application/x-www-form-urlencoded"),), b"k=v")
    assert [is_sqs(r) for r in (sqs_json, sqs_query, s3_put)] == [True, True, False]
    assert [is_s3(r) for r in (sqs_json, sqs_query, s3_put)] == [False, False, True]
    assert s3_put.path == "/b/k" and s3_put.keep_alive
    assert not Request("GET", "/", "HTTP/1.0", ()).keep_alive


def test_same_seed_same_fault_sequence(make_proxy: ProxyFactory, make_client: ClientFactory) -> None:
    def run(seed: int) -> list[str | None]:
        proxy = make_proxy(rate=0.5, kinds=["http500", "http503", "slow"], slow_s=0.01, seed=seed)
        s3 = make_client(proxy.url, "s3", ONE_SHOT)
        for _ in range(24):
            try:
                s3.list_buckets()
            except ClientError:
                pass
        return [kind for _, _, kind in proxy.history]

    def expected(seed: int) -> list[str | None]:
        """The documented draw: one random() per request, then choice(kinds) when it falls below the rate."""
        rng = random.Random(seed)
        return [rng.choice(["http500", "http503", "slow"]) if rng.random() < 0.5 else None for _ in range(24)]

    first, second, other = run(7), run(7), run(8)
    assert first == second == expected(7)
    assert other == expected(8) != first
    assert None in first and len(set(first)) >= 3, "the seed exercises faults and clean requests alike"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        FaultProxy("http://127.0.0.1:1", kinds=["teleport"])
    with pytest.raises(ValueError):
        FaultProxy("https://127.0.0.1:1")
    with pytest.raises(ValueError):
        FaultProxy("http://127.0.0.1:1", rate=-0.1)
    with pytest.raises(RuntimeError):
        _ = FaultProxy("http://127.0.0.1:1").url
    assert set(ALL_KINDS) == {"reset_before", "reset_after", "stall", "slow", "http500", "http503"}


def test_binds_loopback_and_stop_cuts_idle_connections(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy()
    assert proxy.url.startswith("http://127.0.0.1:")
    port = port_of(proxy.url)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as idle:
        # until the proxy has accepted it (a backlog connection would get a RST instead)
        wait_until(lambda: proxy.stats["connections"] != 0, 5, interval=0.01)
        start = time.monotonic()
        proxy.stop()
        assert time.monotonic() - start < 1.0
        assert idle.recv(1) == b"", "the idle keep-alive connection was closed"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_child_process_talks_through_proxy(make_proxy: ProxyFactory, direct_s3: Any, bucket: str, queue: str) -> None:
    """A child configured only by environment (as the worker is) reaches S3 and SQS through the proxy."""
    proxy = make_proxy()
    script = (
        "import sys, boto3\n"
        "from botocore.config import Config\n"
        "s3 = boto3.client('s3', config=Config(s3={'addressing_style': 'path'}))\n"
        "s3.put_object(Bucket=sys.argv[1], Key='from-child', Body=b'child')\n"
        "boto3.client('sqs').send_message(QueueUrl=sys.argv[2], MessageBody='child')\n"
        "print('ok')\n"
    )
    env = Endpoint(url=proxy.url).env()
    done = subprocess.run(
        [sys.executable, "-c", script, bucket, queue], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert direct_s3.get_object(Bucket=bucket, Key="from-child")["Body"].read() == b"child"
    assert proxy.stats["forwarded"] == proxy.stats["requests"] == 2


def test_stop_cuts_a_request_waiting_on_upstream(
    make_proxy: ProxyFactory, make_client: ClientFactory, queue: str
) -> None:
    """A long poll blocks the proxy thread inside upstream's response; stop() must still end it at once."""
    proxy = make_proxy()
    sqs = make_client(proxy.url, "sqs", Config(retries={"total_max_attempts": 1}, read_timeout=30))
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=10)
        except Exception as exc:  # collected: an exception in a thread would be reported by pytest on its own
            errors.append(exc)

    poller = threading.Thread(target=poll)
    poller.start()
    wait_until(lambda: proxy.stats["requests"] != 0, 5, interval=0.01)
    time.sleep(0.1)  # into the long poll
    start = time.monotonic()
    proxy.stop()
    poller.join(5)
    assert time.monotonic() - start < 1.5
    assert [type(e) for e in errors] == [ConnectionClosedError]


def test_unreachable_upstream_is_a_502() -> None:
    (port,) = free_ports(1)
    with FaultProxy(f"http://127.0.0.1:{port}") as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", port_of(proxy.url), timeout=5)
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        assert response.status == 502
        assert proxy.stats["upstream_errors"] == 1


def test_retries_ride_out_faults_from_many_threads(
    make_proxy: ProxyFactory, make_client: ClientFactory, direct_s3: Any, bucket: str
) -> None:
    """Concurrent clients with botocore's standard retries all succeed, and the counts add up.

    Every request is either forwarded or answered by a fault that does not forward: the stats stay consistent
    under concurrent connections.
    """
    kinds = ["reset_before", "reset_after", "http500", "http503", "slow"]
    proxy = make_proxy(rate=0.15, kinds=kinds, slow_s=0.01, seed=3)
    retrying = Config(retries={"mode": "standard", "total_max_attempts": 10}, read_timeout=5, connect_timeout=1)

    def put_all(worker: int) -> None:
        s3 = make_client(proxy.url, "s3", retrying)
        for i in range(8):
            s3.put_object(Bucket=bucket, Key=f"w{worker}/{i}", Body=f"{worker}-{i}".encode())

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(put_all, range(6)))
    keys = {obj["Key"] for obj in direct_s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {f"w{w}/{i}" for w in range(6) for i in range(8)}
    stats = proxy.stats.snapshot()
    not_forwarded = stats["reset_before"] + stats["http500"] + stats["http503"]
    assert stats["requests"] == stats["forwarded"] + not_forwarded == 48 + stats["faults"] - stats["slow"]
    assert stats["faults"] > 0
