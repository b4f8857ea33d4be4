"""S3 as outbox and as voice source.

The outbox writes the same layout as the local one. `put_if_absent` is a
conditional PUT (`If-None-Match: *`): of two workers finishing the same job,
exactly one result is stored, and a redelivered job finds it and stops.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from processor.aws import S3Location
from processor.errors import (
    F5BatchError,
    InvalidManifest,
    ManifestNotFound,
    StorageError,
    StorageUnavailable,
    VoiceAccessDenied,
    VoiceChanged,
    VoiceNotAllowed,
    VoiceNotFound,
    VoiceTooLarge,
)
from processor.manifest import MAX_MANIFEST_BYTES
from processor.retries import CallRetry, error_code, http_status, is_transient
from processor.storage.voice_cache import VoiceCache
from processor.storage.workdir import disk_full
from processor.transcripts import MAX_SIDECAR_BYTES, read_sidecar, sidecar_of

if TYPE_CHECKING:
    from processor.aws import Clients
    from processor.settings import Settings
    from processor.storage.workdir import WorkDir

MULTIPART_THRESHOLD = 8 * 2**20  # boto3's default; audio above it goes up in parts


def storage_error(what: str, exc: Exception) -> F5BatchError:
    """Wrap a boto error that survived the retries: transient stays transient, the rest is permanent."""
    message = f"{what}: {error_code(exc)} (HTTP {http_status(exc) or '-'})"
    if is_transient(exc):
        return StorageUnavailable(message)
    return StorageError(message)


def delete_if_unchanged(client: Any, retry: CallRetry, bucket: str, key: str, etag: str, what: str) -> None:
    """Delete `key` if it is still at `etag` (a lease, a marker); already gone, or someone else's now: nothing to do."""
    try:
        retry.call(f"s3 delete {what}", lambda: client.delete_object(Bucket=bucket, Key=key, IfMatch=etag))
    except Exception as exc:
        if http_status(exc) not in (404, 412):
            raise storage_error(f"removing {what} s3://{bucket}/{key}", exc) from exc


def read_manifest(client: Any, retry: CallRetry, bucket: str, key: str) -> bytes:
    """A manifest object's bytes; one deleted since it was announced is a permanent failure of that job.

    Never more than MAX_MANIFEST_BYTES + 1 of them: an object whose announced length is over the limit
    is refused unread, and so is a body that turns out longer (the server announced no length, or a
    wrong one) once that much of it is read. Either is `invalid_manifest`, as a large file is.
    """
    try:
        response = retry.call("s3 get manifest", lambda: client.get_object(Bucket=bucket, Key=key))
        return _bounded_body(response)
    except F5BatchError:
        raise
    except Exception as exc:
        if http_status(exc) == 404:
            raise ManifestNotFound(f"manifest s3://{bucket}/{key} no longer exists") from exc
        raise storage_error(f"reading s3://{bucket}/{key}", exc) from exc


def _bounded_body(response: dict[str, Any]) -> bytes:
    stream = response["Body"]
    try:
        size = int(response.get("ContentLength") or 0)
        if size > MAX_MANIFEST_BYTES:
            raise InvalidManifest(f"manifest is {size} bytes; the limit is {MAX_MANIFEST_BYTES}")
        body: bytes = stream.read(MAX_MANIFEST_BYTES + 1)
    finally:
        stream.close()  # unread bytes are dropped with the connection, not downloaded
    if len(body) > MAX_MANIFEST_BYTES:  # the server announced no length, or a wrong one
        raise InvalidManifest(f"manifest is more than {MAX_MANIFEST_BYTES} bytes; the limit is {MAX_MANIFEST_BYTES}")
    return body


def under_prefix(key: str, prefix: str) -> bool:
    """`key` is under `prefix`, also as a store that folds `a//b` or `a/./b` into `a/b` would read it."""
    folded = "/".join(part for part in key.split("/") if part not in ("", "."))
    return key.startswith(prefix) or folded.startswith(prefix)


def voice_buckets(settings: Settings, inbox_bucket: str) -> frozenset[str]:
    """The buckets voices may come from: F5B_VOICE_BUCKETS, else the inbox's own."""
    return frozenset({b.strip() for b in settings.voice_buckets.split(",") if b.strip()} or {inbox_bucket})


