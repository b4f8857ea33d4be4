"""Inbox, outbox and queue: reachable with the configured endpoint and credentials, and set up safely.

Each probe makes the calls the worker itself makes, so that a least-privilege
policy (docs/iam-policy.json) passes: an S3 inbox scanned by the worker is listed
and gets a probe lease under `.leases/` (what it writes there); an inbox fed by a
queue is only listed (the worker only reads it); the outbox gets a probe object,
deleted afterwards where the credentials allow (the worker never deletes there).
Probes use short timeouts and two attempts, so an unreachable endpoint fails in
seconds and is named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from processor.aws import S3Location, configured_region, make_client, queue_region
from processor.checks import PROBE_NAME, Context, Verdict, failed, passed, probe_file, warned
from processor.errors import F5BatchError
from processor.failures import REGION_FIX, explain
from processor.retries import CallRetry, http_status
from processor.schemes import check_no_loop
from processor.settings import Settings
from processor.storage.s3_inbox import LEASES

PROBE_CONNECT_S = 3.0
PROBE_READ_S = 10.0
PROBE_RETRY = CallRetry(max_attempts=2, initial_s=0.2, max_s=1.0, total_s=15.0)
PROBE_BODY = b"f5-batch doctor probe: safe to delete\n"
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html
# ("we don't recommend setting maxReceiveCount to 1"): one failed receive would dead-letter a job.
MIN_RECEIVE_COUNT = 2


def probe_client(service: str, settings: Settings) -> Any:
    """The worker's client configuration (endpoint, credentials, addressing), with the probe's short timeouts."""
    return make_client(service, path_style=settings.s3_path_style, queue_url=settings.queue,
                       connect_timeout_s=PROBE_CONNECT_S, read_timeout_s=PROBE_READ_S)


def client_of(ctx: Context, service: str) -> Any:
    """The context's client for `service`, or None when building it failed (the probe then reports why)."""
    try:
        return ctx.s3 if service == "s3" else ctx.sqs
    except Exception:
        return None


def not_in_inbox(ctx: Context) -> Verdict:
    try:
        check_no_loop(ctx.settings)
    except F5BatchError as exc:
        return failed(str(exc), "give the outbox its own bucket or a prefix outside the inbox's (F5B_OUTBOX)")
    return passed(f"outbox {ctx.settings.outbox} is outside inbox {ctx.settings.inbox}")


def s3_or_folder(ctx: Context, where: str, setting: str) -> S3Location | Verdict:
    """The S3 location to probe, or the verdict on the local folder `where` names."""
    if S3Location.bucket_of(where) is None:
        return local_folder(ctx, Path(where), setting)
    return S3Location.parse(where)


def inbox(ctx: Context) -> Verdict:
    where = ctx.settings.inbox
    location = s3_or_folder(ctx, where, "F5B_INBOX (or --inbox)")
    if isinstance(location, Verdict):
        return location
    key = location.key(LEASES + PROBE_NAME)
    try:
        s3 = ctx.s3
        PROBE_RETRY.call("doctor list inbox", lambda: s3.list_objects_v2(
            Bucket=location.bucket, Prefix=location.prefix, MaxKeys=1))
        if ctx.settings.queue:
            return passed(f"listed {where} (jobs come from the queue: the worker only reads the inbox)")
        put_and_delete(s3, location.bucket, key)
    except Exception as exc:
        return probe_failed(exc, client_of(ctx, "s3"), where, f"the inbox bucket {location.bucket}")
    return passed(f"listed {where}, wrote and deleted s3://{location.bucket}/{key}")


def outbox(ctx: Context) -> Verdict:
    where = ctx.settings.outbox
    location = s3_or_folder(ctx, where, "F5B_OUTBOX (or --outbox)")
    if isinstance(location, Verdict):
        return location
    key = location.key(PROBE_NAME)
    try:
        put_and_delete(ctx.s3, location.bucket, key)
    except Exception as exc:
        if http_status(exc) in (401, 403) and "delete" in str(getattr(exc, "operation_name", "")).lower():
            return passed(f"wrote s3://{location.bucket}/{key} and left it there: no s3:DeleteObject, which the "
                          f"worker does not need")
        return probe_failed(exc, client_of(ctx, "s3"), where, f"the outbox bucket {location.bucket}")
    return passed(f"wrote and deleted s3://{location.bucket}/{key}")


def probe_failed(exc: Exception, client: Any, where: str, what: str) -> Verdict:
    explained = explain(exc, client, what)
    return failed(f"{where}: {explained.detail}", explained.fix)


