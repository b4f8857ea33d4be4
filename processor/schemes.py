"""Which inbox, outbox and voice source a location means: one table, checked before anything starts.

A location is a folder path or an `s3://bucket/prefix/` URL; with `--queue`, jobs
come from an SQS queue instead of a scan of the inbox. Anything else that looks
like a URL (`gs://…`, `http://…`, a typo such as `s3:/x`) is refused at start-up,
before the model loads and before any folder is made. A new kind of inbox is one
storage module with an `open` classmethod, plus one row here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processor.aws import S3_SCHEME, Clients, S3Location
from processor.errors import InvalidConfiguration
from processor.settings import Settings
from processor.storage import Inbox, Outbox, VoiceSource
from processor.storage.local import LocalInbox, LocalOutbox, LocalVoices
from processor.storage.markers import LocalMarkers, Markers, S3Markers
from processor.storage.s3 import S3Outbox, S3Voices
from processor.storage.s3_inbox import S3Inbox
from processor.storage.sqs import SqsInbox
from processor.storage.workdir import WorkDir

Opener = Callable[[str, Settings, Clients, WorkDir], Any]


@dataclass(frozen=True)
class Scheme:
    form: str  # how a user writes such a location, for error messages
    inbox: Opener
    outbox: Opener
    voices: Opener  # where the voices of an inbox of this kind come from
    markers: Opener  # in-progress markers, beside the results in an outbox of this kind


FOLDER = ""
SCHEMES: dict[str, Scheme] = {
    FOLDER: Scheme("a folder path", LocalInbox.open, LocalOutbox.open, LocalVoices.open, LocalMarkers.open),
    "s3": Scheme("s3://bucket/prefix/", S3Inbox.open, S3Outbox.open, S3Voices.open, S3Markers.open),
}
QUEUE_INBOX: Opener = SqsInbox.open  # --queue: the queue hands out jobs; the inbox still says where voices are

_URL_LIKE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def scheme_of(location: str, what: str) -> Scheme:
    """The row for `location`, or InvalidConfiguration naming the supported forms."""
    if location.startswith(S3_SCHEME):
        S3Location.parse(location)  # a bucket name S3 would refuse fails here, not at the first request
        return SCHEMES["s3"]
    found = _URL_LIKE.match(location)
    if found is None:
        return SCHEMES[FOLDER]
    forms = " or ".join(scheme.form for scheme in SCHEMES.values())
    raise InvalidConfiguration(f"{what} {location!r}: {found.group(1)!r} is not a supported location; use {forms}")


@dataclass(frozen=True)
class Storage:
    inbox: Inbox
    outbox: Outbox
    voices: VoiceSource
    markers: Markers


def check(settings: Settings) -> tuple[Scheme, Scheme]:
    """The inbox's and the outbox's rows; refuses, before anything is made or loaded, a location of no kind, a
    folder path that is not a folder, and an inbox and outbox that overlap."""
    schemes = scheme_of(settings.inbox, "inbox"), scheme_of(settings.outbox, "outbox")
    for location, what in ((settings.inbox, "inbox"), (settings.outbox, "outbox")):
        if S3Location.bucket_of(location) is None:
            check_folder(location, what)
    check_no_loop(settings)
    return schemes


def check_folder(location: str, what: str) -> None:
    """A folder path must be a folder (or a link to one), or not exist yet below one: the worker makes it."""
    path = Path(location)
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            if not os.path.isdir(candidate):
                raise InvalidConfiguration(f"{what} {location!r}: {str(candidate)!r} is not a folder")
            return


def open_storage(settings: Settings, workdir: WorkDir) -> Storage:
    inbox_scheme, outbox_scheme = check(settings)
    clients = Clients(settings)
    inbox = QUEUE_INBOX if settings.queue else inbox_scheme.inbox
    # F5B_VOICE_BUCKETS names S3 buckets: voices come from S3 whatever the inbox is.
    voices = SCHEMES["s3"].voices if settings.voice_buckets else inbox_scheme.voices
    return Storage(
        inbox=inbox(settings.inbox, settings, clients, workdir),
        outbox=outbox_scheme.outbox(settings.outbox, settings, clients, workdir),
        voices=voices(settings.inbox, settings, clients, workdir),
        markers=outbox_scheme.markers(settings.outbox, settings, clients, workdir),
    )


def check_no_loop(settings: Settings) -> None:
    """An outbox inside the inbox would feed every result back in as a new job; an inbox inside the outbox would
    take jobs from among the results. Folders are compared with their links resolved, as the worker will use them."""
    if overlap(settings.inbox, settings.outbox):
        raise InvalidConfiguration(
            f"outbox {settings.outbox} overlaps inbox {settings.inbox}: results would be taken as new jobs"
        )


def overlap(inbox: str, outbox: str) -> bool:
    inbox_bucket, outbox_bucket = S3Location.bucket_of(inbox), S3Location.bucket_of(outbox)
    if inbox_bucket is None and outbox_bucket is None:
        real_inbox, real_outbox = Path(os.path.realpath(inbox)), Path(os.path.realpath(outbox))
        return real_outbox.is_relative_to(real_inbox) or real_inbox.is_relative_to(real_outbox)
    if inbox_bucket is None or inbox_bucket != outbox_bucket:
        return False
    inbox_prefix, outbox_prefix = S3Location.parse(inbox).prefix, S3Location.parse(outbox).prefix
    return outbox_prefix.startswith(inbox_prefix) or inbox_prefix.startswith(outbox_prefix)
