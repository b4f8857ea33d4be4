"""The error catalogue: every code a user or operator can see, defined once, here.

Each code is one class. `PermanentError`: the job itself is wrong (bad manifest,
missing voice): fail it now, never retry. `TransientError`: the world is briefly
wrong (network, throttling, out of memory): try the job again after a backoff.
`where` says where the code shows: in a job's `result.json`, in what a command
prints as it starts (`f5-batch run`, `submit`), or only in log lines. Codes are part of the outbox contract; the
README's and docs' code tables are checked against `CATALOGUE`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

Where = Literal["result", "command", "log"]

CATALOGUE: dict[str, type[F5BatchError]] = {}


class F5BatchError(Exception):
    """A bug: the job failed, the worker carried on. Subclasses name what really went wrong."""

    code: ClassVar[str] = "internal_error"
    meaning: ClassVar[str] = "a bug: the job failed, the worker carried on"
    where: ClassVar[Where] = "result"
    transient: ClassVar[bool] = False
    # Raised only once the call's own retries (processor.retries) gave up: trying the job again in the
    # worker would wrap an already-retried call in a second retry. A queue still redelivers it.
    retried_per_call: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            if cls.code in CATALOGUE:
                raise TypeError(f"error code {cls.code!r} is defined twice: {CATALOGUE[cls.code]} and {cls}")
            CATALOGUE[cls.code] = cls

    @property
    def message(self) -> str:
        return str(self)


CATALOGUE[F5BatchError.code] = F5BatchError


class PermanentError(F5BatchError):
    """Bad input: this job fails, the worker carries on."""


class TransientError(F5BatchError):
    """Worth another attempt after a backoff."""

    transient = True


# --- the manifest -------------------------------------------------------------------------


class InvalidJson(PermanentError):
    code = "invalid_json"
    meaning = "the manifest is not JSON, not UTF-8, or uses NaN, huge numbers or deep nesting"


class InvalidManifest(PermanentError):
    code = "invalid_manifest"
    meaning = ("schema violation: unknown field, wrong type, out-of-range value, blank text, control or bidi "
               "characters, bad id, duplicate keys, manifest over 256 KiB, unknown voice tag, malformed break or one "
               "over 10 s")


class VoiceTextRequired(PermanentError):
    code = "voice_text_required"
    meaning = ("no transcript of the voice clip: none in the manifest (voice_text), no sidecar file next to the clip "
               "(voices/narrator.wav → voices/narrator.txt), and no ASR model on the volume")


class TextUnusable(PermanentError):
    code = "text_unusable"
    meaning = ("nothing to speak: the text (or one voice's piece of it) holds only invisible characters (zero-width, "
               "format, variation selectors), or only breaks and voice tags")


class InvalidMessage(PermanentError):
    """A queue message the worker does not understand: retrying it cannot help."""

    code = "invalid_message"
    meaning = ("a queue message, or one record of an S3 event, that is neither a manifest nor a "
               "well-formed S3/SNS/EventBridge event")


class ManifestNotFound(PermanentError):
    code = "manifest_not_found"
    meaning = "the manifest object named by an event was deleted before it was read"


class ManifestNotAllowed(PermanentError):
    code = "manifest_not_allowed"
    meaning = "an event names a manifest outside the inbox bucket"


class ManifestUnreadable(PermanentError):
    code = "manifest_unreadable"
    meaning = ("the inbox entry is not a regular file (a symbolic link, FIFO, socket or device) or cannot be "
               "opened (permissions)")


# --- the voice ----------------------------------------------------------------------------


class VoiceNotFound(PermanentError):
    code = "voice_not_found"
    meaning = "no file at the voice path"


class VoiceNotAllowed(PermanentError):
    code = "voice_not_allowed"
    meaning = ("the voice path leaves the inbox (`..`, absolute path, URL, a symbolic link out of it), names a bucket "
               "outside F5B_VOICE_BUCKETS, or a key in the outbox")


class VoiceUnreadable(PermanentError):
    code = "voice_unreadable"
    meaning = ("the clip cannot be decoded (truncated WAV, NaN samples, 64-bit float…), or is silent or shorter "
               "than 0.3 s")


class VoiceClipped(PermanentError):
    code = "voice_clipped"
    meaning = ("the voice clip is longer than the model's reference (about 12 s): the part kept would no longer match "
               "its transcript; trim the clip with a matching transcript, or seed ASR to transcribe the kept part")


class VoiceTooLong(PermanentError):
    code = "voice_too_long"
    meaning = "the voice clip is longer than 300 s (by its header, or once decoded, whatever the header claims)"


class VoiceTooLarge(PermanentError):
    code = "voice_too_large"
    meaning = ("the voice file is over F5B_VOICE_MAX_BYTES, or decodes to over 115 MB of samples (more than "
               "stereo 48 kHz for 300 s)")


class VoiceAccessDenied(PermanentError):
    code = "voice_access_denied"
    meaning = "S3 refused to give the worker the voice (403)"


class VoiceChanged(TransientError):
    code = "voice_changed"
    meaning = "the voice clip was replaced while the worker read it; the next attempt reads the new one"


# --- running the job ----------------------------------------------------------------------


class ModelNotFound(PermanentError):
    code = "model_not_found"
    meaning = "the manifest's model is not on the worker's volume; the message names the models that are"


class CheckUnavailable(PermanentError):
    code = "check_unavailable"
    meaning = ("the manifest asks for a listening check (check, max_wer) and the worker has no ASR model; seed one "
               "with `f5-batch seed --asr`")


class CheckFailed(PermanentError):
    code = "check_failed"
    meaning = ("the listening check heard a text chunk differ from its text by more than max_wer in every take "
               "(F5B_CHECK_ATTEMPTS); \"on_check_fail\": \"keep\" keeps the best take instead")


class JobTimeout(PermanentError):
    code = "job_timeout"
    meaning = "the job ran past F5B_JOB_TIMEOUT_S"


class OutOfMemory(TransientError):
    code = "out_of_memory"
    meaning = "the accelerator ran out of memory, even for this job alone, on every attempt"


class ProcessingDiskFull(TransientError):
    code = "processing_disk_full"
    meaning = ("the processing folder filled up during the job, or had less free space than "
               "F5B_PROCESSING_MIN_FREE_BYTES before it, on every attempt")


class StorageUnavailable(TransientError):
    code = "storage_unavailable"
    meaning = "S3 or SQS kept failing (throttling, 5xx, resets, timeouts) on every attempt"
    retried_per_call = True


class OutboxUnwritable(TransientError):
    """The outbox cannot take a job's files: the job goes back to the inbox and the worker stops taking work."""

    code = "outbox_unwritable"
    meaning = "the outbox folder cannot be written (disk full, read-only, permissions): the job goes back to the inbox"
    where = "log"


