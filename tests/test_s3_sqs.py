"""S3 and SQS against real servers on loopback: moto (S3, SQS, notifications) and SeaweedFS (a real S3 store)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from processor.app import build_worker
from processor.aws import S3Location, make_client
from processor.errors import PermanentError, TransientError, VoiceNotFound
from processor.retries import CallRetry
from processor.settings import Settings
from processor.storage.s3 import S3Outbox, S3Voices
from processor.storage.s3_inbox import S3Inbox
from processor.storage.voice_cache import VoiceCache
from processor.storage.volume import Volume

from tests.support.aws import Endpoint, unique_name
from tests.support.inboxes import take_all
from tests.support.manifests import manifest
from tests.support.paths import REPO, VOICE
from tests.support.results import read_result, s3_results
from tests.support.workers import run_cli, worker_env

SECRET = "f5b-SENTINEL-secret-key-0123456789"  # moto does not check signatures; this must never be printed
FAST_RETRY = CallRetry(max_attempts=3, initial_s=0.05, max_s=0.2, total_s=5)


@pytest.fixture
def aws_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoint]:
    """Point this process's boto3 at one server, as a worker process would be pointed by its environment."""
    endpoint: Endpoint = request.getfixturevalue(getattr(request, "param", "moto_endpoint"))
    for name, value in endpoint.env(inherit=False).items():
        monkeypatch.setenv(name, value)
    yield endpoint


def bucket(endpoint: Endpoint, versioned: bool = False) -> str:
    name = unique_name("b")
    s3 = endpoint.client("s3")
    s3.create_bucket(Bucket=name)
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def settings(tmp: Path, volume: Volume, **fields: Any) -> Settings:
    base: dict[str, Any] = {
        "volume": volume.root, "model": "tiny", "device": "cpu", "processing_dir": tmp / "processing",
        "s3_path_style": True, "poll_s": 0.2, "aws_max_attempts": 3, "aws_retry_total_s": 10,
        "retry_initial_s": 0.05, "retry_max_s": 0.2, "receive_wait_s": 1,
    }
    return Settings(**{**base, **fields})


def put_voice(s3: Any, bucket_name: str, key: str = "voices/narrator.wav") -> str:
    s3.put_object(Bucket=bucket_name, Key=key, Body=VOICE.read_bytes())
    return key


# --- the S3 outbox ---------------------------------------------------------------------------------


