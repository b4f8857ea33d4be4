"""The error tree the worker branches on.

`PermanentError`: the job itself is wrong (bad manifest, missing voice). Fail it
now with its code, never retry. `TransientError`: the world is briefly wrong
(network, throttling, out of memory). Retry with backoff. Every error that
reaches a user carries a stable `code`; codes are part of the outbox contract.
"""

from __future__ import annotations


class F5BatchError(Exception):
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class PermanentError(F5BatchError):
    """Bad input: this job fails, the worker carries on."""

    code = "invalid_manifest"


class TransientError(F5BatchError):
    """Worth another attempt after a backoff."""

    code = "transient_error"


class ModelError(F5BatchError):
    """The model on the volume is missing or unusable: the worker cannot start."""

    code = "model_unavailable"


class InvalidJson(PermanentError):
    code = "invalid_json"


class InvalidManifest(PermanentError):
    code = "invalid_manifest"


class VoiceNotFound(PermanentError):
    code = "voice_not_found"


class VoiceUnreadable(PermanentError):
    code = "voice_unreadable"


class VoiceTextRequired(PermanentError):
    code = "voice_text_required"


class TextUnusable(PermanentError):
    """The text has nothing the model can speak once chunked."""

    code = "text_unusable"


class InvalidMessage(PermanentError):
    """A queue message the worker does not understand: retrying it cannot help."""

    code = "invalid_message"


class VoiceNotAllowed(PermanentError):
    """The voice reference points outside where voices may come from (`..`, absolute path, URL)."""

    code = "voice_not_allowed"


class VoiceTooLarge(PermanentError):
    """The voice file is over the byte limit (`F5B_VOICE_MAX_BYTES`)."""

    code = "voice_too_large"


class VoiceTooLong(PermanentError):
    """The voice clip is longer than the worker accepts (`audio.MAX_VOICE_S`)."""

    code = "voice_too_long"
