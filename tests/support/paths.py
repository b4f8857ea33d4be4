"""Where the repository, the example manifests and the example voice are."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "manifests" / "examples"
VOICE = EXAMPLES / "voices" / "narrator.wav"
VOICE_TEXT = (EXAMPLES / "voices" / "narrator.txt").read_text().strip()
