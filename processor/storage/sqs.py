"""An SQS queue as inbox: long polling, visibility heartbeats, redelivery with backoff.

A message stays invisible while its job runs: `extend` (called by the worker's
heartbeat) pushes its visibility forward, within the 12-hour cap counted from
its first receipt. Success or a permanent failure deletes it. A transient
failure makes it visible again after a backoff that grows with the receive count,
until the queue's redrive policy moves it to the dead-letter queue; on the last
receive the worker gives up and writes a `failed` result instead.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from processor.aws import MAX_RECEIVE_BATCH, MAX_VISIBILITY_TIMEOUT_S, MAX_WAIT_TIME_S, S3Location
from processor.errors import ManifestNotAllowed
from processor.logs import logger
from processor.messages import InlineManifest, InvalidMessage, InvalidRecord, Job, ObjectRef, parse_message
from processor.retries import CallRetry, error_code
from processor.storage.s3 import read_manifest, storage_error

if TYPE_CHECKING:
    from processor.aws import Clients
    from processor.settings import Settings
    from processor.storage.workdir import WorkDir

MAX_BACKOFF_S = 900


@dataclass
class Message:
    """One received message and the jobs it carries; deleted when every job is acked."""

    inbox: SqsInbox
    message_id: str
    receipt: str
    receive_count: int
    received_at: float
    pending: int = 0
    retry_delay_s: float | None = None
    # Jobs of one message end on different threads (intake, output, shutdown).
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def settle(self, retry_delay_s: float | None = None) -> None:
        with self._lock:
            if retry_delay_s is not None:
                self.retry_delay_s = max(self.retry_delay_s or 0, retry_delay_s)
            self.pending -= 1
            if self.pending > 0:
                return
        if self.retry_delay_s is None:
            self.inbox.delete(self)
        else:
            self.inbox.set_visibility(self, int(self.retry_delay_s))


@dataclass
class SqsLease:
    message: Message
    job: Job | InvalidMessage
    _body: bytes | None = None

    @property
    def name(self) -> str:
        """What the job's result is named by before its manifest is read: the key's name, or the message id
        (with the record's index for a malformed record, so two bad records of one message never share one)."""
        if isinstance(self.job, ObjectRef):
            return PurePosixPath(self.job.key).name.removesuffix(".json")
        if isinstance(self.job, InvalidRecord):
            return f"{self.message.message_id}.{self.job.index}"
        return self.message.message_id

    @property
    def message_id(self) -> str:
        """The message's id: every line of the job's log carries it (`message_id`), whatever the job's id."""
        return self.message.message_id

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = self.message.inbox.read_body(self.job)
        return self._body

    @property
    def delivery(self) -> int:
        return self.message.receive_count

    @property
    def redelivers(self) -> bool:
        return True

    @property
    def final_attempt(self) -> bool:
        return self.message.receive_count >= self.message.inbox.max_receives

    def ack(self) -> None:
        self.message.settle()

    def retry_later(self) -> None:
        count = self.message.receive_count
        delay = min(MAX_BACKOFF_S, self.message.inbox.retry_base_s * 2 ** (count - 1))
        self.message.settle(retry_delay_s=delay * random.uniform(0.5, 1.0))

    def release(self) -> None:
        self.message.settle(retry_delay_s=0)

    def extend(self) -> None:
        self.message.inbox.extend(self.message)


@dataclass
class SqsInbox:
    client: Any
    s3: Any
    queue_url: str
    retry: CallRetry
    lease_s: int
    wait_s: int
    batch: int
    retry_base_s: float
    max_receives: int  # used when the queue has no redrive policy; its maxReceiveCount wins
    manifest_buckets: frozenset[str] | None = None

    @classmethod
    def open(cls, inbox_url: str, settings: Settings, clients: Clients, workdir: WorkDir) -> SqsInbox:
        """The queue of F5B_QUEUE; manifests named by its events must be in the inbox's bucket, if it has one."""
        assert settings.queue is not None
        bucket = S3Location.bucket_of(inbox_url)
        buckets = frozenset({bucket}) if bucket else None
        return cls(clients.sqs, clients.s3, settings.queue, clients.retry, lease_s=settings.lease_s,
                   wait_s=settings.receive_wait_s, batch=settings.receive_batch,
                   retry_base_s=settings.redelivery_base_s, max_receives=settings.max_receives,
                   manifest_buckets=buckets)

    def __post_init__(self) -> None:
        self.wait_s = max(0, min(self.wait_s, MAX_WAIT_TIME_S))
        self.batch = max(1, min(self.batch, MAX_RECEIVE_BATCH))
        redrive = self.redrive_policy()
        if redrive:
            self.max_receives = int(redrive["maxReceiveCount"])

    def redrive_policy(self) -> dict[str, Any] | None:
        try:
            attrs = self.retry.call("sqs attributes", lambda: self.client.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"]))
        except Exception as exc:
            raise storage_error(f"reading queue {self.queue_url}", exc) from exc
        policy = attrs.get("Attributes", {}).get("RedrivePolicy")
        return json.loads(policy) if policy else None

    def claim(self, *, once: bool, stop: threading.Event) -> list[SqsLease]:
        while not stop.is_set():
            messages = self.receive()
            leases = [lease for raw in messages for lease in self._leases_of(raw)]
            if leases or (once and not messages):
                return leases
        return []

    def receive(self) -> list[dict[str, Any]]:
        try:
            response = self.retry.call("sqs receive", lambda: self.client.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch, WaitTimeSeconds=self.wait_s,
                VisibilityTimeout=self.lease_s, MessageSystemAttributeNames=["ApproximateReceiveCount"]))
        except Exception as exc:
            logger.warning(f"receiving from the queue failed: {exc.__class__.__name__}", extra={"stage": "receive"})
            time.sleep(1)
            return []
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def _message(self, raw: dict[str, Any]) -> Message:
        return Message(self, raw["MessageId"], raw["ReceiptHandle"],
                       int(raw.get("Attributes", {}).get("ApproximateReceiveCount", 1)), time.time())

    def _leases_of(self, raw: dict[str, Any]) -> list[SqsLease]:
        message = self._message(raw)
        jobs: list[Job | InvalidMessage]
        try:
            jobs = list(parse_message(raw.get("Body", "")))
        except InvalidMessage as exc:
            jobs = [exc]  # reported as a failed job under the message id, then deleted
        if not jobs:
            logger.info("message carries no job (test event or other event type); deleted",
                        extra={"stage": "receive", "message_id": message.message_id})
            self.delete(message)
        message.pending = len(jobs)
        return [SqsLease(message, job) for job in jobs]

    def depth(self) -> int:
        """Messages waiting to be received (approximate, as SQS reports it): what scales the pods."""
        attrs = self.client.get_queue_attributes(QueueUrl=self.queue_url,
                                                 AttributeNames=["ApproximateNumberOfMessages"])
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"])

    def read_body(self, job: Job | InvalidMessage) -> bytes:
        if isinstance(job, InvalidMessage):
            raise job
        if isinstance(job, InvalidRecord):
            raise job.error()
        if isinstance(job, InlineManifest):
            return job.body
        if self.manifest_buckets is not None and job.bucket not in self.manifest_buckets:
            raise ManifestNotAllowed(f"manifest s3://{job.bucket}/{job.key} is not in an inbox bucket")
        return read_manifest(self.s3, self.retry, job.bucket, job.key)

    def extend(self, message: Message) -> None:
        # The 12-hour cap counts from the first receipt; never ask for more than is left.
        left = MAX_VISIBILITY_TIMEOUT_S - (time.time() - message.received_at) - 60
        self.set_visibility(message, int(max(0, min(self.lease_s, left))))

    def set_visibility(self, message: Message, seconds: int) -> None:
        try:
            self.retry.call("sqs change visibility", lambda: self.client.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=message.receipt, VisibilityTimeout=seconds))
        except Exception as exc:
            raise storage_error(f"changing visibility of message {message.message_id}", exc) from exc

    def delete(self, message: Message) -> None:
        try:
            self.retry.call("sqs delete", lambda: self.client.delete_message(
                QueueUrl=self.queue_url, ReceiptHandle=message.receipt))
        except Exception as exc:
            if error_code(exc) == "ReceiptHandleIsInvalid":  # deleted by an earlier try whose answer was lost
                return
            raise storage_error(f"deleting message {message.message_id}", exc) from exc
