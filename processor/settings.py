"""All configuration in one object: command-line flags over `F5B_*` environment variables over defaults.

Built once at the entry point and passed down; nothing deeper reads the environment.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from processor.storage.volume import default_volume


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="F5B_", extra="forbid")

    inbox: str = Field("inbox", description="Inbox folder the worker takes manifests from.")
    outbox: str = Field("outbox", description="Outbox folder the worker writes results to.")
    volume: Path = Field(
        default_factory=default_volume,
        description="Persistent volume with models and caches (/runpod-volume if mounted, else ./volume).",
    )
    model: str = Field("F5TTS_v1_Base", description="Model folder name under <volume>/models/.")
    processing_dir: Path = Field(
        Path(tempfile.gettempdir()) / "f5-batch", description="Scratch folder for job files, emptied after each job."
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    max_attempts: int = Field(3, ge=1, le=20, description="Attempts per job for transient failures.")
    retry_initial_s: float = Field(1.0, ge=0.0, description="First retry backoff in seconds (doubles, with jitter).")
    retry_max_s: float = Field(30.0, ge=0.0, description="Longest single retry backoff in seconds.")
    claim_stale_s: float = Field(
        600.0, gt=0.0, description="A local claim by another host untouched this long is returned to the inbox."
    )
    log_format: Literal["json", "text"] = Field("json", description="json: one object per line; text: for people.")
