"""What one SQS message asks the worker to do.

A message body arrives in one of five shapes: an S3 event notification, the same wrapped
in an SNS envelope, an EventBridge "Object Created" event, the `s3:TestEvent` S3 sends
when notifications are configured, or a manifest sent straight to the queue by a
producer. `parse_message` turns each into a list of jobs. It is pure (no network, no
clock), so every shape is tested without AWS, and the manifest itself is validated later
by `processor.manifest.parse_manifest`, not here.

Records are isolated, as in Powertools' partial batch failure: a malformed record of an
S3 event is an `InvalidRecord` job of its own (it fails as `invalid_message`), and the
message's other records still run. Only a body that cannot be read as a whole (not JSON,
Records not a non-empty list, a broken SNS envelope or EventBridge event) raises
`InvalidMessage` for the message.

How a body is told apart: a JSON object holding one of the keys `Records` (S3 event),
`Type` (SNS envelope), `detail-type` (EventBridge) or `Event` (S3 test event) is an
event and must be well formed; any other JSON object is an inline manifest. None of
those keys is a manifest field, and the manifest forbids unknown fields, so no valid
manifest is ever mistaken for an event (tests/test_messages.py pins this).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import unquote_plus

from processor.errors import InvalidMessage
from processor.manifest import MAX_MANIFEST_BYTES

__all__ = ["InlineManifest", "InvalidMessage", "InvalidRecord", "Job", "ObjectRef", "parse_message"]

_SHOWN_CHARS = 60  # how much of any value taken from the body an error message may echo
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_S3_EVENT_MAJOR = "2"
_EVENTBRIDGE_DETAIL_MAJOR = "1"


@dataclass(frozen=True)
class ObjectRef:
    """A manifest object in S3 to fetch. `key` is the real key, already URL-decoded."""

    bucket: str
    key: str
    etag: str | None = None
    size: int | None = None
    event_time: str | None = None


@dataclass(frozen=True)
class InlineManifest:
    """The message body is itself a manifest (a producer wrote straight to the queue)."""

    body: bytes


@dataclass(frozen=True)
class InvalidRecord:
    """A malformed record of an S3 event: it fails alone, as `invalid_message`.

    `index` is its place in Records (skipped records count too), so each bad record of a
    message gets a result of its own, under the same name on every delivery.
    """

    index: int
    reason: str

    def error(self) -> InvalidMessage:
        return InvalidMessage(self.reason)


Job: TypeAlias = "ObjectRef | InlineManifest | InvalidRecord"

_JsonObject: TypeAlias = "dict[str, object]"


def parse_message(body: str) -> list[Job]:
    """The jobs one SQS message body asks for; `[]` means nothing to do, delete the message.

    Raises `InvalidMessage` for a body that is not a JSON object, is over
    MAX_MANIFEST_BYTES, or is shaped like an event but malformed as a whole; a malformed
    record of an S3 event is an `InvalidRecord` among the jobs instead.
    """
    data = _load_object(body, "message body")
    return _dispatch(data, body, in_envelope=False)


def _load_object(text: str, what: str) -> _JsonObject:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidMessage(f"{what} is not valid Unicode text: {exc.reason} at {exc.start}") from exc
    if size > MAX_MANIFEST_BYTES:
        raise InvalidMessage(f"{what} is {size} bytes; the limit is {MAX_MANIFEST_BYTES}")
    try:
        data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, and int() past sys.get_int_max_str_digits()
        raise InvalidMessage(f"{what} is not valid JSON ({_clip(str(exc))}): starts {_show(text)}") from exc
    except RecursionError as exc:
        raise InvalidMessage(f"{what} is JSON nested too deeply to read") from exc
    if not isinstance(data, dict):
        raise InvalidMessage(f"{what} must be a JSON object, not {_json_type(data)}: starts {_show(text)}")
    return data


def _dispatch(data: _JsonObject, text: str, *, in_envelope: bool) -> list[Job]:
    if "Records" in data:
        return _s3_event(data)
    if "Type" in data:
        if in_envelope:
            raise InvalidMessage("SNS Message is itself an SNS envelope; expected an S3 event or a manifest")
        return _sns_envelope(data)
    if "detail-type" in data:
        return _eventbridge(data)
    if "Event" in data:
        return _test_event(data)
    return [InlineManifest(text.encode("utf-8"))]


def _s3_event(data: _JsonObject) -> list[Job]:
    """S3 event notification: every ObjectCreated record is a job, a malformed one too; other events are skipped."""
    records = data["Records"]
    if not isinstance(records, list):
        raise InvalidMessage(f"S3 event Records must be a list, not {_json_type(records)}")
    if not records:
        raise InvalidMessage("S3 event Records is empty")
    jobs: list[Job] = []
    for index, record in enumerate(records):
        try:
            job: Job | None = _s3_record(record, f"Records[{index}]")
        except InvalidMessage as exc:
            job = InvalidRecord(index, str(exc))
        if job is not None:
            jobs.append(job)
    return jobs


def _s3_record(record: object, where: str) -> ObjectRef | None:
    if not isinstance(record, dict):
        raise InvalidMessage(f"{where} must be an object, not {_json_type(record)}")
    source = _string(record, ("eventSource",), where)
    if source != "aws:s3":
        raise InvalidMessage(f"{where}.eventSource is {_show(source)}; only 'aws:s3' is understood")
    # AWS (notification-content-structure): "we recommend that you do an equal-to comparison on
    # the major version number"; a minor bump only adds fields, a major one changes their meaning.
    _check_major(_string(record, ("eventVersion",), where), _S3_EVENT_MAJOR, f"{where}.eventVersion")
    name = _string(record, ("eventName",), where)
    if not name.startswith("ObjectCreated:"):
        return None  # ObjectRemoved and the like: no manifest to run, and not an error
    raw_key = _string(record, ("s3", "object", "key"), where, nonempty=True)
    return ObjectRef(
        bucket=_string(record, ("s3", "bucket", "name"), where, nonempty=True),
        key=_decode_key(raw_key, f"{where}.s3.object.key"),
        etag=_optional_string(record, ("s3", "object", "eTag"), where),
        size=_optional_size(record, ("s3", "object", "size"), where),
        event_time=_optional_string(record, ("eventTime",), where),
    )


def _decode_key(raw: str, where: str) -> str:
    """The real key from its event form.

    AWS: "the object key name value is URL encoded. For example, 'red flower.jpg' becomes
    'red+flower.jpg'" (notification-content-structure), so a literal '+' arrives as %2B.
    Slashes may arrive as is (AWS) or as %2F (moto); unquote_plus takes both. A '%' not
    followed by two hex digits, or bytes that are not UTF-8, mean the producer did not
    encode the key the way S3 does, and guessing would fetch the wrong object.
    """
    bad = _BAD_PERCENT.search(raw)
    if bad is not None:
        raise InvalidMessage(f"{where} is not valid URL encoding ('%' at {bad.start()}): {_show(raw)}")
    try:
        key = unquote_plus(raw, errors="strict")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(f"{where} does not decode to UTF-8: {_show(raw)}") from exc
    return _check_key(key, where)


def _check_key(key: str, where: str) -> str:
    """S3 keys are UTF-8; a key that cannot be encoded (a lone surrogate) names no object."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidMessage(f"{where} is not valid Unicode: {exc.reason} at {exc.start}") from exc
    return key


