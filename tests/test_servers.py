"""The local AWS servers work, and the S3/SQS behaviour the product relies on holds on them.

Each test here records one behaviour (or one server quirk) with an exact assertion, so an upgrade of moto,
SeaweedFS or awscli that changes it fails here, in a test that names it, rather than somewhere in the worker.
S3 behaviour is checked on both servers (`s3_backend`); SQS and notifications exist only in moto.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from tests.support.aws import Endpoint, free_ports, moto_post, unique_name

MIB = 1024 * 1024
AWS_CLI = Path(sys.executable).parent / "aws"


# --------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def s3(s3_backend: Endpoint) -> Iterator[Any]:
    """An S3 client for the server under test, closed afterwards so connections do not pile up over the session."""
    client = s3_backend.client("s3")
    yield client
    client.close()


@pytest.fixture
def moto_s3(moto_endpoint: Endpoint) -> Iterator[Any]:
    client = moto_endpoint.client("s3")
    yield client
    client.close()


@pytest.fixture
def sqs(moto_endpoint: Endpoint) -> Iterator[Any]:
    client = moto_endpoint.client("sqs")
    yield client
    client.close()


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh bucket: tests never share state, so they need no reset and can run in any order."""
    name = unique_name("bkt")
    s3.create_bucket(Bucket=name)
    return name


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    """(HTTP status, error code) of a failed call: what a caller has to branch on."""
    response = exc.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def quoted_md5(data: bytes) -> str:
    """The ETag S3 gives a single-part upload: the MD5 hex, in double quotes."""
    return f'"{hashlib.md5(data).hexdigest()}"'


def queue_arn(sqs: Any, url: str) -> str:
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def receive(sqs: Any, url: str, wait_s: int = 0, **kwargs: Any) -> list[dict[str, Any]]:
    """One ReceiveMessage call, with the receive count attribute the DLQ logic is about."""
    response = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s, AttributeNames=["All"], **kwargs
    )
    return list(response.get("Messages", []))


def receive_n(sqs: Any, url: str, count: int, deadline_s: float = 10.0) -> list[dict[str, Any]]:
    """Long-poll until `count` messages arrived (delivery is asynchronous in general) or the deadline passes."""
    messages: list[dict[str, Any]] = []
    end = time.monotonic() + deadline_s
    while len(messages) < count and time.monotonic() < end:
        messages += receive(sqs, url, wait_s=1)
    return messages


