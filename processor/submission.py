"""Where `f5-batch submit` hands manifests over, with the voices next to them, and the steps it takes.

Three targets: an inbox folder (files copied in atomically), an S3 inbox (objects
uploaded), and a queue (the manifest is the message; with `--inbox s3://…` its voices
are uploaded to the keys in the inbox bucket where the queue's worker looks for them).
Every voice of a manifest (its `voice` and its voices table's) goes before the
manifest, so a worker never sees a job whose voice is still on its way. Every S3
and SQS call is retried as the worker's are.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from processor.aws import Clients, S3Location
from processor.errors import (
    AlreadySubmitted,
    AwsUnavailable,
    InvalidConfiguration,
    InvalidManifest,
    VoiceNotFound,
    VoiceNotUploaded,
    VoiceTooLarge,
    VoiceUnreadable,
)
from processor.failures import command_call
from processor.manifest import MAX_MANIFEST_BYTES, Manifest, VoiceSpec
from processor.retries import http_status
from processor.settings import Settings
from processor.storage.entries import entry_kind
from processor.storage.local import voice_path
from processor.storage.s3 import voice_buckets, voice_object
from processor.transcripts import SIDECAR_SUFFIX, sidecar_of
from processor.validation import ANY_INBOX, CheckedFile, VoiceRule, folder_voices, s3_voices


@dataclass(frozen=True)
class Submission:
    """A manifest that passed every check, with its JSON object (for the queue's message)."""

    file: Path
    manifest: Manifest
    body: bytes
    data: dict[str, Any]

    @classmethod
    def of(cls, checked: CheckedFile) -> Submission:
        assert checked.manifest is not None and checked.checked.data is not None
        return cls(checked.file, checked.manifest, checked.body, checked.checked.data)

    def voices(self) -> list[VoiceSpec]:
        """The manifest's voices: its own, then its voices table's."""
        return list(self.manifest.voice_specs().values())

    def beside(self, ref: str) -> Path | None:
        """Where the voice `ref` would be next to the manifest; None for a URL."""
        return None if "://" in ref else voice_path(self.file.parent, ref)

    def sidecar(self, voice: VoiceSpec) -> Path | None:
        """The transcript next to the clip (`a.wav` → `a.txt`), when the voice has none of its own: it goes with
        the clip, as the worker reads it from beside the clip."""
        beside = self.beside(voice.voice)
        if voice.voice_text is not None or beside is None:
            return None
        path = beside.with_suffix(SIDECAR_SUFFIX)
        return path if path.is_file() else None

    def clip(self, ref: str, max_bytes: int) -> Path | None:
        """The voice clip `ref` next to the manifest, if there is one; refused if the worker would refuse it."""
        path = self.beside(ref)
        if path is None:
            return None
        try:
            st = path.stat()
        except OSError:
            return None
        if (kind := entry_kind(st.st_mode)) is not None:
            raise VoiceNotFound(f"voice {ref!r}: {path} is a {kind}, not a file")
        if st.st_size > max_bytes:
            raise VoiceTooLarge(f"voice {ref!r} is {st.st_size} bytes; the limit is {max_bytes} (F5B_VOICE_MAX_BYTES)")
        if st.st_size == 0:
            raise VoiceUnreadable(f"voice {ref!r} is an empty file ({path})")
        return path


@dataclass(frozen=True)
class Step:
    """One thing a submission does: a voice clip copied, uploaded or looked for, then the manifest handed over."""

    plan: str  # what it would do, for --dry-run
    run: Callable[[], str | None]  # does it; the line to print, if any
    voice: str = ""  # the voice's destination: one clip shared by many manifests (or voices) goes once


def unique(steps: list[Step]) -> list[Step]:
    """Each voice's step once: two voices of one manifest may share a clip (or a sidecar)."""
    seen: set[str] = set()
    kept = []
    for step in steps:
        if not step.voice or step.voice not in seen:
            kept.append(step)
            seen.add(step.voice)
    return kept


class Target(Protocol):
    @property
    def voices(self) -> VoiceRule: ...  # the voice rules of the worker the target feeds

    def steps(self, sub: Submission) -> list[Step]: ...


@dataclass
class FolderTarget:
    inbox: Path
    max_voice_bytes: int

    @property
    def voices(self) -> VoiceRule:
        return folder_voices

    def steps(self, sub: Submission) -> list[Step]:
        target = self.inbox / sub.file.name
        if target.exists():
            raise AlreadySubmitted(f"{target} is already waiting in the inbox", "wait for it, or submit it under "
                                                                               "another file name")
        steps = [step for voice in sub.voices() for step in self._voice_steps(sub, voice)]
        steps.append(Step(f"copy {sub.file} ({len(sub.body)} bytes) -> {target}",
                          lambda: f"submitted {sub.manifest.job_id} -> {_copy(sub.file, target)}"))
        return unique(steps)

    def _voice_steps(self, sub: Submission, voice: VoiceSpec) -> list[Step]:
        ref, clip = voice.voice, sub.clip(voice.voice, self.max_voice_bytes)
        dest = voice_path(self.inbox, ref)
        steps = []
        if (sidecar := sub.sidecar(voice)) is not None:
            to = voice_path(self.inbox, sidecar_of(ref))
            steps.append(Step(f"copy {sidecar} ({sidecar.stat().st_size} bytes) -> {to}",
                              lambda: f"copied {sidecar} -> {_copy(sidecar, to)}", voice=str(to)))
        if clip is not None:
            steps.append(Step(f"copy {clip} ({clip.stat().st_size} bytes) -> {dest}",
                              lambda: f"copied {clip} -> {_copy(clip, dest, skip_same_size=True)}", voice=str(dest)))
        elif not dest.is_file():
            raise VoiceNotFound(f"voice {ref!r} is neither next to the manifest ({sub.beside(ref)}) "
                                f"nor in the inbox ({dest}); put the clip next to the manifest")
        return steps


def _copy(source: Path, target: Path, skip_same_size: bool = False) -> Path:
    """Through a temporary name: the worker never sees a half-copied file."""
    if skip_same_size and target.is_file() and target.stat().st_size == source.stat().st_size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.submitting")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


@dataclass
class S3VoiceUploads:
    """Voices as an S3 inbox's worker finds them: a clip next to the manifest is uploaded to its key in the inbox
    bucket; without one, the key must already be there."""

    inbox: S3Location
    clients: Clients
    max_voice_bytes: int

    def steps(self, sub: Submission) -> list[Step]:
        return unique([step for voice in sub.voices() for step in self._voice_steps(sub, voice)])

    def _voice_steps(self, sub: Submission, voice: VoiceSpec) -> list[Step]:
        ref = voice.voice
        bucket, key = voice_object(ref, self.inbox.bucket, None)
        where, clip = f"s3://{bucket}/{key}", sub.clip(ref, self.max_voice_bytes)
        if clip is not None:
            steps = []
            if (sidecar := sub.sidecar(voice)) is not None:
                _, text_key = voice_object(sidecar_of(ref), self.inbox.bucket, None)
                steps.append(Step(f"upload {sidecar} ({sidecar.stat().st_size} bytes) -> s3://{bucket}/{text_key}",
                                  lambda: self._upload(sidecar, bucket, text_key), voice=f"s3://{bucket}/{text_key}"))
            return [*steps, Step(f"upload {clip} ({clip.stat().st_size} bytes) -> {where}",
                                 lambda: self._upload(clip, bucket, key), voice=where)]
        if ref.startswith("s3://"):
            return []  # a clip elsewhere, on the allow-list: the worker reads it there
        return [Step(f"check that {where} exists", lambda: self._look_for(sub, ref, bucket, key), voice=where)]

    def _upload(self, clip: Path, bucket: str, key: str) -> str:
        s3 = self.clients.s3
        body = clip.read_bytes()  # at most F5B_VOICE_MAX_BYTES: one PUT, retried whole
        command_call(self.clients.retry, "s3 put voice", s3, f"the inbox bucket {bucket}",
                     lambda: s3.put_object(Bucket=bucket, Key=key, Body=body))
        return f"uploaded {clip} -> s3://{bucket}/{key}"

    def _look_for(self, sub: Submission, ref: str, bucket: str, key: str) -> None:
        s3 = self.clients.s3
        try:
            command_call(self.clients.retry, "s3 head voice", s3, f"the inbox bucket {bucket}",
                         lambda: s3.head_object(Bucket=bucket, Key=key))
        except AwsUnavailable as exc:
            status = http_status(exc.__cause__) if exc.__cause__ else 0
            if status == 404:
                raise VoiceNotFound(
                    f"voice {ref!r} is neither next to the manifest ({sub.beside(ref)}) nor in "
                    f"s3://{bucket}/{key}; put the clip next to the manifest to upload it") from exc
            if status != 403:  # a producer may write without reading: then the worker is the one to tell
                raise
        return None


@dataclass
class S3Target:
    inbox: S3Location
    clients: Clients
    voices: VoiceRule
    voice_store: S3VoiceUploads

    def steps(self, sub: Submission) -> list[Step]:
        key = self.inbox.key(sub.file.name)
        return [*self.voice_store.steps(sub),
                Step(f"upload {sub.file} ({len(sub.body)} bytes) -> s3://{self.inbox.bucket}/{key}",
                     lambda: f"submitted {sub.manifest.job_id} -> {self._put(sub, key)}")]

    def _put(self, sub: Submission, key: str) -> str:
        s3 = self.clients.s3
        command_call(self.clients.retry, "s3 put manifest", s3, f"the inbox bucket {self.inbox.bucket}",
                     lambda: s3.put_object(Bucket=self.inbox.bucket, Key=key, Body=sub.body,
                                           ContentType="application/json"))
        return f"s3://{self.inbox.bucket}/{key}"


@dataclass
class QueueTarget:
    url: str
    clients: Clients
    voices: VoiceRule
    voice_store: S3VoiceUploads | None  # None: no --inbox, so no voice can be uploaded

    def steps(self, sub: Submission) -> list[Step]:
        body = message_body(sub)
        send = Step(f"send {sub.manifest.job_id} (message body {len(body)} bytes) -> {self.url}",
                    lambda: f"submitted {sub.manifest.job_id} -> message {self._send(body)}")
        if self.voice_store is not None:
            return [*self.voice_store.steps(sub), send]
        for voice in sub.voices():
            self._refuse_a_clip_beside(sub, voice.voice)
        return [send]

    @staticmethod
    def _refuse_a_clip_beside(sub: Submission, ref: str) -> None:
        clip = sub.beside(ref)
        if clip is not None and os.path.lexists(clip):
            key = voice_object(ref, "BUCKET", None)[1]
            raise VoiceNotUploaded(
                f"voice {ref!r} is a file next to the manifest ({clip}), and without an S3 inbox "
                "nothing uploads it",
                f"add --inbox s3://BUCKET/PREFIX/ (the worker's inbox) to upload it, or upload it first: "
                f"aws s3 cp {clip} s3://BUCKET/{key}")

    def _send(self, body: bytes) -> str:
        sqs = self.clients.sqs
        response = command_call(self.clients.retry, "sqs send", sqs, f"the queue {self.url}",
                                lambda: sqs.send_message(QueueUrl=self.url, MessageBody=body.decode("utf-8")))
        return str(response["MessageId"])


def message_body(sub: Submission) -> bytes:
    """The manifest as the message; one without an id gets its file's stem, as from an inbox (else the job would be
    named after the message id)."""
    if sub.data.get("id") is not None:
        return sub.body
    data = {"id": sub.manifest.job_id, **{k: v for k, v in sub.data.items() if k != "id"}}
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    if len(body) > MAX_MANIFEST_BYTES:
        raise InvalidManifest(f"manifest with its id is {len(body)} bytes; the limit is {MAX_MANIFEST_BYTES}")
    return body


def target(inbox: str | None, queue: str | None, settings: Settings) -> Target:
    """Where `--inbox` and `--queue` send manifests; refuses a combination no worker reads."""
    from processor.schemes import check_folder, scheme_of

    clients = Clients(settings.model_copy(update={"queue": queue}))
    if inbox is not None:
        scheme_of(inbox, "inbox")
    bucket = S3Location.bucket_of(inbox) if inbox is not None else None
    voice_store = (S3VoiceUploads(S3Location.parse(inbox), clients, settings.voice_max_bytes)
                   if inbox is not None and bucket is not None else None)
    rule = s3_voices(bucket, voice_buckets(settings, bucket)) if bucket is not None else ANY_INBOX
    if queue is not None:
        check_queue_url(queue)
        if inbox is not None and bucket is None:
            raise InvalidConfiguration(f"--queue with the inbox folder {inbox!r}: a queue's worker reads voices from "
                                       "an S3 inbox", "give --inbox s3://BUCKET/PREFIX/, the worker's F5B_INBOX")
        return QueueTarget(queue, clients, rule, voice_store)
    if inbox is None:
        raise InvalidConfiguration("nowhere to submit to", "give --inbox DIR|s3://BUCKET/PREFIX/, --queue URL, or both")
    if voice_store is not None:
        return S3Target(voice_store.inbox, clients, rule, voice_store)
    check_folder(inbox, "inbox")
    return FolderTarget(Path(inbox), settings.voice_max_bytes)


def check_queue_url(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path.strip("/") == "":
        raise InvalidConfiguration(f"--queue {url!r} is not a queue URL",
                                   "give the queue_url f5-batch bootstrap printed, e.g. "
                                   "https://sqs.eu-west-1.amazonaws.com/123456789012/tts-jobs")
