"""`f5-batch submit`: validate manifests and hand them to an inbox folder, an S3 inbox or a queue."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processor.aws import S3Location
from processor.errors import AlreadySubmitted, InvalidManifest
from processor.manifest import Manifest
from processor.storage.local import voice_path


@dataclass(frozen=True)
class Submission:
    file: Path
    manifest: Manifest

    @property
    def local_voice(self) -> Path | None:
        """The voice clip next to the manifest, if the manifest names one by relative path."""
        if "://" in self.manifest.voice:
            return None
        path = voice_path(self.file.parent, self.manifest.voice)
        return path if path.is_file() else None


def to_folder(sub: Submission, inbox: Path) -> str:
    target = inbox / sub.file.name
    if target.exists():
        raise AlreadySubmitted(f"{target} is already waiting in the inbox")
    voice = sub.local_voice
    if voice is not None:
        _copy_atomically(voice, voice_path(inbox, sub.manifest.voice), skip_same_size=True)
    _copy_atomically(sub.file, target)  # the worker never sees a half-copied manifest
    return str(target)


def _copy_atomically(source: Path, target: Path, skip_same_size: bool = False) -> None:
    if skip_same_size and target.is_file() and target.stat().st_size == source.stat().st_size:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.submitting")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def to_s3(sub: Submission, inbox: S3Location, s3: Any) -> str:
    """Upload the voice first (a key in the inbox bucket), then the manifest that the worker will see."""
    voice = sub.local_voice
    if voice is not None:
        s3.upload_file(str(voice), inbox.bucket, sub.manifest.voice)
    key = inbox.key(sub.file.name)
    s3.put_object(Bucket=inbox.bucket, Key=key, Body=sub.file.read_bytes(), ContentType="application/json")
    return f"s3://{inbox.bucket}/{key}"


def to_queue(sub: Submission, queue_url: str, sqs: Any) -> str:
    if "id" not in json.loads(sub.file.read_bytes()):  # else the job would be named after the message id
        raise InvalidManifest("a manifest sent to a queue needs an \"id\"")
    response = sqs.send_message(QueueUrl=queue_url, MessageBody=sub.file.read_text(encoding="utf-8"))
    return f"message {response['MessageId']}"
