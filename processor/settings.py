"""All configuration in one object: command-line flags over `F5B_*` environment variables over defaults.

Built once at the entry point and passed down; nothing deeper reads the environment.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from processor.loudness import LOUDNESS_DESCRIPTION, LoudnessValue
from processor.storage.volume import default_volume


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="F5B_", extra="forbid")

    inbox: str = Field("inbox", description="Inbox: a folder, or s3://bucket/prefix/.")
    outbox: str = Field("outbox", description="Outbox: a folder, or s3://bucket/prefix/.")
    queue: str | None = Field(None, description="SQS queue URL to take jobs from (instead of polling the inbox).")
    volume: Path = Field(
        default_factory=default_volume,
        description="Persistent volume with models and caches (/runpod-volume if mounted, else ./volume).",
    )
    model: str = Field("F5TTS_v1_Base", description="Model folder name under <volume>/models/ (a manifest's "
                       "\"model\" picks another).")
    max_models: int = Field(2, ge=1, le=16, description="Models kept loaded at once on CPU; on a GPU the limit "
                            "is F5B_MODEL_MEMORY_BYTES.")
    model_memory_bytes: int = Field(
        0, ge=0, description="GPU memory the loaded models may use (0: 60% of the memory free after the first).")
    asr_model: str = Field(
        "whisper-large-v3-turbo", min_length=1,
        description="Speech-recognition model folder under <volume>/asr/ (seeded with `f5-batch seed --asr`).",
    )
    check: bool = Field(False, description="Listening check on every job (a manifest's \"check\" wins); needs ASR.")
    check_attempts: int = Field(
        2, ge=1, le=10, description="Takes of a text chunk the listening check may hear, the first included."
    )
    processing_dir: Path = Field(
        Path(tempfile.gettempdir()) / "f5-batch", description="Scratch folder for job files, emptied after each job."
    )
    loudness: LoudnessValue | None = Field(
        None, description=LOUDNESS_DESCRIPTION.replace("of the output", "of every job's output") + " A manifest's "
        "\"loudness\" wins; unset: the audio as made.")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    max_attempts: int = Field(
        3, ge=1, le=20, description="Attempts the worker makes at a job from a folder or S3 inbox that fails "
        "transiently (a queue redelivers instead)."
    )
    retry_initial_s: float = Field(
        1.0, ge=0.0, description="Pause before a job's second attempt, seconds (doubles, with jitter)."
    )
    retry_max_s: float = Field(30.0, ge=0.0, description="Longest single retry backoff in seconds.")
    claim_stale_s: float = Field(
        600.0, gt=0.0, description="A local claim by another host untouched this long is returned to the inbox."
    )
    settle_s: float = Field(
        2.0, ge=0.0, description="A local manifest is taken once unchanged this long, seconds: a copy still "
        "writing it is waited for."
    )
    s3_path_style: bool = Field(False, description="Path-style S3 addressing, for S3-compatible stores.")
    voice_buckets: str = Field("", description="Comma-separated buckets voices may come from (default: the inbox's).")
    voice_max_bytes: int = Field(50 * 2**20, gt=0, description="Largest voice file accepted, in bytes.")
    voice_cache_bytes: int = Field(512 * 2**20, ge=0, description="Cap of the voice download cache, in bytes.")
    lease_s: int = Field(300, ge=5, le=43200, description="S3 lease and SQS visibility per extension, seconds.")
    poll_s: float = Field(5.0, gt=0.0, description="Pause between scans of an S3 inbox that had nothing to claim.")
    receive_wait_s: int = Field(20, ge=0, le=20, description="SQS long-poll wait; --once exits after an empty one.")
    receive_batch: int = Field(1, ge=1, le=10, description="SQS messages taken per receive.")
    max_receives: int = Field(5, ge=1, description="Deliveries before giving up, if the queue has no redrive policy.")
    redelivery_base_s: float = Field(10.0, ge=0.0, description="Backoff before a transient failure is redelivered.")
    aws_connect_timeout_s: float = Field(5.0, gt=0.0, description="S3/SQS connect timeout, seconds.")
    aws_read_timeout_s: float = Field(
        30.0, gt=0.0, description="S3/SQS read timeout, seconds (SQS gets at least the long-poll wait plus 5)."
    )
    aws_max_attempts: int = Field(6, ge=1, le=20, description="Attempts per S3/SQS call for transient errors.")
    aws_retry_total_s: float = Field(60.0, gt=0.0, description="Longest time spent retrying one S3/SQS call.")
    job_timeout_s: float = Field(1800.0, gt=0.0, description="A job still running after this long fails.")
    processing_min_free_bytes: int = Field(
        256 * 2**20, ge=0, description="Free space the processing folder needs before a job gets its scratch folder."
    )
    shutdown_grace_s: float = Field(
        25.0, ge=0.0, description="On SIGTERM, time to finish the job in hand before releasing it and exiting."
    )
    prefetch: int = Field(
        2, ge=0, le=64, description="Jobs claimed and made ready ahead of the ones synthesizing (bounded by the lease)."
    )
    max_batch: int = Field(
        0, ge=0, le=256, description="Jobs per synthesis call; 0: 1 on CPU, 16 on a GPU (fewer if memory is short)."
    )
    exit_when_idle_s: float = Field(
        0.0, ge=0.0, description="Exit 0 after this many seconds without a job (0: never): a stopped pod stops billing."
    )
    metrics_port: int = Field(0, ge=0, le=65535, description="Serve /healthz and Prometheus /metrics here (0: off).")
    metrics_bind: str = Field(
        "auto", min_length=1, description="Address the metrics port listens on; auto: all interfaces in a container, "
        "else 127.0.0.1."
    )
    log_format: Literal["json", "text"] = Field("json", description="json: one object per line; text: for people.")

    @property
    def heartbeat_s(self) -> float:
        """How often a held lease is extended: three beats per lease, so one lost beat loses nothing."""
        return self.lease_s / 3

    @classmethod
    def default(cls, name: str) -> Any:
        """A setting's default, for the places that need it outside a Settings object (command-line defaults)."""
        return cls.model_fields[name].default
