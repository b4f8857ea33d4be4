"""In-progress markers: exactly-once work, not just exactly-once results.

A job's result is written once (a conditional write), but two deliveries of the
same job (an S3 event sent twice, two manifests with one id) would still both
synthesize it: a GPU hour billed twice. Before synthesis a worker therefore takes
the job's marker, `<outbox>/<job id>/.in-progress`, with a conditional create; it
carries an expiry that the lease's heartbeat pushes forward, and is removed once
the job's lease has ended (after `result.json`). A second delivery that finds a
live marker defers; one that finds an expired marker (its worker died) takes it
over with a compare-and-swap on the version it read, so of several workers
noticing at once, one wins. This is Powertools' idempotency record (INPROGRESS
with an expiry, then COMPLETED: here the result itself) over the outbox.

The flow lives once in `Markers`; a backend gives four primitives on one key:
create unless present, read with a version, replace if still at a version, and
delete if still at a version. S3's versions are ETags (`If-None-Match`, `If-Match`);
a folder's are the bytes' digest, swapped by an atomic rename aside.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from processor.logs import logger
from processor.retries import CallRetry, http_status
from processor.storage.local import LocalOutbox, pid_alive
from processor.storage.s3 import delete_if_unchanged, storage_error

if TYPE_CHECKING:
    from processor.aws import Clients, S3Location
    from processor.settings import Settings
    from processor.storage.workdir import WorkDir

TAKE_TRIES = 5  # a marker that keeps appearing and vanishing under us: defer rather than spin
MARKER = ".in-progress"  # no .json suffix: a notification filtered on `.json` never fires for it


def marker_key(job_id: str) -> str:
    return f"{job_id}/{MARKER}"


@dataclass(frozen=True)
class Busy:
    """Another worker's live marker: who holds the job, and until when unless it renews."""

    worker: str
    expires_at: float

    def seconds_left(self) -> float:
        return self.expires_at - time.time()


@dataclass
class Marker:
    """A marker this worker holds for one job: renewed by the lease's heartbeat, dropped when the lease ends."""

    markers: Markers
    job_id: str
    token: str
    version: str
    lost: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def renew(self) -> None:
        with self._lock:
            if self.lost:
                return
            version = self.markers.backend_replace(self.job_id, self.markers.record(self.token), self.version)
            if version is None:
                self.lost = True  # taken over (our heartbeat missed a whole lease): the result is still written once
                logger.warning(f"the in-progress marker of {self.job_id} was taken over by another worker",
                               extra={"stage": "heartbeat", "job": self.job_id})
                return
            self.version = version

    def drop(self) -> None:
        with self._lock:
            if not self.lost:
                self.lost = True
                self.markers.backend_delete(self.job_id, self.version)


class Markers:
    """The marker flow, once; subclasses give the four primitives on a job's marker."""

    def __init__(self, identity: str, ttl_s: float) -> None:
        self.identity = identity
        self.ttl_s = ttl_s  # the lease: a marker outlives its worker's last heartbeat by this much at most

    def take(self, job_id: str) -> Marker | Busy:
        """This job's marker for this worker, or who holds it live."""
        token = f"{self.identity}/{uuid.uuid4().hex}"
        record = self.record(token)
        version = self.backend_create(job_id, record)
        for _ in range(TAKE_TRIES):
            if version is not None:
                return Marker(self, job_id, token, version)
            current = self.backend_read(job_id)
            if current is None:  # dropped between our two calls: try to create it again
                version = self.backend_create(job_id, record)
                continue
            body, current_version = current
            busy = self._live(body)
            if busy is not None:
                return busy
            version = self.backend_replace(job_id, record, current_version)
            if version is None:
                return self._busy_after_race(job_id)
            logger.info(f"took over the expired in-progress marker of {job_id}",
                        extra={"stage": "marker", "job": job_id, "previous": _field(body, "worker")})
        if version is not None:
            return Marker(self, job_id, token, version)
        return Busy("another worker", time.time() + 1)  # created and dropped by others, again and again: look later

    def record(self, token: str) -> bytes:
        return json.dumps({"owner": token, "worker": self.identity, "expires_at": time.time() + self.ttl_s}).encode()

    def _live(self, body: bytes) -> Busy | None:
        """The holder of a marker that is still live; None when it expired or its worker is known dead."""
        worker = str(_field(body, "worker") or "")
        expires_at = _field(body, "expires_at")
        if not isinstance(expires_at, (int, float)) or expires_at < time.time() or _dead_here(worker):
            return None
        return Busy(worker, float(expires_at))

    def _busy_after_race(self, job_id: str) -> Busy:
        """Another worker took the expired marker in the same instant: it is theirs now."""
        current = self.backend_read(job_id)
        busy = self._live(current[0]) if current else None
        return busy or Busy("another worker", time.time() + 1)

    # --- a backend's four primitives ---------------------------------------------------------

    def backend_create(self, job_id: str, body: bytes) -> str | None:
        """Create the marker unless one exists; its version, or None."""
        raise NotImplementedError

    def backend_read(self, job_id: str) -> tuple[bytes, str] | None:
        raise NotImplementedError

    def backend_replace(self, job_id: str, body: bytes, version: str) -> str | None:
        """Replace the marker if it is still at `version`; the new version, or None."""
        raise NotImplementedError

    def backend_delete(self, job_id: str, version: str) -> None:
        """Delete the marker if it is still at `version`; a marker someone else holds now is left alone."""
        raise NotImplementedError


