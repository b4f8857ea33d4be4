"""A job's life: claim → read manifest → fetch voice → synthesize → write outputs → ack.

The steps run in three stages (see `pipeline.py`), so that the next jobs' voices
are fetched and the previous jobs' audio uploaded while one synthesizes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from processor.audio import VoicePrompt, encode, prepare_voice, remove_silence
from processor.errors import F5BatchError, PermanentError, TransientError
from processor.health import HealthReporter, StatusServer
from processor.heartbeat import Heartbeat
from processor.logs import JobLog
from processor.manifest import Manifest, parse_manifest, printable, safe_id
from processor.metrics import Metrics
from processor.pipeline import Pipeline
from processor.results import ErrorInfo, Result, Timings, job_key
from processor.shutdown import Shutdown
from processor.storage import Inbox, Lease, Outbox, VoiceSource
from processor.storage.workdir import WorkDir
from processor.synthesis import SynthesisRequest, Synthesizer, check_deadline
from processor.voices import PreparedVoices, voice_key

SKIP = "skip"  # a result exists: acknowledge without running
REDELIVER = "redeliver"  # transient failure with deliveries left: let the source deliver it again
PUT_BACK = "put_back"  # claimed but not started when the worker was told to stop: release it at once
ABANDON_WAIT_S = 2.0  # at abandon, longest wait for a job's heartbeat or its lease's end under way
Outcome = Result | str
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    initial_s: float = 1.0
    max_s: float = 30.0


@dataclass
class Produced:
    """What a successful attempt leaves behind."""

    audio_key: str
    duration_s: float


@dataclass
class Job:
    lease: Lease
    log: JobLog
    manifest: Manifest | None = None
    body: bytes = b""
    timings: Timings = field(default_factory=Timings)
    attempts: int = 0
    started: float = field(default_factory=time.monotonic)
    deadline: float | None = None
    scratch: Path | None = None
    request: SynthesisRequest | None = None
    wave: np.ndarray | None = None
    outcome: Outcome | None = None
    heartbeat: Heartbeat | None = None
    unregister: Callable[[], None] = lambda: None
    ending: threading.Lock = field(default_factory=threading.Lock)
    ended: bool = False

    @property
    def id(self) -> str:
        return self.manifest.job_id if self.manifest else safe_id(self.lease.name)


@dataclass
class Worker:
    """A job's life, over the three stages of `pipeline.py`:

    intake  `_intake`:     claim → manifest → voice (fetched once per voice, see `voices.py`)
    synth   `_synthesize`: the ready jobs, `synthesizer.max_batch` at a time
    output  `_complete`:   audio → log → result (written last) → ack
    """

    inbox: Inbox
    outbox: Outbox
    voices: VoiceSource
    synthesizer: Synthesizer
    workdir: WorkDir
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    identity: str = "worker"
    heartbeat_s: float = 60.0
    job_timeout_s: float = 1800.0
    min_free_bytes: int = 0
    prefetch: int = 2
    lease_s: float = 300.0
    prepared: PreparedVoices = field(default_factory=PreparedVoices)
    metrics: Metrics = field(default_factory=Metrics)
    exit_when_idle_s: float = 0.0
    health_path: Path | None = None  # the file `f5-batch health` reads; None: not written
    metrics_port: int = 0  # 0: no /healthz and /metrics
    exited_idle: bool = False

    def run(self, *, once: bool, shutdown: Shutdown | None = None) -> int:
        """Process manifests until the inbox is empty (`once`), forever, idle too long or a stop; returns jobs taken."""
        shutdown = shutdown or Shutdown(grace_s=0)
        pipeline = Pipeline(self._synthesize, self._complete, self._put_back, shutdown,
                            max_batch=self.synthesizer.max_batch, prefetch=self.prefetch, lease_s=self.lease_s,
                            exit_when_idle_s=self.exit_when_idle_s)
        taken: list[str] = []
        try:
            with self._reporting(pipeline):
                pipeline.run(lambda p: self._take(p, once, shutdown, taken))
        finally:
            shutdown.cancel()
        self.exited_idle = pipeline.exited_idle
        return len(taken)

    def _reporting(self, pipeline: Pipeline[Job]) -> contextlib.ExitStack:
        """The health file and the status port, for as long as the worker runs."""
        stack = contextlib.ExitStack()
        reporter = HealthReporter(self.health_path or Path(os.devnull), lambda: pipeline.busy_since,
                                  stuck_after_s=self.job_timeout_s + 60)
        if self.health_path is not None:
            stack.enter_context(reporter)
        if self.metrics_port:
            stack.enter_context(StatusServer(self.metrics_port, self.metrics, reporter))
        return stack

    def _take(self, pipeline: Pipeline[Job], once: bool, shutdown: Shutdown, taken: list[str]) -> None:
        """The intake thread: claim leases while there is room, until the inbox is empty (`once`) or a stop."""
        leases = self.inbox.leases(once=once, stop=shutdown.requested)
        # At abandon: what the source received but has not handed out yet goes back too.
        forget = shutdown.on_abandon(lambda: leases.close())
        try:
            while pipeline.wait_for_room():
                in_flight = pipeline.held
                with shutdown.claiming():
                    lease = next(leases, None)
                    if lease is not None and shutdown.requested.is_set():
                        lease.release()
                        return
                    job = None if lease is None else self._claim(lease, pipeline, shutdown)
                if job is None and once and in_flight:
                    # A job in flight while the inbox looked empty may have gone back to it: look again.
                    pipeline.drain()
                    leases.close()
                    leases = self.inbox.leases(once=once, stop=shutdown.requested)
                    continue
                if job is None:
                    return
                taken.append(job.lease.name)
                self._intake(job, pipeline)
        finally:
            forget()
            with shutdown.claiming():  # never alongside abandon's own close of the same generator
                leases.close()  # releases what the source claimed but did not hand out

    def _claim(self, lease: Lease, pipeline: Pipeline[Job], shutdown: Shutdown) -> Job:
        """From here on the lease is kept alive, and released if the worker must leave mid-job."""
        job = Job(lease, JobLog(safe_id(lease.name)))
        job.unregister = shutdown.on_abandon(partial(self._abandon, job))
        pipeline.hold()
        job.log.event("claimed", f"claimed manifest {printable(lease.name, 1024)}")
        job.heartbeat = Heartbeat(lease, self.heartbeat_s).start()
        self.metrics.job_started()
        return job

    def _intake(self, job: Job, pipeline: Pipeline[Job]) -> None:
        """Make the claimed job ready for synthesis."""
        self._guarded(job, self._prepare)
        if job.outcome is None:
            pipeline.to_synthesis(job)
        else:
            pipeline.to_output(job)

    def _prepare(self, job: Job) -> None:
        job.body = job.lease.body
        job.manifest = parse_manifest(job.body, job.lease.name)
        job.log.job = job.id
        if self.outbox.exists(job_key(job.id, "result.json")):
            job.log.event("skipped", "a result for this id exists already; not running it again")
            job.outcome = SKIP
            return
        job.deadline = job.started + self.job_timeout_s
        job.request = self._retried(job, self._fetch_voice)

    def _synthesize(self, jobs: list[Job]) -> None:
        """One call to the synthesizer for all ready jobs; a job that fails fails alone."""
        started = time.monotonic()
        requests = [self._start_clock(job, started) for job in jobs]
        try:
            outcomes: list[np.ndarray | F5BatchError] = self.synthesizer.synthesize_batch(requests)
        except Exception as exc:  # a bug in the batch: every job of it fails alone in _guarded
            outcomes = [F5BatchError(f"unexpected error: {exc!r}")] * len(requests)
        seconds = time.monotonic() - started
        for job, outcome in zip(jobs, outcomes, strict=True):
            job.timings.synth += seconds
            self._guarded(job, partial(self._synthesized, outcome=outcome, batch=len(jobs)))

    def _start_clock(self, job: Job, now: float) -> SynthesisRequest:
        """The time limit counts the job's own work (its fetch, from now on), not its wait for a free synthesizer."""
        assert job.request is not None
        job.deadline = now + self.job_timeout_s - job.timings.fetch
        job.request = replace(job.request, deadline=job.deadline)
        return job.request

    def _synthesized(self, job: Job, outcome: np.ndarray | F5BatchError, batch: int) -> None:
        if isinstance(outcome, TransientError):  # e.g. out of memory even alone: retried alone, with backoff
            job.attempts = max(job.attempts, 1)
            if self.retry.max_attempts <= job.attempts:
                raise outcome
            job.log.event("retry", f"transient failure, retrying: {outcome}", logging.WARNING, attempt=job.attempts)
            self.metrics.retried()
            self._retried(job, self._synthesize_alone, used=job.attempts)
        elif isinstance(outcome, F5BatchError):
            raise outcome
        else:
            self._finish_wave(job, outcome, batch)

    def _synthesize_alone(self, job: Job) -> None:
        assert job.request is not None
        with _timed(job.timings, "synth"):
            wave = self.synthesizer.synthesize(job.request)
        self._finish_wave(job, wave, 1)

    def _complete(self, job: Job) -> None:
        """Write the audio, then end the lease by the job's outcome; runs whatever happened before."""
        try:
            if job.outcome is None:
                self._guarded(job, self._write)
        finally:
            if job.heartbeat is not None:
                job.heartbeat.stop()  # from here on, no beat can extend what the end settles
            if job.scratch is not None:
                self.workdir.remove(job.scratch)
        try:
            _end_once(job, self._end_lease)
        finally:
            job.unregister()

    def _abandon(self, job: Job) -> None:
        """The worker leaves mid-job: release the lease, unless its end (e.g. the result write) is under way."""
        if job.heartbeat is not None:
            job.heartbeat.stop(ABANDON_WAIT_S)  # a beat landing after the release would hide the job again
        _end_once(job, lambda job: job.lease.release(), wait_s=ABANDON_WAIT_S)

    def _end_lease(self, job: Job) -> None:
        self._count(job)
        if job.outcome == SKIP:
            job.lease.ack()
        elif job.outcome == REDELIVER:
            job.lease.retry_later()
        elif job.outcome == PUT_BACK:
            job.log.event("released", "the worker is stopping; the job goes back to the inbox for another worker")
            job.lease.release()
        else:
            assert isinstance(job.outcome, Result)
            self._finish(job, job.outcome)

    def _count(self, job: Job) -> None:
        if isinstance(job.outcome, Result):
            audio_s = job.outcome.duration_s or 0.0
            self.metrics.job_ended(job.outcome.status, job.timings.model_dump(), audio_s)
        else:
            status = {SKIP: "skipped", REDELIVER: "redelivered", PUT_BACK: "released"}
            self.metrics.job_ended(status.get(str(job.outcome), "unknown"))

    def _put_back(self, job: Job) -> None:
        job.outcome = PUT_BACK

    def _guarded(self, job: Job, step: Callable[[Job], None]) -> None:
        """Run one step of the job; any failure becomes the job's outcome, never the worker's."""
        try:
            step(job)
        except TransientError as exc:
            if not job.lease.final_attempt:
                job.log.event("retry_later", f"{exc.message}; the manifest will be delivered again",
                              logging.WARNING, code=exc.code)
                job.outcome = REDELIVER
            else:
                job.outcome = self._result(job, error=exc)
        except F5BatchError as exc:
            job.outcome = self._result(job, error=exc)
        except Exception as exc:  # a bug must fail this one job, never the worker or the queue
            job.log.event("error", "unexpected error", logging.ERROR, exception=repr(exc))
            job.outcome = self._result(job, error=F5BatchError(f"unexpected error: {exc!r}"))

    def _retried(self, job: Job, step: Callable[[Job], T], *, used: int = 0) -> T:
        """Transient failures of one step are retried with backoff, after `used` attempts already spent on it."""
        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self.retry.max_attempts - used),
            wait=wait_exponential_jitter(initial=self.retry.initial_s, max=self.retry.max_s),
            before_sleep=lambda state: self._log_retry(job, state.outcome.exception() if state.outcome else None,
                                                       used + state.attempt_number),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                job.attempts = max(job.attempts, used + attempt.retry_state.attempt_number)
                return step(job)
        raise AssertionError("unreachable: tenacity either returns or reraises")

    def _log_retry(self, job: Job, error: BaseException | None, attempt: int) -> None:
        job.log.event("retry", f"transient failure, retrying: {error or ''}", logging.WARNING, attempt=attempt)
        self.metrics.retried()

    def _fetch_voice(self, job: Job) -> SynthesisRequest:
        manifest = job.manifest
        assert manifest is not None
        with _timed(job.timings, "fetch"):
            voice = self._voice(job, manifest)
        job.log.event("fetched", "voice ready", voice=manifest.voice, voice_s=round(voice.duration_s, 3),
                      seconds=round(job.timings.fetch, 3))
        check_deadline(job.deadline)
        return SynthesisRequest(
            text=manifest.text, voice=voice, seed=manifest.effective_seed, speed=manifest.speed,
            nfe_step=manifest.nfe_step, cfg_strength=manifest.cfg_strength,
            sway_sampling_coef=manifest.sway_sampling_coef, cross_fade=manifest.cross_fade, deadline=job.deadline,
        )

    def _voice(self, job: Job, manifest: Manifest) -> VoicePrompt:
        """The prepared voice: from memory when this clip and transcript were prepared before."""
        identity = self.voices.identity(manifest.voice)
        key = voice_key(identity, manifest.voice_text)
        voice = self.prepared.get(key)
        if voice is None:
            if job.scratch is None:
                self.workdir.ensure_free(self.min_free_bytes)
                job.scratch = self.workdir.create(job.id)
            path = self.voices.fetch(manifest.voice, job.scratch, identity)  # the version the key names
            voice = prepare_voice(path, manifest.voice_text, job.scratch, key=key)
            self.prepared.add(voice)
        return voice

    def _finish_wave(self, job: Job, wave: np.ndarray, batch: int) -> None:
        assert job.manifest is not None
        if job.manifest.remove_silence:
            with _timed(job.timings, "synth"):
                if job.scratch is None:
                    job.scratch = self.workdir.create(job.id)
                wave = remove_silence(wave, self.synthesizer.sample_rate, job.scratch)
        audio_s = len(wave) / self.synthesizer.sample_rate
        job.log.event("synthesized", "audio synthesized", audio_s=round(audio_s, 3), batch=batch,
                      seconds=round(job.timings.synth, 3), rtf=round(job.timings.synth / max(audio_s, 1e-9), 4))
        check_deadline(job.deadline)
        job.wave = wave

    def _write(self, job: Job) -> None:
        if job.wave is None:
            raise F5BatchError("unexpected error: the job reached the output stage without audio")
        check_deadline(job.deadline)
        if self.outbox.exists(job_key(job.id, "result.json")):
            # A redelivered copy of this job finished first: its audio stays as its result describes it.
            raise PermanentError("another worker finished this job first", code="duplicate")
        produced = self._retried(job, self._write_audio)
        job.outcome = self._result(job, produced=produced)

    def _write_audio(self, job: Job) -> Produced:
        assert job.manifest is not None and job.wave is not None
        key = job_key(job.id, f"audio.{job.manifest.format}")
        with _timed(job.timings, "write"):
            self.outbox.put(key, encode(job.wave, self.synthesizer.sample_rate, job.manifest.format))
        job.log.event("written", "audio written", key=key, seconds=round(job.timings.write, 3))
        return Produced(audio_key=key, duration_s=len(job.wave) / self.synthesizer.sample_rate)

    def _result(self, job: Job, *, produced: Produced | None = None, error: F5BatchError | None = None) -> Result:
        manifest = job.manifest
        job.timings.total = time.monotonic() - job.started
        if error is not None:
            level = logging.WARNING if isinstance(error, PermanentError) else logging.ERROR
            job.log.event("failed", error.message, level, code=error.code)
        return Result(
            id=job.id,
            status="succeeded" if produced else "failed",
            audio=produced.audio_key if produced else None,
            audio_uri=self.outbox.uri(produced.audio_key) if produced else None,
            format=manifest.format if manifest else None,
            sample_rate=self.synthesizer.sample_rate if produced else None,
            duration_s=round(produced.duration_s, 6) if produced else None,
            seed=manifest.effective_seed if manifest else None,
            model=self.synthesizer.model_name,
            error=ErrorInfo(code=error.code, message=error.message) if error else None,
            attempts=max(job.attempts, 1),
            timings=Timings(**{k: round(v, 4) for k, v in job.timings.model_dump().items()}),
            manifest_sha256=hashlib.sha256(job.body).hexdigest(),
            manifest=printable(job.lease.name, 1024),
            worker=self.identity,
            finished_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        )

    def _finish(self, job: Job, result: Result) -> None:
        """Log first, result last (consumers wait for result.json), then end the lease."""
        result_key = job_key(job.id, "result.json")
        if self.outbox.exists(result_key):
            job.log.event("duplicate", "a result for this id exists already; kept it", logging.WARNING)
        else:
            job.log.event("finished", f"job {result.status}", status=result.status,
                          seconds=round(result.timings.total, 3))
            self.outbox.put(job_key(job.id, "log.jsonl"), job.log.jsonl())
            if not self.outbox.put_if_absent(result_key, result.json_bytes()):
                job.log.event("duplicate", "another run wrote this id's result first; kept it", logging.WARNING)
        job.lease.ack()


def _end_once(job: Job, end: Callable[[Job], None], wait_s: float = -1) -> None:
    """A lease ends once: by its outcome (output thread) or by the release at abandon, whichever comes first."""
    if not job.ending.acquire(timeout=wait_s):
        return
    try:
        if not job.ended:
            job.ended = True
            end(job)
    finally:
        job.ending.release()


class _timed:
    """Add the block's wall time to one field of `Timings` (attempts add up)."""

    def __init__(self, timings: Timings, name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.start = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        setattr(self.timings, self.name, getattr(self.timings, self.name) + time.monotonic() - self.start)
