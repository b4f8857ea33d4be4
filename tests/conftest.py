"""Shared fixtures: a tiny model on a volume, the example voice, and the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from processor.seeding.random_models import build_tiny
from processor.settings import Settings
from processor.storage.volume import ModelFolder, Volume

pytest_plugins = ["aws_servers"]  # loopback moto and SeaweedFS servers, started once per session

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "manifests" / "examples"
VOICE = EXAMPLES / "voices" / "narrator.wav"
VOICE_TEXT = (EXAMPLES / "voices" / "narrator.txt").read_text().strip()


@pytest.fixture(scope="session")
def tiny_volume(tmp_path_factory: pytest.TempPathFactory) -> Volume:
    volume = Volume(tmp_path_factory.mktemp("volume"))
    folder = volume.model("tiny")
    build_tiny(folder)
    folder.write_checksums()
    return volume


@pytest.fixture(scope="session")
def tiny_model(tiny_volume: Volume) -> ModelFolder:
    return tiny_volume.model("tiny")


def write_manifest(folder: Path, name: str, data: dict[str, Any] | str | bytes) -> Path:
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


def local_settings(tmp: Path, volume: Volume, **fields: Any) -> Settings:
    """A CPU worker on the tiny model with its inbox, outbox and processing folder under `tmp`."""
    return Settings.model_validate({"inbox": str(tmp / "inbox"), "outbox": str(tmp / "outbox"),
                                    "volume": volume.root, "model": "tiny", "device": "cpu",
                                    "processing_dir": tmp / "processing", **fields})


def manifest(text: str = "Hello there. This is a test.", **fields: Any) -> dict[str, Any]:
    return {"text": text, "voice": "voices/narrator.wav", "voice_text": VOICE_TEXT, **fields}


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """The real `f5-batch` command in a child process, as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "processor", *args],
        cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout, check=False,
    )