@pytest.mark.parametrize("aws_env", ["moto_endpoint", "seaweed_endpoint"], indirect=True)
def test_s3_outbox_writes_once_and_uploads_large_audio_in_parts(aws_env: Endpoint) -> None:
    name = bucket(aws_env)
    outbox = S3Outbox(make_client("s3", path_style=True), S3Location(name, "out/"), FAST_RETRY,
                      multipart_threshold=5 * 2**20)
    assert outbox.put_if_absent("j/result.json", b"first")
    assert not outbox.put_if_absent("j/result.json", b"second")
    assert outbox.get("j/result.json") == b"first" and outbox.exists("j/result.json")
    assert not outbox.exists("j/none")
    big = bytes(range(256)) * (6 * 2**20 // 256)
    outbox.put("j/audio.wav", big)
    head = aws_env.client("s3").head_object(Bucket=name, Key="out/j/audio.wav")
    assert head["ContentLength"] == len(big)
    assert head["ETag"].strip('"').endswith("-2"), "a multipart upload's ETag counts its parts"
    assert outbox.uri("j/audio.wav") == f"s3://{name}/out/j/audio.wav"


# --- the S3 inbox and its leases -------------------------------------------------------------------


@pytest.mark.parametrize("aws_env", ["moto_endpoint", "seaweed_endpoint"], indirect=True)
def test_s3_inbox_leases_are_exclusive_expire_and_finish(aws_env: Endpoint) -> None:
    name = bucket(aws_env)
    s3 = aws_env.client("s3")
    for i in range(3):
        s3.put_object(Bucket=name, Key=f"in/job-{i}.json", Body=b"{}")
    s3.put_object(Bucket=name, Key="in/notes.txt", Body=b"x")
    s3.put_object(Bucket=name, Key="in/sub/deeper.json", Body=b"{}")
    client = make_client("s3", path_style=True)
    a = S3Inbox(client, S3Location(name, "in/"), FAST_RETRY, lease_s=60, poll_s=1, identity="a")
    b = S3Inbox(client, S3Location(name, "in/"), FAST_RETRY, lease_s=60, poll_s=1, identity="b")

    first = list(take_all(a))
    assert [lease.name for lease in first] == ["job-0", "job-1", "job-2"]
    assert list(take_all(b)) == [], "live leases are not taken"
    assert first[0].body == b"{}"

    first[0].ack()
    first[1].release()
    assert [lease.name for lease in take_all(b)] == ["job-1"], "released comes back, finished does not"

    short = S3Inbox(client, S3Location(name, "in/"), FAST_RETRY, lease_s=1, poll_s=1, identity="dead")
    s3.put_object(Bucket=name, Key="in/job-3.json", Body=b"{}")
    (stale,) = list(take_all(short))
    time.sleep(1.2)  # the lease's owner misses its heartbeat
    (taken,) = list(take_all(b))
    assert taken.name == "job-3", "an expired lease is taken over"
    with pytest.raises(PermanentError) as lost:
        stale.extend()
    assert lost.value.code == "lease_lost"

    s3.put_object(Bucket=name, Key="in/job-0.json", Body=b'{"changed": true}')
    assert [lease.name for lease in take_all(a)] == ["job-0"], "new content is a new job"


# --- voices from S3 --------------------------------------------------------------------------------


def test_s3_voices_allow_list_size_limit_and_cache(aws_env: Endpoint, tmp_path: Path) -> None:
    inbox_bucket, other = bucket(aws_env), bucket(aws_env)
    s3 = aws_env.client("s3")
    put_voice(s3, inbox_bucket)
    put_voice(s3, other)
    client = make_client("s3", path_style=True)
    downloads: list[str] = []
    client.meta.events.register("before-parameter-build.s3.GetObject",
                                lambda **kw: downloads.append(kw["params"]["Key"]))
    voices = S3Voices(client, inbox_bucket, frozenset({inbox_bucket}), 10 * 2**20,
                      VoiceCache(tmp_path / "cache", 2**20), FAST_RETRY)

    for n in range(3):
        job = tmp_path / f"job{n}"
        job.mkdir()
        assert voices.fetch("voices/narrator.wav", job).read_bytes() == VOICE.read_bytes()
    assert downloads == ["voices/narrator.wav"], "downloaded once, then served from the cache"
    assert voices.fetch(f"s3://{inbox_bucket}/voices/narrator.wav", tmp_path / "job0").exists()

    s3.put_object(Bucket=inbox_bucket, Key="voices/narrator.wav", Body=VOICE.read_bytes() + b"\0\0")
    voices.fetch("voices/narrator.wav", tmp_path / "job0")
    assert len(downloads) == 2, "a changed object (new ETag) is downloaded again"

    with pytest.raises(PermanentError) as denied:
        voices.fetch(f"s3://{other}/voices/narrator.wav", tmp_path)
    assert denied.value.code == "voice_not_allowed"
    with pytest.raises(VoiceNotFound):
        voices.fetch("voices/missing.wav", tmp_path)
    small = S3Voices(client, inbox_bucket, frozenset({inbox_bucket}), 1000, VoiceCache(tmp_path / "c2", 0), FAST_RETRY)
    with pytest.raises(PermanentError) as big:
        small.fetch("voices/narrator.wav", tmp_path)
    assert big.value.code == "voice_too_large"
    for bad in ("https://example.com/v.wav", "../v.wav", "/abs.wav"):
        with pytest.raises(PermanentError) as err:
            voices.fetch(bad, tmp_path)
        assert err.value.code == "voice_not_allowed"


def test_fetch_with_the_identity_gets_that_version_without_a_second_head(aws_env: Endpoint, tmp_path: Path) -> None:
    """The worker keys the prepared voice by `identity`: the clip fetched must be the one that tag names."""
    inbox_bucket = bucket(aws_env)
    s3 = aws_env.client("s3")
    put_voice(s3, inbox_bucket)
    client = make_client("s3", path_style=True)
    heads: list[str] = []
    client.meta.events.register("before-parameter-build.s3.HeadObject", lambda **kw: heads.append(kw["params"]["Key"]))
    voices = S3Voices(client, inbox_bucket, frozenset({inbox_bucket}), 10 * 2**20,
                      VoiceCache(tmp_path / "cache", 0), FAST_RETRY)

    tag = voices.identity("voices/narrator.wav")
    assert voices.fetch("voices/narrator.wav", tmp_path, tag).read_bytes() == VOICE.read_bytes()
    assert heads == ["voices/narrator.wav"], "one HEAD for the identity, none more for the download"

    s3.put_object(Bucket=inbox_bucket, Key="voices/narrator.wav", Body=VOICE.read_bytes() + b"\0\0")
    with pytest.raises(TransientError) as changed:
        voices.fetch("voices/narrator.wav", tmp_path, tag)
    assert changed.value.code == "voice_changed", "never the newer clip under the older tag"
    newer = voices.identity("voices/narrator.wav")
    assert newer != tag
    assert voices.fetch("voices/narrator.wav", tmp_path, newer).read_bytes() == VOICE.read_bytes() + b"\0\0"
    other = newer.replace("narrator", "someone")
    voices.fetch("voices/narrator.wav", tmp_path, other)  # another clip's tag is not trusted: looked up again
    assert len(heads) == 3


# --- the queue: every message shape, through the worker --------------------------------------------


def s3_event(bucket_name: str, key: str) -> dict[str, Any]:
    from urllib.parse import quote_plus

    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket_name}, "object": {"key": quote_plus(key, safe="/"), "size": 10}},
    }]}