def voice_object(ref: str, default_bucket: str, allowed_buckets: frozenset[str] | None,
                 outbox: S3Location | None = None) -> tuple[str, str]:
    """The bucket and key a manifest's `voice` names: `s3://bucket/key`, or a key in `default_bucket`.

    `allowed_buckets` None: any bucket (`validate` and `submit`, which do not know the worker's allow-list)."""
    if ref.startswith("s3://"):
        bucket, _, key = ref[len("s3://"):].partition("/")
    elif "://" in ref:
        raise VoiceNotAllowed(f"voice {ref!r}: only s3:// URLs or keys in the inbox bucket are read")
    else:
        bucket, key = default_bucket, ref
    parts = PurePosixPath(key).parts
    if not key or key.startswith("/") or ".." in parts or "\\" in key:
        raise VoiceNotAllowed(f"voice {ref!r} is not a valid object key")
    if allowed_buckets is not None and bucket not in allowed_buckets:
        raise VoiceNotAllowed(
            f"voice {ref!r} is in bucket {bucket!r}, which is not in the allow-list (F5B_VOICE_BUCKETS)"
        )
    if outbox is not None and bucket == outbox.bucket and under_prefix(key, outbox.prefix):
        raise VoiceNotAllowed(f"voice {ref!r} is in the outbox ({outbox.uri()}): results are not voices")
    return bucket, key


@dataclass
class S3Outbox:
    client: Any
    location: S3Location
    retry: CallRetry
    multipart_threshold: int = MULTIPART_THRESHOLD

    @classmethod
    def open(cls, url: str, settings: Settings, clients: Clients, workdir: WorkDir) -> S3Outbox:
        return cls(clients.s3, S3Location.parse(url), clients.retry)

    def put(self, key: str, data: bytes) -> None:
        full = self.location.key(key)
        try:
            if len(data) > self.multipart_threshold:
                self.retry.call("s3 upload", lambda: self._upload_in_parts(full, data))
            else:
                self.retry.call("s3 put", lambda: self.client.put_object(Bucket=self.location.bucket, Key=full,
                                                                        Body=data))
        except Exception as exc:
            raise storage_error(f"writing {self.uri(key)}", exc) from exc

    def _upload_in_parts(self, key: str, data: bytes) -> None:
        from boto3.s3.transfer import TransferConfig

        size = self.multipart_threshold
        config = TransferConfig(multipart_threshold=size, multipart_chunksize=size)
        self.client.upload_fileobj(io.BytesIO(data), self.location.bucket, key, Config=config)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        full = self.location.key(key)
        return self._unless(412, f"writing {self.uri(key)}", "s3 conditional put", lambda: self.client.put_object(
            Bucket=self.location.bucket, Key=full, Body=data, IfNoneMatch="*"))

    def exists(self, key: str) -> bool:
        full = self.location.key(key)
        return self._unless(404, f"checking {self.uri(key)}", "s3 head", lambda: self.client.head_object(
            Bucket=self.location.bucket, Key=full))

    def _unless(self, status: int, what: str, call: str, request: Callable[[], object]) -> bool:
        """True when the request succeeds, False when S3 answers `status`; anything else is a storage error."""
        try:
            self.retry.call(call, request)
        except Exception as exc:
            if http_status(exc) == status:
                return False
            raise storage_error(what, exc) from exc
        return True

    def get(self, key: str) -> bytes:
        full = self.location.key(key)
        try:
            response = self.retry.call("s3 get", lambda: self.client.get_object(Bucket=self.location.bucket, Key=full))
            body: bytes = response["Body"].read()
        except Exception as exc:
            raise storage_error(f"reading {self.uri(key)}", exc) from exc
        return body

    def uri(self, key: str) -> str:
        return self.location.uri(key)


