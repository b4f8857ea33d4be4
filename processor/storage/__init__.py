"""Where jobs come from and where their outputs go.

Three small interfaces; local-folder versions live in `local.py`, cloud ones
beside them. The worker sees only these.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable


class Lease(Protocol):
    """One claimed manifest. Exactly one of `ack`, `retry_later` or `release` ends it."""

    @property
    def name(self) -> str:
        """The manifest's name without `.json`: the default job id."""

    @property
    def body(self) -> bytes:
        """The manifest's bytes; reading may raise a PermanentError (gone, malformed message)."""

    @property
    def delivery(self) -> int:
        """Which delivery of the manifest this is, from 1 (SQS's receive count; 1 for a folder or S3 inbox)."""

    @property
    def redelivers(self) -> bool:
        """The source itself delivers the manifest again after `retry_later` (a queue). False: the worker
        tries a transiently failed job again itself."""

    @property
    def final_attempt(self) -> bool:
        """No redelivery will follow: a transient failure now must end the job as failed."""

    def ack(self) -> None:
        """The job is finished (succeeded or failed for good): never deliver it again."""

    def release(self) -> None:
        """Give the manifest back at once so that a worker takes it again."""

    def retry_later(self) -> None:
        """A transient failure: deliver the manifest again after a backoff."""

    def extend(self) -> None:
        """Keep the claim alive while a long job runs."""


@runtime_checkable
class Rewritable(Protocol):
    """A lease whose manifest is a file another program may still be writing after the claim (a folder inbox)."""

    def changed_since_read(self) -> bool:
        """The manifest's file is no longer what `body` read."""


class Inbox(Protocol):
    def claim(self, *, once: bool, stop: threading.Event) -> Sequence[Lease]:
        """Claim what is ready: one manifest, or all the jobs of the messages one receive returned.

        Waits while nothing is ready, unless `once`; returns [] when nothing is (`once`) or on `stop`.
        Every lease returned belongs to the caller from then on: the source keeps none to give back.
        """


class Outbox(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Write atomically: a reader sees the old object, or the whole new one."""

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write unless `key` exists; False when it did. The basis of write-once results."""

    def exists(self, key: str) -> bool: ...

    def get(self, key: str) -> bytes: ...

    def uri(self, key: str) -> str:
        """Where a consumer finds `key` (a path or an s3:// URI)."""


class VoiceSource(Protocol):
    def transcript(self, ref: str) -> str | None:
        """The sidecar transcript next to the clip `ref` (`voices/a.wav` → `voices/a.txt`); None when there is none."""

    def identity(self, ref: str) -> str:
        """A cheap tag that changes whenever the clip `ref` does (S3 ETag, file size and mtime)."""

    def fetch(self, ref: str, dest_dir: Path, identity: str | None = None) -> Path:
        """Copy the voice clip `ref` into `dest_dir`; raise VoiceNotFound if there is none.

        `identity`, as returned by `identity(ref)`, pins the version: what is copied is the clip
        that tag names (a source that cannot serve it raises a TransientError), never a newer one.
        """