def _field(body: bytes, name: str) -> Any:
    try:
        record = json.loads(body)
    except ValueError:
        return None  # an unreadable marker counts as expired
    return record.get(name) if isinstance(record, dict) else None


def _dead_here(worker: str) -> bool:
    """A marker of a worker process on this host that no longer runs: no need to wait for its expiry."""
    host, _, pid = worker.rpartition(".")
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


class LocalMarkers(Markers):
    """Markers in an outbox folder, written and read as the outbox writes its files (never through a link). A
    marker's version is its bytes' digest."""

    def __init__(self, root: Path, identity: str, ttl_s: float) -> None:
        super().__init__(identity, ttl_s)
        self.outbox = LocalOutbox(root)

    @classmethod
    def open(cls, url: str, settings: Settings, clients: Clients, workdir: WorkDir) -> LocalMarkers:
        return cls(Path(url), workdir.identity, settings.lease_s)

    def backend_create(self, job_id: str, body: bytes) -> str | None:
        return _digest(body) if self.outbox.put_if_absent(marker_key(job_id), body) else None

    def backend_read(self, job_id: str) -> tuple[bytes, str] | None:
        try:
            body = self.outbox.get(marker_key(job_id))
        except FileNotFoundError:
            return None
        return body, _digest(body)

    def backend_replace(self, job_id: str, body: bytes, version: str) -> str | None:
        if not self._set_aside(job_id, version):
            return None
        return self.backend_create(job_id, body)

    def backend_delete(self, job_id: str, version: str) -> None:
        self._set_aside(job_id, version)

    def _set_aside(self, job_id: str, version: str) -> bool:
        """Remove the marker if it is at `version`. The rename is atomic: of two workers, one moves it; a
        marker that changed meanwhile is put back (unless a new one is there already)."""
        aside = f"{MARKER}.{uuid.uuid4().hex}.aside"
        with self.outbox.folder(marker_key(job_id), create=True) as (folder, name):
            try:
                os.rename(name, aside, src_dir_fd=folder, dst_dir_fd=folder)
            except FileNotFoundError:
                return False
            try:
                with os.fdopen(os.open(aside, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder), "rb") as f:
                    if _digest(f.read()) == version:
                        return True
                with contextlib.suppress(FileExistsError):
                    os.link(aside, name, src_dir_fd=folder, dst_dir_fd=folder)
                return False
            finally:
                os.unlink(aside, dir_fd=folder)


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class S3Markers(Markers):
    """Markers in an S3 outbox, by conditional writes on their ETags."""

    def __init__(self, client: Any, location: S3Location, retry: CallRetry, identity: str, ttl_s: float) -> None:
        super().__init__(identity, ttl_s)
        self.client, self.location, self.retry = client, location, retry

    @classmethod
    def open(cls, url: str, settings: Settings, clients: Clients, workdir: WorkDir) -> S3Markers:
        from processor.aws import S3Location

        return cls(clients.s3, S3Location.parse(url), clients.retry, workdir.identity, settings.lease_s)

    def _put(self, job_id: str, body: bytes, **condition: str) -> str | None:
        key = self.location.key(marker_key(job_id))
        try:
            response = self.retry.call("s3 put marker", lambda: self.client.put_object(
                Bucket=self.location.bucket, Key=key, Body=body, **condition))
        except Exception as exc:
            if http_status(exc) in (409, 412):  # someone else holds or just changed it (a 404 is a missing bucket)
                return None
            raise storage_error(f"writing {self.location.uri(marker_key(job_id))}", exc) from exc
        return str(response["ETag"])

    def backend_create(self, job_id: str, body: bytes) -> str | None:
        return self._put(job_id, body, IfNoneMatch="*")

    def backend_replace(self, job_id: str, body: bytes, version: str) -> str | None:
        return self._put(job_id, body, IfMatch=version)

    def backend_read(self, job_id: str) -> tuple[bytes, str] | None:
        key = self.location.key(marker_key(job_id))
        try:
            response = self.retry.call("s3 get marker", lambda: self.client.get_object(
                Bucket=self.location.bucket, Key=key))
            body: bytes = response["Body"].read()
        except Exception as exc:
            if http_status(exc) == 404:
                return None
            raise storage_error(f"reading {self.location.uri(marker_key(job_id))}", exc) from exc
        return body, str(response["ETag"])

    def backend_delete(self, job_id: str, version: str) -> None:
        key = self.location.key(marker_key(job_id))
        delete_if_unchanged(self.client, self.retry, self.location.bucket, key, version, "marker")