def shape(kind: str, bucket_name: str, key: str, inline: dict[str, Any]) -> str:
    event = s3_event(bucket_name, key)
    bodies = {
        "s3-event": event,
        "sns-envelope": {"Type": "Notification", "MessageId": "x", "TopicArn": "arn:aws:sns:us-east-1:1:t",
                         "Message": json.dumps(event)},
        "eventbridge": {"version": "0", "source": "aws.s3", "detail-type": "Object Created",
                        "detail": {"version": "0", "bucket": {"name": bucket_name}, "object": {"key": key}}},
        "manifest": inline,
    }
    return json.dumps(bodies[kind])


@pytest.mark.parametrize("kind", ["s3-event", "sns-envelope", "eventbridge", "manifest"])
def test_each_message_shape_runs_its_job(kind: str, aws_env: Endpoint, tmp_path: Path, tiny_volume: Volume) -> None:
    name = bucket(aws_env)
    s3, sqs = aws_env.client("s3"), aws_env.client("sqs")
    put_voice(s3, name)
    key = f"in/{kind} job+1.json"  # a space and a plus: keys arrive URL-encoded in S3 events
    body = manifest("One message, one job.", nfe_step=2, id=f"job-{kind}")
    s3.put_object(Bucket=name, Key=key, Body=json.dumps(body).encode())
    queue = sqs.create_queue(QueueName=unique_name("q"))["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=shape(kind, name, key, body))

    worker = build_worker(settings(tmp_path, tiny_volume, queue=queue, inbox=f"s3://{name}/in/",
                                   outbox=f"s3://{name}/out/", lease_s=30))
    assert worker.run(once=True) == 1
    result = s3_results(s3, name, "out/")[f"job-{kind}"]
    assert result["status"] == "succeeded", result["error"]
    assert result["audio_uri"] == f"s3://{name}/out/job-{kind}/audio.wav"
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0, VisibilityTimeout=0)