@dataclass
class S3Voices:
    """Voice clips in S3: `s3://bucket/key`, or a key in the inbox bucket.

    Only allow-listed buckets are read (default: the inbox bucket), and only
    files up to `max_bytes`. Clips are cached by (bucket, key, ETag), so a voice
    shared by many jobs is downloaded once.
    """

    client: Any
    default_bucket: str
    allowed_buckets: frozenset[str]
    max_bytes: int
    cache: VoiceCache
    retry: CallRetry
    outbox: S3Location | None = None  # never a voice: other jobs' results, in a bucket the inbox may share

    @classmethod
    def open(cls, url: str, settings: Settings, clients: Clients, workdir: WorkDir) -> S3Voices:
        """Voices for the inbox `url`: keys in its bucket (if it is one), and the buckets of F5B_VOICE_BUCKETS."""
        default_bucket = S3Location.bucket_of(url) or ""
        allowed = voice_buckets(settings, default_bucket)
        cache = VoiceCache(workdir.mine / "voice-cache", settings.voice_cache_bytes)
        outbox = S3Location.parse(settings.outbox) if S3Location.bucket_of(settings.outbox) else None
        return cls(clients.s3, default_bucket, allowed, settings.voice_max_bytes, cache, clients.retry,
                   outbox)

    def identity(self, ref: str) -> str:
        bucket, key, etag = self._locate(ref)
        return f"s3://{bucket}/{key}#{etag}"

    def transcript(self, ref: str) -> str | None:
        """The sidecar object next to the clip, in the same bucket (so under the same allow-list)."""
        sidecar = sidecar_of(ref)
        bucket, key = self.resolve(sidecar)

        def read() -> bytes:
            body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read(MAX_SIDECAR_BYTES + 1)
            return body

        try:
            body = self.retry.call("s3 get transcript", read)
        except Exception as exc:
            if http_status(exc) == 404:
                return None
            if http_status(exc) == 403:
                raise VoiceAccessDenied(f"transcript {sidecar!r}: access denied to s3://{bucket}/{key}") from exc
            raise storage_error(f"reading transcript {sidecar!r}", exc) from exc
        return read_sidecar(sidecar, body)

    def fetch(self, ref: str, dest_dir: Path, identity: str | None = None) -> Path:
        bucket, key = self.resolve(ref)
        located, _, etag = (identity or "").rpartition("#")
        if located != f"s3://{bucket}/{key}" or not etag:  # no identity (or another clip's): look it up
            bucket, key, etag = self._locate(ref)
        dest = dest_dir / f"voice{PurePosixPath(key).suffix}"
        if self.cache.copy_to(bucket, key, etag, dest):
            return dest
        self._download(bucket, key, etag, dest, ref)
        self.cache.add(bucket, key, etag, dest)
        return dest

    def _locate(self, ref: str) -> tuple[str, str, str]:
        bucket, key = self.resolve(ref)
        head = self._head(bucket, key, ref)
        size, etag = int(head["ContentLength"]), str(head["ETag"]).strip('"')
        if size > self.max_bytes:
            raise VoiceTooLarge(f"voice {ref!r} is {size} bytes; the limit is {self.max_bytes}")
        return bucket, key, etag

    def resolve(self, ref: str) -> tuple[str, str]:
        return voice_object(ref, self.default_bucket, self.allowed_buckets, self.outbox)

    def _head(self, bucket: str, key: str, ref: str) -> dict[str, Any]:
        try:
            head: dict[str, Any] = self.retry.call(
                "s3 head voice", lambda: self.client.head_object(Bucket=bucket, Key=key))
        except Exception as exc:
            if http_status(exc) == 404:
                raise VoiceNotFound(f"voice {ref!r} not found (s3://{bucket}/{key})") from exc
            if http_status(exc) == 403:
                raise VoiceAccessDenied(f"voice {ref!r}: access denied to s3://{bucket}/{key}") from exc
            raise storage_error(f"reading voice {ref!r}", exc) from exc
        return head

    def _download(self, bucket: str, key: str, etag: str, dest: Path, ref: str) -> None:
        def download() -> None:
            # IfMatch pins the version we sized and cached against, should the object change meanwhile.
            response = self.client.get_object(Bucket=bucket, Key=key, IfMatch=etag)
            with dest.open("wb") as f:
                for chunk in response["Body"].iter_chunks(1 << 20):
                    f.write(chunk)
                    if f.tell() > self.max_bytes:
                        raise VoiceTooLarge(f"voice {ref!r} exceeds {self.max_bytes} bytes")

        try:
            self.retry.call("s3 get voice", download)
        except F5BatchError:
            raise
        except Exception as exc:
            if disk_full(exc):  # the processing folder's trouble, not S3's: the job's scratch folder says so
                raise
            if http_status(exc) in (404, 412):
                raise VoiceChanged(f"voice {ref!r} changed while being read") from exc
            raise storage_error(f"reading voice {ref!r}", exc) from exc
