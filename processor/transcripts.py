"""Where a voice clip's transcript comes from, in order: the manifest's `voice_text`, a sidecar file next to the
clip (`voices/narrator.wav` → `voices/narrator.txt`), the ASR model on the volume; else `voice_text_required`.

A sidecar is held to the manifest's own rules for `voice_text` (UTF-8, at most 2,000 characters, no control or
bidi characters), since it stands in for that field.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Literal

from processor.errors import VoiceTextRequired, VoiceUnreadable
from processor.manifest import MAX_VOICE_TEXT_CHARS, forbidden_character

Source = Literal["manifest", "sidecar", "asr"]
SIDECAR_SUFFIX = ".txt"
MAX_SIDECAR_BYTES = 4 * MAX_VOICE_TEXT_CHARS  # UTF-8: at most four bytes a character


def sidecar_of(ref: str) -> str:
    """The sidecar's reference for the clip `ref`: the same path (or s3:// URL) with `.txt` for its suffix."""
    if "://" in ref:
        scheme, _, path = ref.partition("://")
        return f"{scheme}://{PurePosixPath(path).with_suffix(SIDECAR_SUFFIX)}"
    return str(PurePosixPath(ref).with_suffix(SIDECAR_SUFFIX))


def read_sidecar(ref: str, body: bytes) -> str | None:
    """The transcript in a sidecar's bytes; None when it holds only whitespace (then the next source is tried)."""
    if len(body) > MAX_SIDECAR_BYTES:
        raise VoiceUnreadable(f"transcript {ref!r} is over {MAX_SIDECAR_BYTES} bytes; a voice_text holds at most "
                              f"{MAX_VOICE_TEXT_CHARS} characters")
    try:
        text = body.removeprefix(b"\xef\xbb\xbf").decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise VoiceUnreadable(f"transcript {ref!r} is not UTF-8 text (byte {exc.start})") from exc
    if len(text) > MAX_VOICE_TEXT_CHARS:
        raise VoiceUnreadable(f"transcript {ref!r} is {len(text)} characters; the limit is {MAX_VOICE_TEXT_CHARS}")
    if (found := forbidden_character(text)) is not None:
        raise VoiceUnreadable(f"transcript {ref!r} {found}")
    return text or None


def required(voice: str) -> VoiceTextRequired:
    return VoiceTextRequired(
        f"voice {voice!r} has no transcript: give \"voice_text\" in the manifest, put it in {sidecar_of(voice)!r} "
        f"next to the clip, or seed an ASR model on the volume (f5-batch seed --asr) so the worker transcribes it")