def test_test_event_is_deleted_and_ignored(aws_env: Endpoint, tmp_path: Path, tiny_volume: Volume) -> None:
    name = bucket(aws_env)
    sqs = aws_env.client("sqs")
    queue = sqs.create_queue(QueueName=unique_name("q"))["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-28T00:00:00Z", "Bucket": name}))
    worker = build_worker(settings(tmp_path, tiny_volume, queue=queue, inbox=f"s3://{name}/in/",
                                   outbox=f"s3://{name}/out/"))
    assert worker.run(once=True) == 0
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert s3_results(aws_env.client("s3"), name) == {}


def test_malformed_event_fails_its_job_by_message_id(aws_env: Endpoint, tmp_path: Path, tiny_volume: Volume) -> None:
    name = bucket(aws_env)
    sqs = aws_env.client("sqs")
    queue = sqs.create_queue(QueueName=unique_name("q"))["QueueUrl"]
    message_id = sqs.send_message(QueueUrl=queue, MessageBody='{"Records": "not a list"}')["MessageId"]
    worker = build_worker(settings(tmp_path, tiny_volume, queue=queue, outbox=f"s3://{name}/out/"))
    assert worker.run(once=True) == 1
    result = s3_results(aws_env.client("s3"), name)[message_id]
    assert (result["status"], result["error"]["code"]) == ("failed", "invalid_message")