def run_cli(endpoint: Endpoint, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The AWS CLI as a real separate client, configured through the environment only."""
    assert AWS_CLI.is_file(), f"awscli is a dev dependency but {AWS_CLI} is missing"
    return subprocess.run(
        [sys.executable, str(AWS_CLI), *args], env=endpoint.env(), cwd=cwd, capture_output=True, text=True, timeout=60
    )


# --------------------------------------------------------------------------------------------- fixtures


def test_unique_name_is_a_valid_bucket_and_queue_name() -> None:
    names = {unique_name("My_Test.Bucket!!"), unique_name("My_Test.Bucket!!"), unique_name("")}
    assert len(names) == 3
    for name in names:
        assert 3 <= len(name) <= 63
        assert name == name.lower()
        assert name[0].isalnum() and name[-1].isalnum()
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


def test_free_ports_are_distinct() -> None:
    ports = free_ports(12)
    assert len(set(ports)) == 12


def test_env_isolates_a_child_from_the_developers_aws_setup(
    moto_endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "prod")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://s3.amazonaws.com")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "secret")
    env = moto_endpoint.env()
    assert not {"AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"} & env.keys()
    assert env["AWS_ENDPOINT_URL"] == moto_endpoint.url
    assert env["AWS_CONFIG_FILE"] == env["AWS_SHARED_CREDENTIALS_FILE"] == "/dev/null"
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    assert env["PATH"]  # the rest of the environment is inherited
    ours = {k for k in env if k.startswith("AWS_")} | {"NO_PROXY", "no_proxy"}
    assert moto_endpoint.env(inherit=False).keys() == ours


def test_moto_reset_clears_all_state(moto_endpoint: Endpoint, moto_s3: Any) -> None:
    moto_s3.create_bucket(Bucket=unique_name("reset"))
    moto_post(moto_endpoint, "reset")
    assert moto_s3.list_buckets()["Buckets"] == []


def test_moto_reset_fixture_starts_empty(moto_reset: Endpoint) -> None:
    client = moto_reset.client("sqs")
    assert client.list_queues().get("QueueUrls", []) == []
    client.close()


def test_a_child_process_needs_nothing_but_env(s3_backend: Endpoint, s3: Any, bucket: str, tmp_path: Path) -> None:
    """The product runs as a child with default boto3 clients: env() alone must point it at the server.

    No addressing-style setting is needed: botocore uses path style by itself for an IP-address endpoint.
    """
    script = (
        "import boto3, sys\n"
        "s3 = boto3.client('s3')\n"
        "s3.put_object(Bucket=sys.argv[1], Key='from/child.txt', Body=b'child')\n"
        "print(s3.meta.endpoint_url)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, bucket], env=s3_backend.env(), cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == s3_backend.url
    assert s3.get_object(Bucket=bucket, Key="from/child.txt")["Body"].read() == b"child"


# --------------------------------------------------------------------------------------------- S3, both servers


def test_put_get_and_list_with_prefix_and_delimiter(s3: Any, bucket: str) -> None:
    for key in ("inbox/a.json", "inbox/b.json", "inbox/sub/c.json", "outbox/d.wav", "top.txt"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    assert s3.get_object(Bucket=bucket, Key="inbox/sub/c.json")["Body"].read() == b"inbox/sub/c.json"

    page = s3.list_objects_v2(Bucket=bucket, Prefix="inbox/", Delimiter="/")
    assert [o["Key"] for o in page["Contents"]] == ["inbox/a.json", "inbox/b.json"]
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["inbox/sub/"]
    assert page["KeyCount"] == 3  # keys plus common prefixes

    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["top.txt"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["inbox/", "outbox/"]


def test_put_into_a_missing_bucket_is_no_such_bucket(s3: Any) -> None:
    """As on AWS. SeaweedFS would auto-create the bucket; the fixture turns that off (-s3.autoCreateBucket=false)."""
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=unique_name("missing"), Key="k", Body=b"x")
    assert error_of(exc) == (404, "NoSuchBucket")


def test_if_none_match_star_creates_once_then_412(s3: Any, bucket: str) -> None:
    """The basis for claims and exactly-once-looking outputs: the second writer of a key loses with 412."""
    first = s3.put_object(Bucket=bucket, Key="claim", Body=b"first", IfNoneMatch="*")
    assert first["ETag"] == quoted_md5(b"first")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="claim", Body=b"second", IfNoneMatch="*")
    assert error_of(exc) == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="claim")["Body"].read() == b"first"


def test_if_match_overwrites_only_the_version_read(s3: Any, bucket: str) -> None:
    """Compare-and-swap: If-Match with the current ETag succeeds; a stale or wrong ETag gets 412. Both servers."""
    old = s3.put_object(Bucket=bucket, Key="state.json", Body=b"v1")["ETag"]
    new = s3.put_object(Bucket=bucket, Key="state.json", Body=b"v2", IfMatch=old)["ETag"]
    assert new == quoted_md5(b"v2")
    for stale in (old, '"0123456789abcdef0123456789abcdef"'):
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=bucket, Key="state.json", Body=b"v3", IfMatch=stale)
        assert error_of(exc) == (412, "PreconditionFailed")
    head = s3.head_object(Bucket=bucket, Key="state.json")
    assert head["ETag"] == new
    assert s3.get_object(Bucket=bucket, Key="state.json")["Body"].read() == b"v2"


#: If-Match on a key that does not exist: AWS (and moto) answer 404 NoSuchKey, SeaweedFS answers 412.
IF_MATCH_MISSING_KEY = {"moto": (404, "NoSuchKey"), "seaweedfs": (412, "PreconditionFailed")}


def test_if_match_on_a_missing_key_differs_between_servers(s3_backend: Endpoint, s3: Any, bucket: str) -> None:
    """Quirk: code must treat both 404 and 412 as 'someone else changed it' for an If-Match PUT."""
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="never-written", Body=b"x", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert error_of(exc) == IF_MATCH_MISSING_KEY[s3_backend.name]


def test_multipart_upload_of_12_mib(s3: Any, bucket: str) -> None:
    data = hashlib.sha256(b"seed").digest() * (12 * MIB // 32)
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=4)
    s3.upload_fileobj(io.BytesIO(data), bucket, "big/audio.bin", Config=config)

    head = s3.head_object(Bucket=bucket, Key="big/audio.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3")  # 5 + 5 + 2 MiB: a multipart ETag names its part count
    body = s3.get_object(Bucket=bucket, Key="big/audio.bin")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


# --------------------------------------------------------------------------------------------- SQS, moto only


def test_redrive_to_the_dead_letter_queue_after_max_receive_count(sqs: Any) -> None:
    dlq = sqs.create_queue(QueueName=unique_name("dlq"))["QueueUrl"]
    policy = {"deadLetterTargetArn": queue_arn(sqs, dlq), "maxReceiveCount": "2"}
    jobs = sqs.create_queue(QueueName=unique_name("jobs"), Attributes={"RedrivePolicy": json.dumps(policy)})["QueueUrl"]
    sqs.send_message(QueueUrl=jobs, MessageBody="poison")

    for expected_count in ("1", "2"):
        (message,) = receive(sqs, jobs)
        assert message["Attributes"]["ApproximateReceiveCount"] == expected_count
        sqs.change_message_visibility(QueueUrl=jobs, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)

    assert receive(sqs, jobs) == []  # the third receive moves it instead of delivering it
    (dead,) = receive(sqs, dlq, wait_s=1)
    assert dead["Body"] == "poison"
    assert dead["Attributes"]["ApproximateReceiveCount"] == "3"  # moto: the count goes on from the source queue


def test_long_polling_waits_and_wakes_on_send(moto_endpoint: Endpoint, sqs: Any) -> None:
    url = sqs.create_queue(QueueName=unique_name("poll"))["QueueUrl"]
    start = time.monotonic()
    assert receive(sqs, url, wait_s=1) == []
    assert time.monotonic() - start >= 0.9  # an empty long poll really waits

    sender = moto_endpoint.client("sqs")
    timer = threading.Timer(0.5, lambda: sender.send_message(QueueUrl=url, MessageBody="late"))
    start = time.monotonic()
    timer.start()
    try:
        messages = receive(sqs, url, wait_s=10)
    finally:
        timer.join()
        sender.close()
    assert [m["Body"] for m in messages] == ["late"]
    assert time.monotonic() - start < 5  # returned on arrival, not at the end of the wait


def test_change_message_visibility_extends_and_releases(sqs: Any) -> None:
    """The heartbeat: extending keeps a running job hidden past its timeout; 0 hands it back at once."""
    url = sqs.create_queue(QueueName=unique_name("vis"))["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="job")
    (message,) = receive(sqs, url, VisibilityTimeout=1)
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=3)
    time.sleep(1.3)
    assert receive(sqs, url) == []  # without the extension it would be visible again by now

    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    (again,) = receive(sqs, url)
    assert again["Body"] == "job"
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"


def test_bucket_notifications_reach_sqs_with_an_encoded_key(moto_s3: Any, sqs: Any) -> None:
    bucket = unique_name("notify")
    moto_s3.create_bucket(Bucket=bucket)
    url = sqs.create_queue(QueueName=unique_name("events"))["QueueUrl"]
    rules = [{"Name": "prefix", "Value": "inbox/"}, {"Name": "suffix", "Value": ".json"}]
    target = {
        "QueueArn": queue_arn(sqs, url),
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": rules}},
    }
    moto_s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [target]}
    )
    for key in ("inbox/a b.txt", "outbox/a b.json", "inbox/a b.json"):  # only the last matches the filter
        moto_s3.put_object(Bucket=bucket, Key=key, Body=b"{}")

    test_event, created = (json.loads(m["Body"]) for m in receive_n(sqs, url, 2))
    assert test_event["Event"] == "s3:TestEvent" and test_event["Bucket"] == bucket and "Records" not in test_event
    (record,) = created["Records"]
    assert record["eventVersion"] == "2.1" and record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["bucket"]["name"] == bucket
    key = record["s3"]["object"]["key"]
    assert key == "inbox%2Fa+b.json"  # moto: quote_plus of the whole key, slash included (AWS: "inbox/a+b.json")
    assert unquote_plus(key) == "inbox/a b.json"  # one decoding that is right for both
    assert "sequencer" not in record["s3"]["object"]  # moto sends none: order by eventTime if at all
    assert receive(sqs, url, wait_s=1) == []  # the filtered-out keys sent nothing


# --------------------------------------------------------------------------------------------- AWS CLI, moto


def test_aws_cli_s3_cp_uses_the_endpoint_from_env(moto_endpoint: Endpoint, moto_s3: Any, tmp_path: Path) -> None:
    bucket = unique_name("cli")
    moto_s3.create_bucket(Bucket=bucket)
    (tmp_path / "x.json").write_text('{"text": "hi"}')
    out = run_cli(moto_endpoint, "s3", "cp", "x.json", f"s3://{bucket}/inbox/x.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert moto_s3.get_object(Bucket=bucket, Key="inbox/x.json")["Body"].read() == b'{"text": "hi"}'


def test_aws_cli_sqs_send_message_with_endpoint_url_flag(moto_endpoint: Endpoint, sqs: Any, tmp_path: Path) -> None:
    """awscli v1 needs --endpoint-url for SQS even with AWS_ENDPOINT_URL set (see the next test for why)."""
    url = sqs.create_queue(QueueName=unique_name("cli"))["QueueUrl"]
    args = ("sqs", "send-message", "--endpoint-url", moto_endpoint.url, "--queue-url", url, "--message-body", "hello")
    out = run_cli(moto_endpoint, *args, "--output", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (message,) = receive_n(sqs, url, 1)
    assert message["Body"] == "hello"
    assert message["MessageId"] == json.loads(out.stdout)["MessageId"]


def test_aws_cli_v1_overrides_aws_endpoint_url_for_sqs() -> None:
    """Quirk of awscli v1 (1.46): a customization sets the SQS endpoint to the region's legacy host whenever
    --endpoint-url is absent, which beats AWS_ENDPOINT_URL (S3 honours the variable). Recorded from its table
    rather than by a live call, which would go to the real AWS."""
    from awscli.customizations.overridesslcommonname import SSL_COMMON_NAMES

    assert SSL_COMMON_NAMES["sqs"]["us-east-1"] == "queue.amazonaws.com"
    assert "s3" not in SSL_COMMON_NAMES
