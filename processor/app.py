"""Wiring: turn one Settings object into a ready worker."""

from __future__ import annotations

from pathlib import Path

from processor.logs import logger
from processor.settings import Settings
from processor.storage.local import LocalInbox, LocalOutbox, LocalVoices, worker_identity
from processor.storage.volume import Volume
from processor.storage.workdir import WorkDir
from processor.worker import RetryPolicy, Worker


def build_worker(settings: Settings) -> Worker:
    volume = Volume(settings.volume)
    # Before torch or huggingface_hub are imported: caches on the volume, no hub at run time.
    volume.apply_cache_environment(offline=True)
    from processor.model import load_model
    from processor.synthesis import F5Synthesizer

    model = load_model(volume.model(settings.model), settings.device)
    logger.info(
        f"model {model.name} loaded on {model.device}",
        extra={"stage": "startup", "model": model.name, "device": model.device, "dtype": str(model.dtype)},
    )
    if model.random_weights:
        logger.warning(f"model {model.name} has random weights: it produces noise, not speech",
                       extra={"stage": "startup"})
    workdir = WorkDir(settings.processing_dir)
    workdir.prepare()
    inbox_root = Path(settings.inbox)
    return Worker(
        inbox=LocalInbox(inbox_root, stale_after_s=settings.claim_stale_s),
        outbox=LocalOutbox(Path(settings.outbox)),
        voices=LocalVoices(inbox_root),
        synthesizer=F5Synthesizer(model),
        workdir=workdir,
        retry=RetryPolicy(settings.max_attempts, settings.retry_initial_s, settings.retry_max_s),
        identity=worker_identity(),
    )
