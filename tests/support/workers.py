"""Workers as a user runs them: the real `f5-batch` command in child processes, and the settings of local ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from processor.settings import Settings
from processor.storage.volume import Volume

from tests.support.paths import REPO


def local_settings(tmp: Path, volume: Volume, **fields: Any) -> Settings:
    """A CPU worker on the tiny model with its inbox, outbox and processing folder under `tmp`."""
    return Settings.model_validate({"inbox": str(tmp / "inbox"), "outbox": str(tmp / "outbox"),
                                    "volume": volume.root, "model": "tiny", "device": "cpu",
                                    "processing_dir": tmp / "processing", **fields})


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """The real `f5-batch` command in a child process, as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "processor", *args],
        cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout, check=False,
    )