def _sns_envelope(data: _JsonObject) -> list[Job]:
    """S3 -> SNS -> SQS without raw delivery: the S3 event (or a manifest) is a JSON string in Message."""
    kind = data["Type"]
    if kind != "Notification":
        # e.g. SubscriptionConfirmation for a cross-account subscription: a person must confirm it.
        raise InvalidMessage(f"SNS message of Type {_show(kind)} is not a job; only 'Notification' is")
    message = data.get("Message")
    if not isinstance(message, str):
        raise InvalidMessage(f"SNS Notification Message must be a string, not {_json_type(message)}")
    inner = _load_object(message, "SNS Message")
    return _dispatch(inner, message, in_envelope=True)


def _eventbridge(data: _JsonObject) -> list[Job]:
    """EventBridge event from S3: "Object Created" is a job; other S3 detail types are skipped."""
    source = data.get("source")
    if source != "aws.s3":
        raise InvalidMessage(f"EventBridge source is {_show(source)}; only 'aws.s3' is understood")
    kind = data["detail-type"]
    if not isinstance(kind, str):
        raise InvalidMessage(f"EventBridge detail-type must be a string, not {_json_type(kind)}")
    if kind != "Object Created":
        return []  # Object Deleted, Object Restore Completed, ...: not a manifest to run
    version = _optional_string(data, ("detail", "event-version"), "EventBridge event")
    if version is not None:  # absent in older events; AWS advises an equal-to test on the major
        _check_major(version, _EVENTBRIDGE_DETAIL_MAJOR, "EventBridge detail.event-version")
    return [_eventbridge_object(data)]


