"""Manifest bodies in the example voice, and a local inbox to drop them into."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.paths import VOICE, VOICE_TEXT


def manifest(text: str = "Hello there. This is a test.", **fields: Any) -> dict[str, Any]:
    """A valid manifest in the example voice (`voices/narrator.wav` of the inbox), with `fields` added or replaced."""
    return {"text": text, "voice": "voices/narrator.wav", "voice_text": VOICE_TEXT, **fields}


def write_manifest(folder: Path, name: str, data: dict[str, Any] | str | bytes) -> Path:
    """`folder/<name>.json` holding `data`: a dict as JSON, a str or bytes as they are."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def inbox_with_voice(tmp: Path) -> Path:
    """`tmp/inbox` holding the example voice, as manifests from `manifest()` expect it."""
    inbox = tmp / "inbox"
    (inbox / "voices").mkdir(parents=True)
    (inbox / "voices" / "narrator.wav").write_bytes(VOICE.read_bytes())
    return inbox
