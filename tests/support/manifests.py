"""Manifest bodies in the example voice, and a local inbox to drop them into."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tests.support.paths import VOICE, VOICE_TEXT


def manifest(text: str = "Hello there. This is a test.", **fields: Any) -> dict[str, Any]:
    """A valid manifest in the example voice (`voices/narrator.wav` of the inbox), with `fields` added or replaced."""
    return {"text": text, "voice": "voices/narrator.wav", "voice_text": VOICE_TEXT, **fields}


COPIED_AGO_S = 60.0  # well past the worker's settle delay (F5B_SETTLE_S, 2 s)


def write_manifest(folder: Path, name: str, data: dict[str, Any] | str | bytes) -> Path:
    """`folder/<name>.json` holding `data`: a dict as JSON, a str or bytes as they are.

    Dated `COPIED_AGO_S` back, as a manifest copied in before the run: a worker started right after takes it at
    once instead of waiting for it to settle. Tests of settling write their files themselves.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data))
    then = time.time() - COPIED_AGO_S
    os.utime(path, (then, then))
    return path


def inbox_with_voice(tmp: Path) -> Path:
    """`tmp/inbox` holding the example voice, as manifests from `manifest()` expect it."""
    inbox = tmp / "inbox"
    (inbox / "voices").mkdir(parents=True)
    (inbox / "voices" / "narrator.wav").write_bytes(VOICE.read_bytes())
    return inbox