def _eventbridge_object(data: _JsonObject) -> ObjectRef:
    # The key is taken verbatim, not URL-decoded. The EventBridge detail field reference
    # (AmazonS3 userguide ev-events) documents `object.key` with no encoding, unlike the
    # explicit "URL encoded" note for S3 notifications; moto emits the raw key.name there
    # (quote_plus only for notifications), and AWS's MediaLake guidance (PR #21) removed
    # decoding for EventBridge after keys with '+', '%' and spaces failed. Decoding would
    # corrupt any real key containing '+' or '%'.
    where = "EventBridge event"
    key = _string(data, ("detail", "object", "key"), where, nonempty=True)
    etag = _optional_string(data, ("detail", "object", "etag"), where)
    if etag is None:
        etag = _optional_string(data, ("detail", "object", "eTag"), where)  # moto's spelling
    return ObjectRef(
        bucket=_string(data, ("detail", "bucket", "name"), where, nonempty=True),
        key=_check_key(key, f"{where} detail.object.key"),
        etag=etag,
        size=_optional_size(data, ("detail", "object", "size"), where),
        event_time=_optional_string(data, ("time",), where),
    )


def _test_event(data: _JsonObject) -> list[Job]:
    """S3 sends `s3:TestEvent` once when notifications are configured: nothing to run, delete it."""
    event = data["Event"]
    if event != "s3:TestEvent":
        raise InvalidMessage(f"S3 message Event is {_show(event)}; only 's3:TestEvent' is understood")
    return []


def _check_major(version: str, major: str, where: str) -> None:
    if version.split(".", 1)[0] != major:
        raise InvalidMessage(f"{where} is {_show(version)}; only major version {major} is understood")


def _lookup(data: _JsonObject, path: tuple[str, ...], where: str) -> object:
    """The value at `path`, or None where it (or an object on the way) is absent or null."""
    value: object = data
    for depth, step in enumerate(path):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise InvalidMessage(f"{where}: {'.'.join(path[:depth])} must be an object, not {_json_type(value)}")
        value = value.get(step)
    return value


def _string(data: _JsonObject, path: tuple[str, ...], where: str, *, nonempty: bool = False) -> str:
    value = _optional_string(data, path, where)
    if value is None:
        raise InvalidMessage(f"{where}: {'.'.join(path)} is missing")
    if nonempty and not value:
        raise InvalidMessage(f"{where}: {'.'.join(path)} is empty")
    return value


def _optional_string(data: _JsonObject, path: tuple[str, ...], where: str) -> str | None:
    value = _lookup(data, path, where)
    if value is not None and not isinstance(value, str):
        raise InvalidMessage(f"{where}: {'.'.join(path)} must be a string, not {_json_type(value)}")
    return value


def _optional_size(data: _JsonObject, path: tuple[str, ...], where: str) -> int | None:
    value = _lookup(data, path, where)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidMessage(f"{where}: {'.'.join(path)} must be a whole number of bytes, not {_show(value)}")
    return value


def _json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages a user reads."""
    names: dict[type, str] = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number"}
    if value is None:
        return "null"
    return names.get(type(value), "number")


def _show(value: object) -> str:
    """A value from the body, quoted and cut short: an error must never echo a whole message.

    Only strings and scalars are shown; for an object or array the type name is enough, and
    repr of a deeply nested one could itself overflow the stack.
    """
    if isinstance(value, str):
        return repr(value[:_SHOWN_CHARS]) + ("..." if len(value) > _SHOWN_CHARS else "")
    if value is None or isinstance(value, (bool, int, float)):
        return _clip(repr(value))
    return f"an {_json_type(value)}"


def _clip(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."
