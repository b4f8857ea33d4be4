"""Wiring: turn one Settings object into a ready worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from processor.health import health_file
from processor.logs import logger
from processor.metrics import Metrics, cuda_memory
from processor.models import Models, adopting, default_load
from processor.schemes import open_storage
from processor.settings import Settings
from processor.storage.local import worker_identity
from processor.storage.sqs import SqsInbox
from processor.storage.volume import Volume
from processor.storage.workdir import WorkDir
from processor.synthesis import Synthesizer
from processor.transcription import load_transcriber
from processor.worker import Worker

if TYPE_CHECKING:
    from processor.synthesis import F5Synthesizer


def load_synthesizer(settings: Settings) -> Synthesizer:
    """The worker's default model (`settings.model`), loaded at start-up and logged as part of it."""
    synthesizer = open_synthesizer(settings, settings.model)
    model = synthesizer.model
    logger.info(
        f"model {model.name} loaded on {model.device} in {model.timings.total_s:.1f} s",
        extra={"stage": "startup", "model": model.name, "device": model.device, "dtype": str(model.dtype),
               **model.timings.as_dict()},
    )
    return synthesizer


def open_synthesizer(settings: Settings, name: str) -> F5Synthesizer:
    """The model folder `name` of the volume, loaded on `settings.device`: what `Models` loads a model with."""
    volume = Volume(settings.volume)
    # Before torch or huggingface_hub are imported: caches on the volume, no hub at run time.
    volume.apply_cache_environment(offline=True)
    from processor.model import load_model
    from processor.synthesis import F5Synthesizer

    model = load_model(volume.model(name), settings.device)
    if model.random_weights:
        logger.warning(f"model {model.name} has random weights: it produces noise, not speech",
                       extra={"stage": "startup"})
    return F5Synthesizer(model, max_batch=settings.max_batch or default_max_batch(model.device))


def default_max_batch(device: str) -> int:
    """On CPU a batch is slower than its items one by one (see the README's benchmarks); a GPU is mostly idle at 1."""
    return 16 if device.startswith("cuda") else 1


def build_worker(settings: Settings, synthesizer: Synthesizer | None = None) -> Worker:
    """The worker `settings` describe; `synthesizer` reuses a loaded model (benchmarks build several workers)."""
    workdir = WorkDir(settings.processing_dir, worker_identity())
    workdir.prepare()
    storage = open_storage(settings, workdir)
    synthesizer = synthesizer or load_synthesizer(settings)
    depth = storage.inbox.depth if isinstance(storage.inbox, SqsInbox) else None
    device = synthesizer.device
    metrics = Metrics(queue_depth=depth, accelerator_memory=cuda_memory(device), model=synthesizer.model_name,
                      device=device)
    volume = Volume(settings.volume)
    models = Models(settings, volume, load=adopting(settings.model, synthesizer, default_load(settings)),
                    metrics=metrics)
    models.get(settings.model)  # the start-up model: the first load the metrics count
    return Worker(
        inbox=storage.inbox,
        outbox=storage.outbox,
        voices=storage.voices,
        markers=storage.markers,
        models=models,
        workdir=workdir,
        settings=settings,
        metrics=metrics,
        health_path=health_file(settings.processing_dir, workdir.identity),
        transcriber=load_transcriber(volume, settings.asr_model, device),
    )