def test_a_malformed_record_fails_alone_and_the_others_run(moto_endpoint: Endpoint, tmp_path: Path,
                                                          tiny_volume: Volume) -> None:
    """Records are isolated, as in Powertools' partial batch failure: an S3 event of ten records, the one at
    index 6 malformed, and an SNS-wrapped one of three, two malformed. Each good record runs, each bad one
    fails alone under `<message id>.<index>`, and both messages are deleted once all their jobs have ended."""
    name = bucket(moto_endpoint)
    s3, sqs = moto_endpoint.client("s3"), moto_endpoint.client("sqs")
    put_voice(s3, name)
    for i in range(11):
        s3.put_object(Bucket=name, Key=f"in/rec-{i}.json", Body=json.dumps(manifest(f"Record {i}.", nfe_step=2)))
    records = [s3_event(name, f"in/rec-{i}.json")["Records"][0] for i in range(11)]
    records[6]["eventSource"] = "minio:s3"
    bad_key, bad_version = s3_event(name, "in/rec-0.json")["Records"][0], s3_event(name, "in/rec-1.json")["Records"][0]
    bad_key["s3"]["object"]["key"] = "in/50%off.json"  # a '%' that S3 would have sent as %25
    bad_version["eventVersion"] = "3.0"
    queue = sqs.create_queue(QueueName=unique_name("q"))["QueueUrl"]
    plain = sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"Records": records[:10]}))["MessageId"]
    envelope = {"Type": "Notification", "MessageId": "x",
                "Message": json.dumps({"Records": [records[10], bad_key, bad_version]})}
    wrapped = sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(envelope))["MessageId"]

    out = run_cli("run", "--queue", queue, "--inbox", f"s3://{name}/in/", "--outbox", f"s3://{name}/out/", "--once",
                  env=worker_env(moto_endpoint.url, moto_endpoint, tiny_volume, tmp_path))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    found = s3_results(s3, name, "out/")
    good = {f"rec-{i}" for i in range(11) if i != 6}
    assert {job for job, result in found.items() if result["status"] == "succeeded"} == good
    bad = {f"{plain}.6": "Records[6].eventSource is 'minio:s3'", f"{wrapped}.1": "not valid URL encoding",
           f"{wrapped}.2": "Records[2].eventVersion is '3.0'"}
    assert set(found) == good | set(bad), "one result per record, none for a message as a whole"
    for job, fragment in bad.items():
        assert (found[job]["status"], found[job]["error"]["code"]) == ("failed", "invalid_message")
        assert fragment in found[job]["error"]["message"]
        assert found[job]["manifest"] == job
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_transient_failures_are_redelivered_then_failed_on_the_last_receive(
    aws_env: Endpoint, tmp_path: Path, tiny_volume: Volume, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The voice's S3 endpoint refuses connections: each receive fails transiently; the queue's
    maxReceiveCount (2) is the last attempt, on which the worker writes a failed result."""
    sqs = aws_env.client("sqs")
    dlq = sqs.create_queue(QueueName=unique_name("dlq"))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName=unique_name("q"), Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})})["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(
        manifest("Never spoken.", id="unreachable", voice="s3://voices-bucket/v.wav")))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # discard port: connection refused
    worker = build_worker(settings(tmp_path, tiny_volume, queue=queue, outbox=str(tmp_path / "out"),
                                   voice_buckets="voices-bucket", redelivery_base_s=0, max_attempts=1,
                                   aws_max_attempts=2))
    assert worker.run(once=True) == 2, "delivered twice: once retried, once final"
    result = read_result(tmp_path / "out", "unreachable")
    assert (result["status"], result["error"]["code"]) == ("failed", "storage_unavailable")
    log = (tmp_path / "out" / "unreachable" / "log.jsonl").read_text()
    assert "voices-bucket" in log
    for url in (queue, dlq):
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


# --- end to end, with the AWS CLI as the producer --------------------------------------------------


def aws_cli(endpoint: Endpoint, *args: str) -> str:
    aws = shutil.which("aws", path=str(Path(sys.executable).parent)) or "aws"
    # awscli v1 sends `sqs` to its legacy queue host whatever AWS_ENDPOINT_URL says (tests/test_servers.py).
    endpoint_flag = ["--endpoint-url", endpoint.url] if args[0] == "sqs" else []
    out = subprocess.run([aws, *args, *endpoint_flag], env=endpoint.env(), capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def f5_batch(endpoint: Endpoint, *args: str, timeout: float = 300,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**endpoint.env(), "AWS_SECRET_ACCESS_KEY": SECRET, **(env or {})}
    return subprocess.run([sys.executable, "-m", "processor", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_bootstrap_creates_buckets_outside_us_east_1(moto_endpoint: Endpoint) -> None:
    region = {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1"}
    name = unique_name("eu-inbox")
    boot = f5_batch(moto_endpoint, "bootstrap", "--queue-name", unique_name("eu-jobs"), "--inbox", f"s3://{name}/in/",
                    "--create-buckets", "--s3-path-style", env=region)
    assert boot.returncode == 0, boot.stderr
    location = moto_endpoint.client("s3").get_bucket_location(Bucket=name)["LocationConstraint"]
    assert location == "eu-west-1"


def test_aws_cli_producer_through_notification_and_queue(moto_endpoint: Endpoint, tmp_path: Path,
                                                         tiny_volume: Volume) -> None:
    name, out_bucket = unique_name("inbox"), unique_name("outbox")
    boot = f5_batch(moto_endpoint, "bootstrap", "--queue-name", unique_name("jobs"), "--inbox", f"s3://{name}/in/",
                    "--outbox", f"s3://{out_bucket}/", "--create-buckets", "--max-receive-count", "3",
                    "--s3-path-style")
    assert boot.returncode == 0, boot.stderr
    made = dict(line.split("=", 1) for line in boot.stdout.split())
    again = f5_batch(moto_endpoint, "bootstrap", "--queue-name", made["queue_url"].rsplit("/", 1)[1],
                     "--inbox", f"s3://{name}/in/", "--s3-path-style")
    assert again.returncode == 0 and made["queue_url"] in again.stdout, "bootstrap is idempotent"

    aws_cli(moto_endpoint, "s3", "cp", str(VOICE), f"s3://{name}/voices/narrator.wav")
    for i in range(3):
        path = tmp_path / f"chapter {i}.json"
        path.write_text(json.dumps(manifest(f"Chapter {i}.", nfe_step=2, id=f"chapter-{i}")))
        aws_cli(moto_endpoint, "s3", "cp", str(path), f"s3://{name}/in/chapter {i}.json")
    sent = aws_cli(moto_endpoint, "sqs", "send-message", "--queue-url", made["queue_url"], "--message-body",
                   json.dumps(manifest("Sent straight to the queue.", id="direct", nfe_step=2)))

    run = f5_batch(moto_endpoint, "run", "--queue", made["queue_url"], "--inbox", f"s3://{name}/in/",
                   "--outbox", f"s3://{out_bucket}/", "--volume", str(tiny_volume.root), "--model", "tiny",
                   "--processing-dir", str(tmp_path / "processing"), "--s3-path-style", "--once",
                   env={"F5B_RECEIVE_WAIT_S": "1"})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    found = s3_results(moto_endpoint.client("s3"), out_bucket)
    assert set(found) == {"chapter-0", "chapter-1", "chapter-2", "direct"}
    assert all(r["status"] == "succeeded" for r in found.values())
    listing = aws_cli(moto_endpoint, "s3", "ls", "--recursive", f"s3://{out_bucket}/")
    assert listing.count("result.json") == 4 and listing.count("audio.wav") == 4
    assert SECRET not in run.stdout + run.stderr
    assert all(SECRET not in json.dumps(r) for r in found.values())
    one_id_per_job(run.stdout, json.loads(sent)["MessageId"], moto_endpoint.client("s3"), out_bucket)


def one_id_per_job(stdout: str, direct_message: str, s3: Any, outbox: str) -> None:
    """From claim to result, each job's lines carry one id, the manifest's (not the message's, nor the name of
    `chapter 0.json`), and one message id; its log.jsonl holds the same lines."""
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    by_message: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if "job" in event and event.get("stage") != "exit":
            by_message.setdefault(event["message_id"], []).append(event)
    jobs = {message: {e["job"] for e in lines} for message, lines in by_message.items()}
    assert sorted(map(sorted, jobs.values())) == [["chapter-0"], ["chapter-1"], ["chapter-2"], ["direct"]], jobs
    assert jobs[direct_message] == {"direct"}
    for lines in by_message.values():
        stages = [e["stage"] for e in lines]
        assert stages[0] == "claimed" and stages[-1] == "finished", stages
    stored = s3.get_object(Bucket=outbox, Key="direct/log.jsonl")["Body"].read().decode().splitlines()
    assert {(e["job"], e["message_id"]) for e in map(json.loads, stored)} == {("direct", direct_message)}


def test_submit_uploads_manifest_and_voice_or_sends_to_the_queue(moto_endpoint: Endpoint) -> None:
    from tests.support.paths import EXAMPLES

    name = bucket(moto_endpoint)
    out = f5_batch(moto_endpoint, "submit", str(EXAMPLES / "hello.json"), "--inbox", f"s3://{name}/inbox/",
                   "--s3-path-style")
    assert out.returncode == 0, out.stderr
    s3 = moto_endpoint.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]}
    assert keys == {"inbox/hello.json", "voices/narrator.wav"}, "the voice goes to its key in the inbox bucket"

    sqs = moto_endpoint.client("sqs")
    queue = sqs.create_queue(QueueName=unique_name("q"))["QueueUrl"]
    refused = f5_batch(moto_endpoint, "submit", str(EXAMPLES / "hello.json"), "--queue", queue)
    assert refused.returncode == 1 and "voice_not_uploaded" in refused.stderr, "nothing would upload its voice"
    sent = f5_batch(moto_endpoint, "submit", str(EXAMPLES / "chapter-flac.json"), "--queue", queue,
                    "--inbox", f"s3://{name}/inbox/", "--s3-path-style")
    assert sent.returncode == 0, sent.stderr
    (message,) = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    assert json.loads(message["Body"])["id"] == "chapter-1"


def test_outbox_inside_the_inbox_prefix_is_refused(moto_endpoint: Endpoint, tiny_volume: Volume) -> None:
    out = f5_batch(moto_endpoint, "run", "--once", "--inbox", "s3://same/jobs/", "--outbox", "s3://same/jobs/out/",
                   "--volume", str(tiny_volume.root), "--model", "tiny")
    assert (out.returncode, out.stdout) == (2, "") and "overlaps inbox" in out.stderr, "refused before the model loads"
