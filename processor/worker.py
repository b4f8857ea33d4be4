"""The worker: the job's life (`job.py`) driven by the pipeline (`pipeline.py`) over one inbox, outbox and model."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from processor.errors import F5BatchError
from processor.health import HealthReporter, StatusServer, metrics_address
from processor.job import Context, Job, life
from processor.leases import HeldLease
from processor.listening import Listening
from processor.logs import logger
from processor.metrics import Metrics
from processor.models import Models
from processor.outcomes import Attempts, Origin, Outcome, Released, Tally
from processor.outputs import Outputs
from processor.pipeline import Pipeline, Prefetch, Stages
from processor.rendering import Work
from processor.settings import Settings
from processor.shutdown import Shutdown
from processor.storage import Inbox, Lease, Outbox, VoiceSource
from processor.storage.markers import Markers
from processor.storage.workdir import WorkDir
from processor.synthesis import Speech, Synthesizer
from processor.transcription import Transcriber
from processor.voices import PreparedVoices, Voices


class Reporting(contextlib.ExitStack):
    """The health file and status server of a run, and where its metrics are served (None: no port)."""

    metrics_url: str | None = None


@dataclass
class Worker:
    inbox: Inbox
    outbox: Outbox
    voices: VoiceSource
    markers: Markers
    models: Models  # loaded on first use; the default (F5B_MODEL) is loaded at start-up
    workdir: WorkDir
    settings: Settings
    heartbeat_s: float = field(default=0.0)  # 0: the settings' (a third of the lease)
    prepared: PreparedVoices = field(default_factory=PreparedVoices)
    transcriber: Transcriber | None = None  # the volume's ASR model, loaded on the first job that needs it
    metrics: Metrics = field(default_factory=Metrics)
    health_path: Path | None = None  # the file `f5-batch health` reads; None: not written
    exited_idle: bool = False
    trouble: str | None = None  # why the worker stopped before its work was done: `run` exits non-zero
    tally: Tally = field(default_factory=Tally)  # how the jobs of the last run ended: `run` exits non-zero if left

    @property
    def identity(self) -> str:
        return self.workdir.identity

    def run(self, *, once: bool, shutdown: Shutdown | None = None) -> int:
        """Process manifests until the inbox is empty (`once`), forever, idle too long or a stop; returns jobs taken."""
        shutdown = shutdown or Shutdown(grace_s=0)
        taken: list[Job] = []
        self.tally = Tally()
        settings = self.settings
        ctx = self._context()
        stages = Stages(claim=partial(self._claim, once, shutdown, taken), live=partial(life, ctx=ctx),
                        synthesize=self._synthesize, end=partial(self._end, ctx, shutdown),
                        put_back=partial(self._put_back, ctx, shutdown), model_of=lambda work: work.model,
                        loaded=lambda model: self.models.is_loaded(str(model)))
        default = self.models.get(self.models.default)
        prefetch = Prefetch(max(1, default.max_batch), settings.prefetch, settings.lease_s)
        pipeline = Pipeline(stages, shutdown, prefetch, settings.exit_when_idle_s)
        try:
            with self._reporting(pipeline) as reporting:
                self._ready(reporting.metrics_url, default)
                del default  # held here, it could not be unloaded for another model
                pipeline.run()
        finally:
            shutdown.cancel()
        self.exited_idle = pipeline.exited_idle
        if pipeline.intake_error is not None and self.trouble is None:
            self.trouble = f"intake stopped: {pipeline.intake_error!r}"
        return len(taken)

    def _context(self) -> Context:
        return Context(outputs=Outputs(self.outbox), markers=self.markers,
                       voices=Voices(self.voices, self.prepared, self.transcriber), workdir=self.workdir,
                       listening=Listening(self.transcriber, self.settings.check, self.settings.check_attempts,
                                           self.metrics), models=self.models,
                       attempts=Attempts.from_settings(self.settings),
                       min_free_bytes=self.settings.processing_min_free_bytes, loudness=self.settings.loudness)

    def _ready(self, metrics_url: str | None, default: Synthesizer) -> None:
        """One line saying what the worker waits on, once it can take work: where an operator looks first."""
        settings = self.settings
        source = f"queue {settings.queue} (inbox {settings.inbox})" if settings.queue else f"inbox {settings.inbox}"
        model, device = default.model_name, default.device
        metrics = f"metrics at {metrics_url}" if metrics_url else "no metrics port"
        asr = self.transcriber.model_name if self.transcriber else None
        logger.info(f"ready: taking jobs from {source}, results to outbox {settings.outbox}; model {model} on "
                    f"{device}; ASR {asr or 'none (voices need a transcript)'}; {metrics}",
                    extra={"stage": "ready", "inbox": settings.inbox, "queue": settings.queue,
                           "outbox": settings.outbox, "model": model, "device": device, "asr": asr,
                           "metrics": metrics_url, "worker": self.identity})

    def _reporting(self, pipeline: Pipeline[Job]) -> Reporting:
        """The health file and the status port, for as long as the worker runs."""
        stack = Reporting()
        reporter = HealthReporter(self.health_path or Path(os.devnull), lambda: pipeline.busy_since,
                                  stuck_after_s=self.settings.job_timeout_s + 60)
        if self.health_path is not None:
            stack.enter_context(reporter)
        if self.settings.metrics_port:
            host = metrics_address(self.settings.metrics_bind)
            server = stack.enter_context(StatusServer(self.settings.metrics_port, self.metrics, reporter, host))
            stack.metrics_url = f"http://{host}:{server.port}/metrics"
        return stack

    def _claim(self, once: bool, shutdown: Shutdown, taken: list[Job]) -> list[Job]:
        """From its claim on, a lease is kept alive, and released if the worker must leave mid-job."""
        leases = self.inbox.claim(once=once, stop=shutdown.requested)
        if shutdown.requested.is_set():  # a claim that completed after a stop is given back at once
            for lease in leases:
                lease.release()
            return []
        heartbeat_s = self.heartbeat_s or self.settings.heartbeat_s
        jobs = [Job(HeldLease(lease, heartbeat_s, shutdown), self.settings.job_timeout_s) for lease in leases]
        for job in jobs:
            self.metrics.job_started()
            self.tally.took(job)
        taken.extend(jobs)
        return jobs

    def _synthesize(self, works: list[Work]) -> list[list[Speech] | F5BatchError]:
        """One call to the synthesizer for all ready jobs, of one model (the pipeline never mixes them); a job
        whose request fails fails alone."""
        try:
            synthesizer = self.models.get(works[0].model)
        except Exception as exc:  # the pipeline hands each job the error (a model error on the volume: no code)
            raise F5BatchError(f"model {works[0].model} could not be loaded: {exc}") from exc
        requests = [request for work in works for request in work.requests]
        logger.info(f"synthesizing {len(works)} job(s)", extra={"stage": "synthesizing", "batch": len(works),
                                                                "requests": len(requests), "model": works[0].model})
        started = time.monotonic()
        rendered = iter(synthesizer.synthesize_batch(requests))
        seconds = time.monotonic() - started
        speeches: list[list[Speech] | F5BatchError] = []
        for work in works:
            mine = [next(rendered) for _ in work.requests]
            failed = next((each for each in mine if isinstance(each, F5BatchError)), None)
            speeches.append(failed or [Speech(each, synthesizer.sample_rate, len(works), started, seconds)
                                       for each in mine if not isinstance(each, F5BatchError)])
        return speeches

    def _end(self, ctx: Context, shutdown: Shutdown, job: Job, outcome: Outcome) -> float | None:
        """Settle the job's outcome, once. A number: run the job again after that long, the lease kept."""
        again_s = outcome.again_after_s()
        if again_s is None:
            job.held.end(partial(self._settle, ctx, shutdown, outcome))
            return None
        outcome.announce()
        if outcome.retried:  # a deferral behind another worker uses no attempt
            self.metrics.retried()
            job.attempt += 1
        return again_s

    def _settle(self, ctx: Context, shutdown: Shutdown, outcome: Outcome, lease: Lease) -> None:
        """Under the lease's once-lock: nothing is said or counted for a lease the abandon released first.

        What is counted is how the lease really ended: a job whose result could not be written is not a success.
        """
        outcome.announce()
        origin = Origin(model=outcome.job.model or self.models.default, worker=self.identity)
        ended = outcome.settle(lease, ctx.outputs, origin, heed=partial(self._heed, shutdown))
        if ended.retried:
            self.metrics.retried()
        ended.count(self.metrics)
        self.tally.ended(ended)

    def _heed(self, shutdown: Shutdown, ended: Outcome) -> None:
        """A fault of the worker's own (its outbox): take no more work, as at a stop; what is held and not started
        goes back to the inbox, and `run` exits non-zero saying why."""
        trouble = ended.trouble()
        if trouble is None:
            return
        if self.trouble is None:
            self.trouble = trouble
        shutdown.requested.set()

    def _put_back(self, ctx: Context, shutdown: Shutdown, job: Job) -> None:
        self._end(ctx, shutdown, job, Released(job))