class StorageError(PermanentError):
    code = "storage_error"
    meaning = ("S3 refused a read or write for good (e.g. 403 on the outbox), or the job's outbox folder or a file in "
               "it is a symbolic link (nothing is written through it)")


# --- the worker itself --------------------------------------------------------------------


class LeaseLost(PermanentError):
    code = "lease_lost"
    meaning = "another worker took over an S3 inbox lease this worker still held (its heartbeat logs it)"
    where = "log"


class CommandError(F5BatchError):
    """A command cannot go on: it prints one line, what failed and `fix` (what to do), and exits 2."""

    where = "command"

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix


class InvalidConfiguration(CommandError):
    """Settings that cannot work: the worker refuses to start."""

    code = "invalid_configuration"
    meaning = ("a setting that cannot work (unknown inbox scheme, an inbox or outbox path that is not a folder, "
               "overlapping inbox and outbox, bad bucket name, a bad value for a flag or F5B_* variable)")


class AwsUnavailable(CommandError):
    code = "aws_unavailable"
    meaning = ("an S3 or SQS call a command needs failed for good: no credentials or region, a missing bucket or "
               "queue, access denied, an endpoint that does not answer, throttling past the retries")


class StartupCheckFailed(CommandError):
    code = "startup_check_failed"
    meaning = "`f5-batch run`: a start-up check failed before the model loaded (the line names the check and the fix)"


class ModelError(CommandError):
    """The model on the volume is missing or unusable: the worker cannot start."""

    code = "model_unavailable"
    meaning = "the model on the volume is missing, incomplete or damaged"


class AlreadySubmitted(CommandError):
    code = "already_submitted"
    meaning = "`f5-batch submit`: a manifest of that name is already waiting in the inbox"


class VoiceNotUploaded(CommandError):
    code = "voice_not_uploaded"
    meaning = ("`f5-batch submit --queue` without an S3 `--inbox`: the manifest's voice is a file next to it, which "
               "nothing would upload")