def put_and_delete(s3: Any, bucket: str, key: str) -> None:
    PROBE_RETRY.call("doctor put probe", lambda: s3.put_object(Bucket=bucket, Key=key, Body=PROBE_BODY))
    PROBE_RETRY.call("doctor delete probe", lambda: s3.delete_object(Bucket=bucket, Key=key))


def local_folder(ctx: Context, folder: Path, setting: str) -> Verdict:
    try:
        probe_file(folder, ctx.identity)
    except OSError as exc:
        return failed(f"cannot write to {folder}: {exc.strerror or exc}",
                      f"make {folder} writable for this user, or set {setting} to a writable folder or s3:// URL")
    return passed(f"created and deleted a file in {folder.resolve()}")


def queue_attributes(ctx: Context) -> dict[str, str]:
    sqs, url = ctx.sqs, ctx.settings.queue
    response = PROBE_RETRY.call("doctor queue attributes", lambda: sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["RedrivePolicy", "VisibilityTimeout"]))
    attributes: dict[str, str] = response.get("Attributes", {})
    return attributes


def queue(ctx: Context) -> Verdict:
    url = ctx.settings.queue
    if not url:
        return passed("no queue configured (F5B_QUEUE): jobs come from the inbox")
    try:
        attributes = queue_attributes(ctx)
    except Exception as exc:
        return probe_failed(exc, client_of(ctx, "sqs"), url, f"the queue {url}")
    return passed(f"{url} answers (visibility timeout {attributes.get('VisibilityTimeout', '?')} s; "
                  f"the worker sets its own per receive)")


def redrive(ctx: Context) -> Verdict:
    """Without a dead-letter queue a message that kills workers comes back forever."""
    if not ctx.settings.queue:
        return passed("no queue configured: nothing to redrive")
    policy = queue_attributes(ctx).get("RedrivePolicy")
    bootstrap = f"f5-batch bootstrap --queue-name {ctx.settings.queue.rstrip('/').rpartition('/')[2]}"
    if not policy:
        return failed("the queue has no RedrivePolicy: a message that keeps failing (or crashing workers) is "
                      "delivered again and again",
                      f"{bootstrap} (adds the dead-letter queue <name>-dlq and the RedrivePolicy; keep your "
                      f"--inbox and other flags)")
    parsed = json.loads(policy)
    count = int(parsed.get("maxReceiveCount", 0))
    target = parsed.get("deadLetterTargetArn", "?")
    if count < MIN_RECEIVE_COUNT:
        return warned(f"maxReceiveCount is {count}: one interrupted delivery sends a job to {target}",
                      f"{bootstrap} --max-receive-count 5")
    return passed(f"dead letters go to {target} after {count} receives")


def uses_aws(settings: Settings) -> bool:
    return bool(settings.queue) or any(S3Location.bucket_of(where) is not None
                                       for where in (settings.inbox, settings.outbox))


def region(ctx: Context) -> Verdict:
    """Without a region an SQS client cannot even be made; a wrong one answers NonExistentQueue."""
    settings = ctx.settings
    if not uses_aws(settings):
        return passed("no S3 or SQS location configured: no region needed")
    from_queue = queue_region(settings.queue)
    if from_queue:
        return passed(f"{from_queue}, from the queue URL")
    found = configured_region()
    if found is None:
        return failed("no AWS region configured (boto3 found none, and the queue URL names none)", REGION_FIX)
    source = "AWS_REGION" if ctx.environ.get("AWS_REGION") else "AWS_DEFAULT_REGION or the AWS profile"
    return passed(f"{found}, from {source}")


def inbox_for_queue(ctx: Context) -> Verdict:
    """With a queue, the inbox says where voices (and the manifests S3 events name) are: a bucket, not a folder."""
    settings = ctx.settings
    if not settings.queue:
        return passed("no queue configured: the inbox is scanned")
    if S3Location.bucket_of(settings.inbox) is not None:
        return passed(f"jobs from the queue; voices and manifests in {settings.inbox}")
    if settings.voice_buckets:
        return passed(f"jobs from the queue; voices from the buckets {settings.voice_buckets} (F5B_VOICE_BUCKETS)")
    return failed(f"--queue is set but the inbox is the folder {settings.inbox!r}: every job whose manifest or voice "
                  f"is in S3 would fail",
                  "pass --inbox s3://BUCKET/PREFIX/ (F5B_INBOX): the bucket and prefix the queue's manifests and "
                  "voices are in")
