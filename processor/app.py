"""Wiring: turn one Settings object into a ready worker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processor.aws import S3Location, is_s3_url, make_client
from processor.errors import F5BatchError
from processor.health import health_file
from processor.logs import logger
from processor.metrics import Metrics, cuda_memory
from processor.retries import CallRetry
from processor.settings import Settings
from processor.storage import Inbox, Outbox, VoiceSource
from processor.storage.local import LocalInbox, LocalOutbox, LocalVoices, worker_identity
from processor.storage.s3 import S3Outbox, S3Voices
from processor.storage.s3_inbox import S3Inbox
from processor.storage.sqs import SqsInbox
from processor.storage.voice_cache import VoiceCache
from processor.storage.volume import Volume
from processor.storage.workdir import WorkDir
from processor.synthesis import Synthesizer
from processor.worker import RetryPolicy, Worker


@dataclass(frozen=True)
class Storage:
    inbox: Inbox
    outbox: Outbox
    voices: VoiceSource


def call_retry(settings: Settings) -> CallRetry:
    return CallRetry(max_attempts=settings.aws_max_attempts, total_s=settings.aws_retry_total_s)


def check_no_loop(settings: Settings) -> None:
    """An outbox inside the inbox prefix would feed every result back in as a new job."""
    if is_s3_url(settings.inbox) and is_s3_url(settings.outbox):
        inbox, outbox = S3Location.parse(settings.inbox), S3Location.parse(settings.outbox)
        if inbox.bucket == outbox.bucket and (
            outbox.prefix.startswith(inbox.prefix) or inbox.prefix.startswith(outbox.prefix)
        ):
            raise F5BatchError(
                f"outbox {settings.outbox} overlaps inbox {settings.inbox}: results would be taken as new jobs",
                code="invalid_configuration",
            )


def build_storage(settings: Settings, workdir: WorkDir, identity: str) -> Storage:
    check_no_loop(settings)
    retry = call_retry(settings)
    s3: Any = (make_client("s3", path_style=settings.s3_path_style, connect_timeout_s=settings.aws_connect_timeout_s,
                           read_timeout_s=settings.aws_read_timeout_s) if _uses_s3(settings) else None)
    return Storage(
        inbox=_inbox(settings, s3, retry, identity),
        outbox=(S3Outbox(s3, S3Location.parse(settings.outbox), retry) if is_s3_url(settings.outbox)
                else LocalOutbox(Path(settings.outbox))),
        voices=_voices(settings, s3, retry, workdir),
    )


def _uses_s3(settings: Settings) -> bool:
    return bool(settings.queue) or is_s3_url(settings.inbox) or is_s3_url(settings.outbox)


def _inbox(settings: Settings, s3: Any, retry: CallRetry, identity: str) -> Inbox:
    if settings.queue:
        buckets = frozenset({S3Location.parse(settings.inbox).bucket}) if is_s3_url(settings.inbox) else None
        sqs = make_client("sqs", connect_timeout_s=settings.aws_connect_timeout_s,
                          read_timeout_s=max(settings.aws_read_timeout_s, settings.receive_wait_s + 5))
        return SqsInbox(sqs, s3, settings.queue, retry, lease_s=settings.lease_s,
                        wait_s=settings.receive_wait_s, batch=settings.receive_batch,
                        retry_base_s=settings.redelivery_base_s, max_receives=settings.max_receives,
                        manifest_buckets=buckets)
    if is_s3_url(settings.inbox):
        return S3Inbox(s3, S3Location.parse(settings.inbox), retry, lease_s=settings.lease_s,
                       poll_s=settings.poll_s, identity=identity)
    return LocalInbox(Path(settings.inbox), stale_after_s=settings.claim_stale_s, identity=identity)


def _voices(settings: Settings, s3: Any, retry: CallRetry, workdir: WorkDir) -> VoiceSource:
    if not is_s3_url(settings.inbox) and not settings.voice_buckets:
        return LocalVoices(Path(settings.inbox), max_bytes=settings.voice_max_bytes)
    default_bucket = S3Location.parse(settings.inbox).bucket if is_s3_url(settings.inbox) else ""
    allowed = {b.strip() for b in settings.voice_buckets.split(",") if b.strip()} or {default_bucket}
    cache = VoiceCache(workdir.mine / "voice-cache", settings.voice_cache_bytes)
    return S3Voices(s3, default_bucket, frozenset(allowed), settings.voice_max_bytes, cache, retry)


def load_synthesizer(settings: Settings) -> Synthesizer:
    volume = Volume(settings.volume)
    # Before torch or huggingface_hub are imported: caches on the volume, no hub at run time.
    volume.apply_cache_environment(offline=True)
    from processor.model import load_model
    from processor.synthesis import F5Synthesizer

    model = load_model(volume.model(settings.model), settings.device)
    logger.info(
        f"model {model.name} loaded on {model.device} in {model.timings.total_s:.1f} s",
        extra={"stage": "startup", "model": model.name, "device": model.device, "dtype": str(model.dtype),
               **model.timings.as_dict()},
    )
    if model.random_weights:
        logger.warning(f"model {model.name} has random weights: it produces noise, not speech",
                       extra={"stage": "startup"})
    return F5Synthesizer(model, max_batch=settings.max_batch or default_max_batch(model.device))


def default_max_batch(device: str) -> int:
    """On CPU a batch is slower than its items one by one (see the README's benchmarks); a GPU is mostly idle at 1."""
    return 16 if device.startswith("cuda") else 1


def build_worker(settings: Settings, synthesizer: Synthesizer | None = None) -> Worker:
    """The worker `settings` describe; `synthesizer` reuses a loaded model (benchmarks build several workers)."""
    identity = worker_identity()
    workdir = WorkDir(settings.processing_dir, identity)
    workdir.prepare()
    storage = build_storage(settings, workdir, identity)
    synthesizer = synthesizer or load_synthesizer(settings)
    return Worker(
        inbox=storage.inbox,
        outbox=storage.outbox,
        voices=storage.voices,
        synthesizer=synthesizer,
        workdir=workdir,
        retry=RetryPolicy(settings.max_attempts, settings.retry_initial_s, settings.retry_max_s),
        identity=identity,
        heartbeat_s=settings.lease_s / 3,
        job_timeout_s=settings.job_timeout_s,
        min_free_bytes=settings.processing_min_free_bytes,
        prefetch=settings.prefetch,
        lease_s=settings.lease_s,
        metrics=Metrics(queue_depth=storage.inbox.depth if isinstance(storage.inbox, SqsInbox) else None,
                        accelerator_memory=cuda_memory(synthesizer.device)),
        exit_when_idle_s=settings.exit_when_idle_s,
        health_path=health_file(settings.processing_dir),
        metrics_port=settings.metrics_port,
    )
