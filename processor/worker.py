"""A job's life: claim → read manifest → fetch voice → synthesize → write outputs → ack."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from processor.audio import encode, prepare_voice, remove_silence
from processor.errors import F5BatchError, PermanentError, TransientError
from processor.heartbeat import Heartbeat
from processor.logs import JobLog
from processor.manifest import Manifest, parse_manifest, printable, safe_id
from processor.results import ErrorInfo, Result, Timings, job_key
from processor.shutdown import Shutdown, ShutdownRequested
from processor.storage import Inbox, Lease, Outbox, VoiceSource
from processor.storage.workdir import WorkDir
from processor.synthesis import SynthesisRequest, Synthesizer, check_deadline

SKIP = "skip"  # a result exists: acknowledge without running
REDELIVER = "redeliver"  # transient failure with deliveries left: let the source deliver it again


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

    @property
    def id(self) -> str:
        return self.manifest.job_id if self.manifest else safe_id(self.lease.name)


@dataclass
class Worker:
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

    def run(self, *, once: bool, shutdown: Shutdown | None = None) -> int:
        """Process manifests until the inbox is empty (`once`), forever, or a stop signal; returns jobs handled."""
        shutdown = shutdown or Shutdown(grace_s=0)
        handled = 0
        leases = self.inbox.leases(once=once, stop=shutdown.requested)
        try:
            while not shutdown.requested.is_set():
                shutdown.set_idle(True)
                lease = next(leases, None)
                shutdown.set_idle(False)
                if lease is None:
                    break
                if shutdown.requested.is_set():
                    lease.release()
                    break
                unregister = shutdown.on_abandon(lease.release)
                try:
                    self.process(lease)
                finally:
                    unregister()
                handled += 1
        except ShutdownRequested:
            pass
        finally:
            shutdown.cancel()
            leases.close()  # releases what the source claimed but did not hand out
        return handled

    def process(self, lease: Lease) -> Result | None:
        """The job's life: run it while a heartbeat keeps the lease, then record the outcome and end the lease."""
        job = Job(lease, JobLog(safe_id(lease.name)))
        job.log.event("claimed", f"claimed manifest {printable(lease.name, 1024)}")
        with Heartbeat(lease, self.heartbeat_s):
            outcome = self._run(job)
        # The heartbeat has stopped: from here on, only this thread touches the lease.
        if outcome == SKIP:
            lease.ack()
            return None
        if outcome == REDELIVER:
            lease.retry_later()
            return None
        assert isinstance(outcome, Result)
        self._finish(job, outcome)
        return outcome

    def _run(self, job: Job) -> Result | str:
        try:
            job.body = job.lease.body
            job.manifest = parse_manifest(job.body, job.lease.name)
            job.log.job = job.id
            if self.outbox.exists(job_key(job.id, "result.json")):
                job.log.event("skipped", "a result for this id exists already; not running it again")
                return SKIP
            return self._result(job, produced=self._attempts(job))
        except TransientError as exc:
            if not job.lease.final_attempt:
                job.log.event("retry_later", f"{exc.message}; the manifest will be delivered again",
                              logging.WARNING, code=exc.code)
                return REDELIVER
            return self._result(job, error=exc)
        except F5BatchError as exc:
            return self._result(job, error=exc)
        except Exception as exc:  # a bug must fail this one job, never the worker or the queue
            job.log.event("error", "unexpected error", logging.ERROR, exception=repr(exc))
            return self._result(job, error=F5BatchError(f"unexpected error: {exc!r}"))

    def _attempts(self, job: Job) -> Produced:
        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self.retry.max_attempts),
            wait=wait_exponential_jitter(initial=self.retry.initial_s, max=self.retry.max_s),
            before_sleep=lambda state: job.log.event(
                "retry", f"transient failure, retrying: {state.outcome.exception() if state.outcome else ''}",
                logging.WARNING, attempt=state.attempt_number,
            ),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                job.attempts = attempt.retry_state.attempt_number
                return self._attempt(job)
        raise AssertionError("unreachable: tenacity either returns or reraises")

    def _attempt(self, job: Job) -> Produced:
        assert job.manifest is not None
        job.deadline = job.started + self.job_timeout_s
        self.workdir.ensure_free(self.min_free_bytes)
        with self.workdir.job(job.id) as scratch:
            request = self._fetch_voice(job, scratch)
            check_deadline(job.deadline)
            wave = self._synthesize(job, request, scratch)
            check_deadline(job.deadline)
            if self.outbox.exists(job_key(job.id, "result.json")):
                # A redelivered copy of this job finished first: its audio stays as its result describes it.
                raise PermanentError("another worker finished this job first", code="duplicate")
            return self._write_audio(job, wave)

    def _fetch_voice(self, job: Job, scratch: Path) -> SynthesisRequest:
        manifest = job.manifest
        assert manifest is not None
        with _timed(job.timings, "fetch"):
            path = self.voices.fetch(manifest.voice, scratch)
            voice = prepare_voice(path, manifest.voice_text, scratch)
        job.log.event("fetched", "voice ready", voice=manifest.voice, voice_s=round(voice.duration_s, 3),
                      seconds=round(job.timings.fetch, 3))
        return SynthesisRequest(
            text=manifest.text, voice=voice, seed=manifest.effective_seed, speed=manifest.speed,
            nfe_step=manifest.nfe_step, cfg_strength=manifest.cfg_strength,
            sway_sampling_coef=manifest.sway_sampling_coef, cross_fade=manifest.cross_fade, deadline=job.deadline,
        )

    def _synthesize(self, job: Job, request: SynthesisRequest, scratch: Path) -> np.ndarray:
        assert job.manifest is not None
        with _timed(job.timings, "synth"):
            wave = self.synthesizer.synthesize(request)
            if job.manifest.remove_silence:
                wave = remove_silence(wave, self.synthesizer.sample_rate, scratch)
        audio_s = len(wave) / self.synthesizer.sample_rate
        job.log.event("synthesized", "audio synthesized", audio_s=round(audio_s, 3),
                      seconds=round(job.timings.synth, 3), rtf=round(job.timings.synth / max(audio_s, 1e-9), 4))
        return wave

    def _write_audio(self, job: Job, wave: np.ndarray) -> Produced:
        assert job.manifest is not None
        key = job_key(job.id, f"audio.{job.manifest.format}")
        with _timed(job.timings, "write"):
            self.outbox.put(key, encode(wave, self.synthesizer.sample_rate, job.manifest.format))
        job.log.event("written", "audio written", key=key, seconds=round(job.timings.write, 3))
        return Produced(audio_key=key, duration_s=len(wave) / self.synthesizer.sample_rate)

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


class _timed:
    """Add the block's wall time to one field of `Timings` (attempts add up)."""

    def __init__(self, timings: Timings, name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.start = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        setattr(self.timings, self.name, getattr(self.timings, self.name) + time.monotonic() - self.start)
