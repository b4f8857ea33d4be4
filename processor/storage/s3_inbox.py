"""An S3 prefix as inbox, shared by any number of workers.

A worker claims `<prefix><name>.json` by creating the lease object
`<prefix>.leases/<name>` with a conditional PUT (`If-None-Match: *`): exactly one
worker succeeds. The lease carries an expiry that the worker pushes forward while
the job runs (`extend`, an `If-Match` PUT on its own version); a lease whose
expiry has passed belongs to a dead worker and is taken over with an `If-Match`
PUT on the version that was read, so of several workers noticing at once,
one wins. A finished manifest gets the marker `<prefix>.done/<name>@<etag>` and
is not picked up again unless its content (ETag) changes.

None of these keys ends in `.json`, so a bucket notification filtered on the
inbox prefix and `.json` never fires for them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from processor.aws import S3Location
from processor.errors import LeaseLost
from processor.logs import logger
from processor.manifest import printable, safe_id
from processor.retries import CallRetry, http_status
from processor.storage.local import worker_identity
from processor.storage.s3 import delete_if_unchanged, read_manifest, storage_error

if TYPE_CHECKING:
    from processor.aws import Clients
    from processor.settings import Settings
    from processor.storage.workdir import WorkDir

LEASES = ".leases/"
DONE = ".done/"


@dataclass(frozen=True)
class Candidate:
    name: str
    key: str
    etag: str


@dataclass
class S3Lease:
    inbox: S3Inbox
    candidate: Candidate
    lease_etag: str
    delivery: int = 1
    redelivers: bool = False  # nothing delivers a scanned manifest again: the worker tries again itself
    final_attempt: bool = True
    _body: bytes | None = None

    @property
    def name(self) -> str:
        return self.candidate.name

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = self.inbox.read_manifest(self.candidate)
        return self._body

    def ack(self) -> None:
        self.inbox.mark_done(self.candidate)
        self.inbox.drop_lease(self.candidate.name, self.lease_etag)

    def release(self) -> None:
        self.inbox.drop_lease(self.candidate.name, self.lease_etag)

    def retry_later(self) -> None:
        self.release()

    def extend(self) -> None:
        self.lease_etag = self.inbox.renew(self.candidate, self.lease_etag)


@dataclass
class S3Inbox:
    client: Any
    location: S3Location
    retry: CallRetry
    lease_s: float
    poll_s: float
    identity: str = field(default_factory=worker_identity)
    _held: set[str] = field(default_factory=set)  # names of the leases this process knows it holds
    _candidates: list[Candidate] = field(default_factory=list)  # the rest of the last scan, in order
    _scanned: bool = False
    _claimed: bool = False  # something was claimed since the last scan

    @classmethod
    def open(cls, url: str, settings: Settings, clients: Clients, workdir: WorkDir) -> S3Inbox:
        return cls(clients.s3, S3Location.parse(url), clients.retry, lease_s=settings.lease_s,
                   poll_s=settings.poll_s, identity=workdir.identity)

    def claim(self, *, once: bool, stop: threading.Event) -> list[S3Lease]:
        while not stop.is_set():
            while self._candidates:
                lease = self.take(self._candidates.pop(0))
                if lease is not None:
                    self._claimed = True
                    return [lease]
            if self._scanned and not self._claimed:  # the last scan had nothing left to claim
                if once:
                    self._scanned = False
                    return []
                stop.wait(self.poll_s)
            self._candidates, self._scanned, self._claimed = self.scan(), True, False
        return []

    def scan(self) -> list[Candidate]:
        """Manifests under the prefix that are neither done nor held by a live lease (checked at claim time)."""
        manifests = {k: e for k, e in self._list(self.location.prefix, delimiter="/") if k.endswith(".json")}
        done = {k.removeprefix(self.location.key(DONE)) for k, _ in self._list(self.location.key(DONE))}
        candidates = []
        for key, etag in sorted(manifests.items()):
            name = key.removeprefix(self.location.prefix).removesuffix(".json")
            if f"{name}@{etag}" not in done:
                candidates.append(Candidate(name, key, etag))
        return candidates

    def take(self, candidate: Candidate) -> S3Lease | None:
        lease_key = self.location.key(LEASES + candidate.name)
        etag = self._put_lease(lease_key, candidate, IfNoneMatch="*")
        if etag is not None:
            return self._holding(S3Lease(self, candidate, etag))
        current = self._read_lease(lease_key)
        if current is None:
            return None  # released or finished between our two calls: the next scan decides
        record, current_etag = current
        mine = record.get("owner") == self.identity and record.get("manifest_etag") == candidate.etag
        if mine and candidate.name not in self._held:
            # Our own claim whose response was lost (the PUT landed, the retry got 412): it is ours.
            return self._holding(S3Lease(self, candidate, current_etag))
        if record.get("manifest_etag") != candidate.etag or float(record.get("expires_at", 0)) < time.time():
            etag = self._put_lease(lease_key, candidate, IfMatch=current_etag)
            if etag is not None:
                self._say_taken_over(candidate, record)
                return self._holding(S3Lease(self, candidate, etag))
        return None

    def _say_taken_over(self, candidate: Candidate, record: dict[str, Any]) -> None:
        """One line for a claim recovered from another worker: whose it was, and how long it had not been renewed."""
        owner = record.get("owner", "unknown")
        fields = {"stage": "recovered", "job": safe_id(candidate.name), "manifest": printable(candidate.key),
                  "previous_owner": owner}
        name = printable(candidate.name)
        if not record:
            logger.warning(f"took over the lease on {name}: it was unreadable", extra=fields)
        elif record.get("manifest_etag") != candidate.etag:
            logger.warning(f"took over the lease on {name} from {owner}: the manifest was replaced since that claim",
                           extra=fields)
        else:
            expires_at = float(record.get("expires_at", 0))
            renewed_at = float(record.get("renewed_at", expires_at - self.lease_s))  # leases before renewed_at
            stale_s = round(max(0.0, time.time() - renewed_at), 1)
            logger.warning(f"took over the expired lease on {name} from {owner}: not renewed for {stale_s:g} s, "
                           "its worker is gone or stalled", extra={**fields, "stale_s": stale_s})

    def _holding(self, lease: S3Lease) -> S3Lease:
        self._held.add(lease.name)
        return lease

    def renew(self, candidate: Candidate, lease_etag: str) -> str:
        etag = self._put_lease(self.location.key(LEASES + candidate.name), candidate, IfMatch=lease_etag)
        if etag is None:
            raise LeaseLost(f"lease on {candidate.name} was taken over by another worker")
        return etag

    def drop_lease(self, name: str, lease_etag: str) -> None:
        self._held.discard(name)
        key = self.location.key(LEASES + name)
        delete_if_unchanged(self.client, self.retry, self.location.bucket, key, lease_etag, "lease")

    def mark_done(self, candidate: Candidate) -> None:
        key = self.location.key(f"{DONE}{candidate.name}@{candidate.etag}")
        body = json.dumps({"finished_at": time.time(), "worker": self.identity}).encode()
        try:
            self.retry.call("s3 put done", lambda: self.client.put_object(Bucket=self.location.bucket, Key=key,
                                                                         Body=body))
        except Exception as exc:
            raise storage_error(f"marking {candidate.key} done", exc) from exc

    def read_manifest(self, candidate: Candidate) -> bytes:
        return read_manifest(self.client, self.retry, self.location.bucket, candidate.key)

    def _put_lease(self, key: str, candidate: Candidate, **condition: str) -> str | None:
        now = time.time()
        record = {"owner": self.identity, "renewed_at": now, "expires_at": now + self.lease_s,
                  "manifest_etag": candidate.etag}
        try:
            response = self.retry.call("s3 put lease", lambda: self.client.put_object(
                Bucket=self.location.bucket, Key=key, Body=json.dumps(record).encode(), **condition))
        except Exception as exc:
            if http_status(exc) in (404, 409, 412):  # someone else holds or just changed it
                return None
            raise storage_error(f"claiming {candidate.key}", exc) from exc
        return str(response["ETag"])

    def _read_lease(self, key: str) -> tuple[dict[str, Any], str] | None:
        try:
            response = self.retry.call("s3 get lease", lambda: self.client.get_object(
                Bucket=self.location.bucket, Key=key))
            record: dict[str, Any] = json.loads(response["Body"].read())
        except Exception as exc:
            if http_status(exc) == 404:
                return None
            if isinstance(exc, ValueError):
                return {}, str(response["ETag"])  # unreadable lease: treat as expired
            raise storage_error(f"reading lease {key}", exc) from exc
        return record, str(response["ETag"])

    def _list(self, prefix: str, delimiter: str = "") -> Iterator[tuple[str, str]]:
        paginator = self.client.get_paginator("list_objects_v2")
        kwargs: dict[str, Any] = {"Bucket": self.location.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        try:
            pages = self.retry.call("s3 list", lambda: list(paginator.paginate(**kwargs)))
        except Exception as exc:
            raise storage_error(f"listing {self.location.uri()}", exc) from exc
        for page in pages:
            for item in page.get("Contents", []):
                yield str(item["Key"]), str(item["ETag"]).strip('"')
